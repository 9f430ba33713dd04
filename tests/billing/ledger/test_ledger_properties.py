"""Property test of the credit ledger against a sequential model (SPEC L3, L5, L6).

Hypothesis draws a billing mode and a sequence of operations: credit grants (with an optional
expiry and a priority), usage debits, refunds, clock advances and runs of the expiry job. The
model below applies each one the way the rules describe; after every step the database must agree
with it grant by grant, and the ledger invariants must hold.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.ledger.drift import ledger_drift
from billing.ledger.errors import InsufficientCredit
from billing.ledger.expiry import expire_credit
from billing.models import CreditGrant, EntryKind, LedgerEntry
from tests.billing.postings import post_entry

NEVER = None


@dataclass
class ModelGrant:
    seq: int
    remaining: int
    expires_at: object
    priority: int
    created_at: object

    def spending_key(self):
        far = (1, 0) if self.expires_at is None else (0, self.expires_at.timestamp())
        return (*far, -self.priority, self.created_at, self.seq)


class LedgerModel:
    """What the ledger should hold, computed step by step without the database."""

    def __init__(self, *, prepaid):
        self.prepaid = prepaid
        self.balance = 0
        self.grants: list[ModelGrant] = []

    def _expired(self, now):
        return [g for g in self.grants if g.remaining and g.expires_at and g.expires_at <= now]

    def expire(self, now):
        for grant in self._expired(now):
            self.balance -= grant.remaining
            grant.remaining = 0

    def credit(self, amount, *, now, expires_at, priority):
        spendable = amount - min(amount, max(-self.balance, 0))
        self.balance += amount
        if spendable:
            self.grants.append(ModelGrant(len(self.grants), spendable, expires_at, priority, now))
        return spendable > 0

    def can_debit(self, amount, *, now):
        if not self.prepaid:
            return True
        unexpired = self.balance - sum(g.remaining for g in self._expired(now))
        return unexpired >= amount

    def debit(self, amount, *, now):
        self.expire(now)
        self.balance -= amount
        for grant in sorted(self.grants, key=ModelGrant.spending_key):
            take = min(grant.remaining, amount)
            grant.remaining -= take
            amount -= take


amounts = st.integers(min_value=1, max_value=50_000_000)
operations = st.one_of(
    st.tuples(
        st.just("grant"),
        amounts,
        st.one_of(st.none(), st.integers(min_value=0, max_value=5 * 86_400)),
        st.integers(min_value=-3, max_value=3),
    ),
    st.tuples(st.just("usage"), amounts),
    st.tuples(st.just("refund"), amounts),
    st.tuples(st.just("advance"), st.integers(min_value=0, max_value=3 * 86_400)),
    st.tuples(st.just("expire_job")),
)


def assert_ledger_agrees_with(model, account):
    account.refresh_from_db()
    entries = LedgerEntry.objects.filter(account=account).order_by("pk")
    total = entries.aggregate(total=Sum("amount_micros"))["total"] or 0
    last = entries.last()

    assert account.balance_micros == model.balance
    assert total == model.balance
    assert (last.balance_after_micros if last else 0) == model.balance
    assert ledger_drift() == []
    grants = list(CreditGrant.objects.filter(account=account).order_by("pk"))
    assert [g.remaining_micros for g in grants] == [g.remaining for g in model.grants]
    assert max(model.balance, 0) == sum(g.remaining for g in model.grants)
    if model.prepaid:
        assert not entries.filter(balance_after_micros__lt=0).exists()


def post(account, amount, kind, now, **options):
    return post_entry(account=account, amount_micros=amount, kind=kind, now=now, **options)


def apply_step(step, *, account, model, clock):
    """Apply one drawn operation to the database and to the model; return the new clock."""
    match step:
        case ("grant", amount, expires_in, priority):
            expires_at = NEVER if expires_in is None else clock + timedelta(seconds=expires_in)
            entry = post(
                account,
                amount,
                EntryKind.TOPUP,
                clock,
                grant_expires_at=expires_at,
                grant_priority=priority,
            )
            has_grant = model.credit(amount, now=clock, expires_at=expires_at, priority=priority)
            assert (entry.grant_id is not None) == has_grant
        case ("refund", amount):
            post(account, amount, EntryKind.REFUND, clock)
            model.credit(amount, now=clock, expires_at=NEVER, priority=0)
        case ("usage", amount) if model.can_debit(amount, now=clock):
            post(account, -amount, EntryKind.USAGE, clock)
            model.debit(amount, now=clock)
            # Nothing expired at this moment is left to spend.
            assert not CreditGrant.objects.filter(
                account=account, remaining_micros__gt=0, expires_at__lte=clock
            ).exists()
        case ("usage", amount):
            with pytest.raises(InsufficientCredit):
                post(account, -amount, EntryKind.USAGE, clock)
        case ("advance", seconds):
            clock += timedelta(seconds=seconds)
        case ("expire_job",):
            expire_credit(now=clock)
            model.expire(clock)
    return clock


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    billing_mode=st.sampled_from(["prepaid", "postpaid"]),
    steps=st.lists(operations, max_size=20),
)
def test_any_sequence_of_postings_keeps_the_ledger_equal_to_a_sequential_model(
    make_ledger_account, now, billing_mode, steps
):
    # Each example runs in its own savepoint, rolled back at the end, so it starts clean.
    with transaction.atomic():
        account = make_ledger_account(billing_mode)
        model = LedgerModel(prepaid=billing_mode == "prepaid")
        clock = now
        for step in steps:
            clock = apply_step(step, account=account, model=model, clock=clock)
            assert_ledger_agrees_with(model, account)
        transaction.set_rollback(True)
