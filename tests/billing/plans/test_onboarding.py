"""Opening accounts: owner, subscription, signup credit and initial credit (SPEC A2, L5, S2)."""

import pytest

from accounts.models import Account, Membership, Role
from billing.ledger.drift import ledger_drift
from billing.models import CreditGrant, EntryKind, LedgerEntry
from billing.plans.onboarding import OnboardingError, create_account

USD = 1_000_000


def test_an_llm_api_account_starts_with_a_10_usd_signup_credit(make_account, now):
    account = make_account("llm-api")

    entry = LedgerEntry.objects.get(account=account)
    assert entry.kind == EntryKind.SIGNUP_CREDIT
    assert entry.amount_micros == entry.balance_after_micros == 10 * USD
    assert entry.idempotency_key == f"signup:{account.public_id}"
    assert entry.created_at == now
    grant = CreditGrant.objects.get(account=account)
    assert grant == entry.grant
    assert (grant.kind, grant.amount_micros, grant.remaining_micros) == (
        EntryKind.SIGNUP_CREDIT,
        10 * USD,
        10 * USD,
    )
    assert grant.priority > 0  # spent before purchased credit
    account.refresh_from_db()
    assert account.balance_micros == 10 * USD
    assert ledger_drift() == []


def test_a_plan_without_signup_credit_opens_with_a_zero_balance(make_account):
    account = make_account("voice-prepaid")

    assert not LedgerEntry.objects.filter(account=account).exists()
    assert account.balance_micros == 0


def test_a_new_account_has_its_owner_its_plan_and_the_plans_billing_mode(
    make_account, make_user, plans
):
    owner = make_user()

    account = make_account("voice-payg", owner=owner)

    assert Membership.objects.get(account=account).user == owner
    assert Membership.objects.get(account=account).role == Role.OWNER
    assert account.subscription.plan == plans["voice-payg"]
    assert account.billing_mode == "postpaid"
    assert account.public_id.startswith("acc_")


def test_initial_credit_is_posted_as_a_promotional_entry(make_account):
    account = make_account("voice-prepaid", credit_micros=25 * USD)

    entry = LedgerEntry.objects.get(account=account)
    assert (entry.kind, entry.amount_micros) == (EntryKind.PROMOTIONAL, 25 * USD)
    account.refresh_from_db()
    assert account.balance_micros == 25 * USD


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "   "}, "name"),
        ({"credit_micros": -1}, "negative"),
        ({"anchor_day": 32}, "anchor day"),
    ],
)
def test_bad_input_opens_no_account(plans, now, options, message):
    arguments = {"name": "Acme", "email": "a@example.test", "plan": plans["llm-api"], "now": now}

    with pytest.raises(OnboardingError, match=message):
        create_account(**arguments | options)

    assert Account.objects.count() == 0
    assert LedgerEntry.objects.count() == 0
