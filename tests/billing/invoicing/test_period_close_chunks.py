"""Period close done set-wise per chunk gives what closing the accounts one by one gives.

Accounts open on 2026-03-15 (tests.conftest.NOW) unless said otherwise; CLOSE_AT is past the
end of every first period (April 1, 15 and March 31 for anchors 1, 15 and 31).
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.invoicing import period_close
from billing.invoicing.period_close import close_periods
from billing.models import (
    AlertSettings,
    Allowance,
    CreditGrant,
    EntryKind,
    Invoice,
    LedgerEntry,
    Notification,
    Subscription,
    TopUp,
    UnbilledLine,
)
from billing.payments.auto_topup import save_auto_topup_settings
from tests.billing.postings import post_entry
from tests.billing.usage_reports import (
    USD,
    add_card,
    entries,
    flex_request,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
    report_minutes,
)
from tests.conftest import NOW

# Included credit and period close as on a plan without a fee (plan fees: test_plan_fees.py).
pytestmark = pytest.mark.usefixtures("plans_without_fees")

CLOSE_AT = datetime(2026, 4, 16, tzinfo=UTC)
DURING = NOW + timedelta(days=3)


def mixed_accounts(make_account, plans) -> list:
    """One account of each kind period close treats differently."""
    accounts = [
        make_account("voice-payg"),
        make_account("voice-payg", anchor_day=31),  # a period of 31 days, not 31 + 0
        make_account("voice-payg", at=NOW - timedelta(days=31)),  # two periods behind
        make_account("voice-prepaid", credit_micros=30 * USD, anchor_day=1),
        make_account("voice-prepaid", credit_micros=20 * USD),
        make_account("credits-monthly"),
        make_account("credits-monthly", anchor_day=1),
        make_account("voice-enterprise"),  # included minutes with rollover
        make_account("flex-router"),  # commission under the minimum: carried forward
        make_account("voice-payg"),  # moves to a prepaid plan at the close
    ]
    payg, payg_31, behind, prepaid_1, prepaid, credits, credits_1, enterprise, flex, moving = (
        accounts
    )
    for n, account in enumerate([payg, payg_31, behind, enterprise, moving], start=1):
        report_minutes(account, 10 * n, now=DURING)
    report_minutes(prepaid_1, 30, now=DURING, llm="")
    report_minutes(prepaid, 70, now=DURING, llm="")
    report_minutes(credits, 100, now=DURING, llm="")
    report_minutes(credits_1, 300, now=DURING, llm="")
    post_entry(account=credits, amount_micros=5 * USD, kind=EntryKind.TOPUP, now=DURING)
    flex_request(flex, now=DURING)
    Subscription.objects.filter(account=moving).update(pending_plan=plans["voice-prepaid"])
    return accounts


def snapshot() -> dict:
    """Everything period close writes, without database ids."""
    lines = {}
    for invoice in Invoice.objects.prefetch_related("lines"):
        lines[invoice.number] = [
            (
                line.position,
                line.component,
                line.provider,
                line.model,
                line.description,
                line.items,
                line.quantity,
                line.unit,
                line.amount_micros,
                line.savings_micros,
            )
            for line in invoice.lines.all()
        ]
    return {
        "invoices": sorted(
            Invoice.objects.values_list(
                "account_id",
                "number",
                "kind",
                "reason",
                "status",
                "period_start",
                "period_end",
                "idempotency_key",
                "subtotal_micros",
                "total_micros",
                "amount_due_micros",
                "rounding_micros",
                "opening_balance_micros",
                "closing_balance_micros",
                "issued_at",
                "due_at",
                "paid_at",
                "next_payment_attempt_at",
            )
        ),
        "lines": lines,
        "entries": list(
            LedgerEntry.objects.order_by("account_id", "created_at", "pk").values_list(
                "account_id",
                "kind",
                "amount_micros",
                "balance_after_micros",
                "created_at",
                "description",
                "idempotency_key",
                "grant__kind",
                "grant__amount_micros",
                "grant__expires_at",
            )
        ),
        "grants": sorted(
            CreditGrant.objects.values_list(
                "account_id",
                "kind",
                "amount_micros",
                "remaining_micros",
                "priority",
                "expires_at",
                "created_at",
                "expired_at",
            ),
            key=repr,
        ),
        "accounts": sorted(
            reload_all().values_list("pk", "billing_mode", "balance_micros", "unbilled_micros")
        ),
        "subscriptions": sorted(
            Subscription.objects.values_list(
                "account_id",
                "plan__code",
                "pending_plan_id",
                "current_period_start",
                "current_period_end",
                "last_closed_at",
            )
        ),
        "allowances": sorted(
            Allowance.objects.values_list(
                "account_id",
                "period_start",
                "period_end",
                "included_seconds",
                "rollover_seconds",
                "used_seconds",
            )
        ),
        "unbilled": sorted(
            UnbilledLine.objects.values_list("account_id", "component", "items", "amount_micros")
        ),
        "notifications": sorted(
            Notification.objects.values_list("account_id", "kind", "key", "status")
        ),
        "alerts": sorted(
            AlertSettings.objects.values_list(
                "account_id",
                "low_balance_armed",
                "low_balance_crossings",
                "zero_balance_armed",
                "zero_balance_crossings",
            )
        ),
        "topups": sorted(TopUp.objects.values_list("account_id", "kind", "amount_micros")),
    }


def reload_all():
    from accounts.models import Account

    return Account.objects.all()


def close_and_look(*, chunk: int) -> tuple[int, dict]:
    """Close in chunks of `chunk`, take a snapshot, and roll the close back."""
    with transaction.atomic():
        closed = close_periods(now=CLOSE_AT, chunk=chunk)
        result = snapshot()
        transaction.set_rollback(True)
    return closed, result


def test_a_chunk_mixing_plans_and_period_lengths_closes_as_the_accounts_would_one_by_one(
    make_account, plans
):
    accounts = mixed_accounts(make_account, plans)
    before = snapshot()

    one_by_one = close_and_look(chunk=1)
    in_one_chunk = close_and_look(chunk=len(accounts))
    in_chunks_of_3 = close_and_look(chunk=3)

    assert one_by_one[0] == len(accounts) + 1  # the account two periods behind closes twice
    assert in_one_chunk == one_by_one
    assert in_chunks_of_3 == one_by_one
    closed = one_by_one[1]
    assert closed != before
    assert len(closed["invoices"]) == len(accounts) + 1
    assert [n for _, n, *_ in sorted(closed["invoices"], key=lambda i: i[1])] == [
        f"2026-{n:06d}" for n in range(1, len(accounts) + 2)
    ]


def test_closing_a_chunk_costs_the_same_queries_for_ten_accounts_or_thirty(make_account, plans):
    mixed_accounts(make_account, plans)
    with transaction.atomic(), CaptureQueriesContext(connection) as ten:
        close_periods(now=CLOSE_AT, chunk=100)
        transaction.set_rollback(True)
    mixed_accounts(make_account, plans)
    mixed_accounts(make_account, plans)

    with CaptureQueriesContext(connection) as thirty:
        assert close_periods(now=CLOSE_AT, chunk=100) == 33

    assert len(thirty) == len(ten)
    assert len(ten) < 80  # two passes (one account is two periods behind), each a few dozen


def test_a_close_that_crashed_after_writing_off_credit_rolls_it_back_and_reruns_once(
    make_account, monkeypatch
):
    accounts = [make_account("credits-monthly") for _ in range(4)]
    for account in accounts:
        report_minutes(account, 100, now=DURING, llm="")  # 10 USD: 40 USD left to expire
    save_drafts = period_close.save_drafts
    calls = []

    def crash_on_the_second_chunk(drafts, *, now):
        calls.append(len(drafts))
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return save_drafts(drafts, now=now)

    monkeypatch.setattr(period_close, "save_drafts", crash_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        close_periods(now=CLOSE_AT, chunk=2)
    # The second chunk's credit was written off before the crash, and rolled back with it.
    assert [len(entries(a, EntryKind.EXPIRY)) for a in accounts] == [1, 1, 0, 0]
    monkeypatch.setattr(period_close, "save_drafts", save_drafts)

    assert close_periods(now=CLOSE_AT, chunk=2) == 2
    assert close_periods(now=CLOSE_AT, chunk=2) == 0

    for account in accounts:
        assert [e.amount_micros for e in entries(account, EntryKind.EXPIRY)] == [-40 * USD]
        assert [e.amount_micros for e in entries(account, EntryKind.ALLOWANCE)] == [50 * USD] * 2
        assert reload(account).balance_micros == 50 * USD
        [statement] = Invoice.objects.filter(account=account)
        assert statement.closing_balance_micros == 0


def test_replacing_the_included_credit_at_the_close_starts_no_auto_top_up(make_account):
    # 40 USD of included credit expires and 50 USD arrives in one close: the balance goes from
    # 45 to 55 USD. Taken step by step it dipped to 5 USD, under the 20 USD threshold, and
    # charged the card for a top-up nobody needed.
    account = make_account("credits-monthly")
    add_card(account)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=20 * USD, amount_micros=20 * USD, now=NOW
    )
    post_entry(account=account, amount_micros=5 * USD, kind=EntryKind.TOPUP, now=NOW)
    report_minutes(account, 100, now=DURING, llm="")  # 10 USD, from the included credit

    close_periods(now=CLOSE_AT)

    assert reload(account).balance_micros == 55 * USD
    assert not TopUp.objects.filter(account=account).exists()


def test_included_credit_expiring_with_nothing_to_replace_it_still_alerts(make_account, plans):
    # Moving to a plan without included credit: the 40 USD left expires and nothing comes in.
    account = make_account("credits-monthly")
    report_minutes(account, 100, now=DURING, llm="")
    Subscription.objects.filter(account=account).update(pending_plan=plans["voice-prepaid"])

    close_periods(now=CLOSE_AT)

    assert reload(account).balance_micros == 0
    kinds = set(Notification.objects.filter(account=account).values_list("kind", flat=True))
    assert "zero_balance" in kinds
