"""Shared fixtures. Tests run against DATABASE_URL (PostgreSQL in CI) or the SQLite default."""

import itertools
from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from django.db import connection

from accounts.keys import issue_api_key
from accounts.models import Account, KeyKind, Membership, User
from billing.models import Plan, PlanFee
from billing.plans.example_plans import load_example_plans
from billing.plans.onboarding import create_account

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_sequence = itertools.count(1)


@pytest.fixture
def now():
    return NOW


@pytest.fixture
def plans(db):
    load_example_plans()
    return {plan.code: plan for plan in Plan.objects.all()}


@pytest.fixture
def plans_without_fees(plans):
    """The example plans without `credits-monthly`'s plan fee, for tests of included credit and
    period close written before plan fees: its included credit then comes with each period, as
    it would on a plan without a fee. Plan fees: tests/billing/plans/test_plan_fees.py."""
    PlanFee.objects.all().delete()
    return plans


@pytest.fixture
def make_user(db):
    def make(email=None, password="correct horse battery staple", **extra):
        email = email or f"user{next(_sequence)}@example.test"
        return User.objects.create_user(email=email, password=password, **extra)

    return make


@pytest.fixture
def make_account(plans, make_user):
    """Open an account on a plan; `owner` defaults to a new user."""

    def make(plan="voice-prepaid", *, owner=None, credit_micros=0, at=NOW, **extra):
        owner = owner if owner is not None else make_user()
        return create_account(
            name=extra.pop("name", f"Account {next(_sequence)}"),
            email=owner.email,
            plan=plans[plan],
            now=at,
            owner=owner,
            credit_micros=credit_micros,
            **extra,
        )

    return make


@pytest.fixture
def make_key(db):
    def make(account=None, *, tier="free"):
        kind = KeyKind.CUSTOMER if account is not None else KeyKind.PLATFORM
        return issue_api_key(kind=kind, name="test key", now=NOW, account=account, tier=tier)

    return make


@pytest.fixture
def add_member(db):
    def add(user, account, role):
        return Membership.objects.create(user=user, account=account, role=role)

    return add


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture
def make_ledger_account(db):
    """Open a bare account in a billing mode, without plan or owner, for ledger tests."""

    def make(billing_mode="prepaid", **extra):
        return Account.objects.create(
            name=extra.pop("name", f"Ledger account {next(_sequence)}"),
            email=extra.pop("email", "ledger@example.test"),
            billing_mode=billing_mode,
            **extra,
        )

    return make


@pytest.fixture
def clear_cache():
    """Start with an empty cache: allauth keeps its login throttle counters there."""
    cache.clear()
    yield
    cache.clear()
