"""Credit-back, grants and adjustments by staff: the ledger entry and the audit record each
writes, and what each refuses (SPEC P4).
"""

from datetime import timedelta

import pytest

from billing import staff
from billing.ledger.expiry import expire_credit
from billing.models import EntryKind, StaffAction
from billing.staff import StaffActionError
from tests.billing.staff_data import USD, audit_records, balance, everything_written, new_key
from tests.conftest import NOW
from tests.usage.metering import entries


def test_a_credit_back_posts_a_refund_entry_and_audits_who_why_and_the_balances(
    finance, make_account
):
    account = make_account(credit_micros=5 * USD)

    outcome = staff.credit_back(
        account=account,
        amount_micros=2_500_000,
        reason="Calls dropped by our fault",
        actor=finance,
        key=new_key(),
        now=NOW,
    )

    [entry] = entries(account, EntryKind.REFUND)
    assert (entry.amount_micros, entry.balance_after_micros) == (2_500_000, 7_500_000)
    assert (entry.actor, entry.reason) == (finance, "Calls dropped by our fault")
    assert balance(account) == 7_500_000
    record = outcome.record
    assert (record.actor, record.action, record.account, record.reason) == (
        finance,
        StaffAction.CREDIT_BACK,
        account,
        "Calls dropped by our fault",
    )
    assert record.before == {"balance_micros": 5 * USD}
    assert record.after == {"balance_micros": 7_500_000, "amount_micros": 2_500_000}
    assert record.target_id == str(entry.pk)
    assert audit_records(account) == [record]


def test_a_grant_without_expiry_is_promotional_credit_that_stays(finance, make_account):
    account = make_account()

    outcome = staff.grant_credit(
        account=account,
        amount_micros=20 * USD,
        reason="Conference voucher",
        actor=finance,
        key=new_key(),
        now=NOW,
    )
    expire_credit(now=NOW + timedelta(days=3650))

    [entry] = entries(account)
    assert (entry.kind, entry.amount_micros, entry.actor) == (
        EntryKind.PROMOTIONAL,
        20 * USD,
        finance,
    )
    assert entry.grant.expires_at is None
    assert balance(account) == 20 * USD
    assert (outcome.record.action, outcome.record.before, outcome.record.after) == (
        StaffAction.GRANT_CREDIT,
        {"balance_micros": 0},
        {"balance_micros": 20 * USD, "amount_micros": 20 * USD},
    )


def test_a_grant_with_an_expiry_is_written_off_when_it_expires_unused(finance, make_account):
    account = make_account()
    expires_at = NOW + timedelta(days=30)

    staff.grant_credit(
        account=account,
        amount_micros=20 * USD,
        reason="Trial extension",
        actor=finance,
        key=new_key(),
        now=NOW,
        expires_at=expires_at,
    )
    [grant_entry] = entries(account, EntryKind.PROMOTIONAL)
    assert grant_entry.grant.expires_at == expires_at
    expire_credit(now=expires_at)

    [expiry] = entries(account, EntryKind.EXPIRY)
    assert expiry.amount_micros == -20 * USD
    assert balance(account) == 0


def test_a_grant_that_would_expire_at_once_is_refused(finance, make_account):
    account = make_account()
    before = everything_written()

    with pytest.raises(StaffActionError, match="future"):
        staff.grant_credit(
            account=account,
            amount_micros=20 * USD,
            reason="Voucher",
            actor=finance,
            key=new_key(),
            now=NOW,
            expires_at=NOW,
        )

    assert everything_written() == before


def test_an_adjustment_up_and_then_down_posts_two_adjustment_entries(finance, make_account):
    account = make_account(credit_micros=10 * USD)
    kwargs = {"account": account, "actor": finance, "now": NOW}

    up = staff.adjust_balance(
        amount_micros=5 * USD, reason="Missed top-up", key=new_key(), **kwargs
    )
    down = staff.adjust_balance(
        amount_micros=-12 * USD, reason="Double credit", key=new_key(), **kwargs
    )

    assert [(e.amount_micros, e.balance_after_micros) for e in entries(account, "adjustment")] == [
        (5 * USD, 15 * USD),
        (-12 * USD, 3 * USD),
    ]
    assert (up.record.before, up.record.after) == (
        {"balance_micros": 10 * USD},
        {"balance_micros": 15 * USD, "amount_micros": 5 * USD},
    )
    assert (down.record.before, down.record.after) == (
        {"balance_micros": 15 * USD},
        {"balance_micros": 3 * USD, "amount_micros": -12 * USD},
    )
    assert down.record.reason == "Double credit"


def test_an_adjustment_down_past_zero_on_a_prepaid_account_is_refused_and_writes_nothing(
    finance, make_account
):
    account = make_account(credit_micros=3 * USD)
    before = everything_written()

    with pytest.raises(StaffActionError, match="cannot go below zero"):
        staff.adjust_balance(
            account=account,
            amount_micros=-3 * USD - 1,
            reason="Correction",
            actor=finance,
            key=new_key(),
            now=NOW,
        )

    assert everything_written() == before


def test_an_adjustment_down_on_a_postpaid_account_may_leave_a_debt(finance, make_account):
    account = make_account("voice-payg")

    staff.adjust_balance(
        account=account,
        amount_micros=-7 * USD,
        reason="Setup fee agreed by contract",
        actor=finance,
        key=new_key(),
        now=NOW,
    )

    assert balance(account) == -7 * USD


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_action_without_a_reason_is_refused(reason, finance, make_account):
    account = make_account()
    before = everything_written()

    with pytest.raises(StaffActionError, match="reason"):
        staff.grant_credit(
            account=account,
            amount_micros=USD,
            reason=reason,
            actor=finance,
            key=new_key(),
            now=NOW,
        )

    assert everything_written() == before
