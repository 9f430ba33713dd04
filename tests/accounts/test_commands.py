"""Operator commands: create_account, create_platform_key, demo (SPEC section 12)."""

import json
import shlex
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command

from accounts.demo.data import (
    CUSTOMER_EMAIL,
    DEMO_PASSWORD,
    FINANCE_EMAIL,
    STAFF_EMAIL,
    SUPPORT_EMAIL,
)
from accounts.models import Account, ApiKey, KeyKind, Membership, Role, User
from billing.ledger.drift import ledger_drift
from billing.models import EntryKind, LedgerEntry, Plan
from tests.usage.api.test_integration_doc import request_of
from usage.api.auth import key_for_token

USD = 1_000_000


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def counts():
    return (
        Account.objects.count(),
        User.objects.count(),
        LedgerEntry.objects.count(),
        ApiKey.objects.count(),
    )


def test_create_account_prints_the_account_id_and_a_working_key(plans):
    printed = run("create_account", "--email", "Ops@Example.test", "--plan", "llm-api", "--json")

    result = json.loads(printed)
    account = Account.objects.get(public_id=result["account"])
    key = key_for_token(result["key"]).api_key
    assert key.account == account
    assert key.kind == KeyKind.CUSTOMER
    assert account.subscription.plan == plans["llm-api"]
    assert account.email == "ops@example.test"
    owner = Membership.objects.get(account=account)
    assert (owner.user.email, owner.role) == ("ops@example.test", Role.OWNER)
    account.refresh_from_db()
    assert account.balance_micros == 10 * USD  # the plan's signup credit


def test_create_account_with_credit_posts_it_to_the_ledger(plans):
    result = json.loads(
        run(
            "create_account",
            "--email",
            "a@example.test",
            "--plan",
            "voice-prepaid",
            "--credit",
            "25.50",
            "--json",
        )
    )

    account = Account.objects.get(public_id=result["account"])
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.kind, entry.amount_micros) == (EntryKind.PROMOTIONAL, 25_500_000)
    assert ledger_drift() == []


def test_create_account_reuses_an_existing_user_with_that_email(plans, make_user):
    user = make_user("owner@example.test")

    run("create_account", "--email", "owner@example.test", "--plan", "voice-prepaid")

    assert Membership.objects.get(user=user).role == Role.OWNER
    assert User.objects.filter(email="owner@example.test").count() == 1


def test_create_account_prints_text_without_json(plans):
    printed = run("create_account", "--email", "a@example.test", "--plan", "voice-prepaid")

    account_line, key_line = printed.strip().splitlines()
    assert account_line.startswith("Account: acc_")
    assert key_for_token(key_line.removeprefix("Customer key: ")).api_key


@pytest.mark.parametrize(
    ("email", "plan", "credit", "message"),
    [
        ("a@example.test", "no-such-plan", "0", "No plan"),
        ("not-an-email", "voice-prepaid", "0", "not an email"),
        ("a@example.test", "voice-prepaid", "-5", "negative"),
        ("a@example.test", "voice-prepaid", "1.1234567", "six decimals"),
        ("a@example.test", "voice-prepaid", "abc", "not an amount"),
    ],
)
def test_create_account_with_bad_input_fails_and_writes_nothing(
    plans, email, plan, credit, message
):
    before = counts()

    with pytest.raises(CommandError, match=message):
        run("create_account", "--email", email, "--plan", plan, "--credit", credit, "--json")

    assert counts() == before


def test_create_account_names_the_loaded_plans_when_the_plan_is_unknown(plans):
    with pytest.raises(CommandError, match="voice-prepaid"):
        run("create_account", "--email", "a@example.test", "--plan", "nope")


def test_create_platform_key_prints_a_working_platform_key(db):
    result = json.loads(run("create_platform_key", "--json"))

    key = key_for_token(result["key"]).api_key
    assert key.kind == KeyKind.PLATFORM
    assert key.account is None


def test_create_platform_key_refuses_an_empty_name(db):
    with pytest.raises(CommandError, match="name"):
        run("create_platform_key", "--name", "  ")

    assert ApiKey.objects.count() == 0


def demo_counts():
    return (
        *counts(),
        Membership.objects.count(),
        Plan.objects.count(),
        sorted(Account.objects.values_list("name", flat=True)),
    )


def test_demo_creates_the_demo_users_and_accounts_once(db, client):
    printed = run("demo", "--no-serve")
    first = demo_counts()

    run("demo", "--no-serve")

    assert demo_counts() == first
    assert "Demo data ready." in printed
    staff = User.objects.get(email=STAFF_EMAIL)
    assert staff.is_staff and staff.is_superuser
    # The two sides of the two-person rule, each a staff member of its group only.
    for email, group in ((SUPPORT_EMAIL, "Support"), (FINANCE_EMAIL, "Finance")):
        user = User.objects.get(email=email)
        assert user.is_staff and not user.is_superuser
        assert list(user.groups.values_list("name", flat=True)) == [group]
        assert f"{email} / {DEMO_PASSWORD}" in printed
    customer = User.objects.get(email=CUSTOMER_EMAIL)
    assert set(
        customer.memberships.values_list("account__subscription__plan__code", flat=True)
    ) == set(Plan.objects.values_list("code", flat=True))
    assert Account.objects.filter(parent__isnull=False).count() == 1
    assert ledger_drift() == []
    assert client.login(email=CUSTOMER_EMAIL, password=DEMO_PASSWORD)


def _printed_curl(printed: str) -> dict:
    line = next(ln.strip() for ln in printed.splitlines() if ln.strip().startswith("curl "))
    return request_of(shlex.split(line), {})


def test_demo_prints_a_curl_line_that_creates_a_customer_with_its_platform_key(db, client):
    first = _printed_curl(run("demo", "--no-serve", "--days", "1"))
    again = _printed_curl(run("demo", "--no-serve", "--days", "1"))

    def send(request):
        return client.post(
            urlsplit(request["url"]).path,
            request["body"],
            content_type="application/json",
            HTTP_AUTHORIZATION=request["headers"]["Authorization"],
        )

    assert first["url"] == "http://127.0.0.1:8000/api/v1/customers"
    # A platform key's secret is shown once: each run gives the demo key a new one.
    assert send(first).status_code == 401
    response = send(again)
    assert response.status_code == 201, response.content
    assert Account.objects.get(external_id=response.json()["external_id"])
