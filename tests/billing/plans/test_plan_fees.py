"""Plan fees (SPEC F1, issue 19 part 1): charged in advance at the start of each period, once,
from the card, from credit or on the postpaid invoice; the period's included allowance waits
until the fee is paid; an unpaid fee is dunned like an unpaid invoice (SPEC P5).

Accounts open on 2026-03-15 (tests.conftest.NOW); their first period ends 2026-04-15, where
period close starts the second period and charges its fee. Opening on a fee plan charges the
first period's fee too (tests/billing/plans/test_first_period_fee.py), left unpaid here: these
tests look at the second period's charge, invoice and ledger entry.
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from billing.admin import PlanFeeForm
from billing.invoicing.period_close import close_periods
from billing.models import (
    Allowance,
    CreditGrant,
    EntryKind,
    FeePaidBy,
    Invoice,
    InvoiceReason,
    InvoiceStatus,
    LedgerEntry,
    PlanFee,
    PlanFeeCharge,
    Subscription,
)
from billing.models import TestCardBehaviour as Card
from billing.payments.collection import collect_due_invoices, retry_account_invoices
from tests.billing.usage_reports import (
    USD,
    add_card,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
)
from tests.conftest import NOW

SECOND_START = datetime(2026, 4, 15, tzinfo=UTC)
SECOND_END = datetime(2026, 5, 15, tzinfo=UTC)
AT_CLOSE = SECOND_START + timedelta(hours=1)
FEE = 45 * USD  # credits-monthly's example fee (billing.plans.example_plans)


def fee_of(plan, amount_micros, *, since=NOW - timedelta(days=30)):
    return PlanFee.objects.create(plan=plan, amount_micros=amount_micros, effective_from=since)


def replace_card(account):
    """The declined card gives way to a working default card."""
    account.payment_methods.update(is_default=False)
    add_card(account)


def included_credit_of_second_period(account) -> list[int]:
    return list(
        CreditGrant.objects.filter(
            account=account, kind=EntryKind.ALLOWANCE, expires_at=SECOND_END
        ).values_list("amount_micros", flat=True)
    )


def test_credits_monthly_has_an_example_fee_paid_by_card(plans):
    assert PlanFee.objects.get(plan=plans["credits-monthly"]).amount_micros == 45 * USD
    assert plans["credits-monthly"].fee_payment == "card"


def test_a_postpaid_fee_is_the_first_line_of_the_invoice_cut_when_the_period_starts(
    make_account, plans
):
    plan = plans["voice-enterprise"]
    fee_of(plan, 300 * USD)
    account = make_account("voice-enterprise")
    add_card(account)

    close_periods(now=AT_CLOSE)

    invoice = Invoice.objects.get(account=account, reason=InvoiceReason.PERIOD)
    first = invoice.lines.order_by("position").first()
    assert (first.position, first.component, first.amount_micros) == (1, "plan_fee", 300 * USD)
    assert "2026-04-15 to 2026-05-15 (in advance)" in first.description
    assert invoice.total_micros == 300 * USD
    # Billed through the ledger like usage, so the invoice's payment brings the balance back.
    fee_entry = LedgerEntry.objects.get(
        account=account, kind=EntryKind.PLAN_FEE, created_at=AT_CLOSE
    )
    assert fee_entry.amount_micros == -300 * USD
    charge = PlanFeeCharge.objects.get(account=account, period_start=SECOND_START)
    assert (charge.paid_by, charge.invoice_id, charge.paid_at) == (
        FeePaidBy.INVOICE,
        invoice.pk,
        None,
    )


def test_the_included_minutes_wait_for_the_postpaid_fee_and_come_when_it_is_paid(
    make_account, plans
):
    fee_of(plans["voice-enterprise"], 300 * USD)
    account = make_account("voice-enterprise")
    add_card(account, Card.DECLINE)

    close_periods(now=AT_CLOSE)
    collect_due_invoices(now=AT_CLOSE)

    second = Allowance.objects.get(account=account, period_start=SECOND_START)
    assert second.included_seconds == 0
    assert Subscription.objects.get(account=account).allowance_locked

    replace_card(account)
    retry_account_invoices(account=account, now=AT_CLOSE + timedelta(hours=2))

    second.refresh_from_db()
    assert second.included_seconds == 6000 * 60
    subscription = Subscription.objects.get(account=account)
    assert not subscription.allowance_locked
    assert subscription.allowance_unlock_reason == "plan_fee_paid"
    assert reload(account).balance_micros == 0  # fee billed, then paid
    assert PlanFeeCharge.objects.get(account=account, period_start=SECOND_START).paid_at is not None


def test_a_prepaid_fee_is_charged_to_the_card_and_releases_the_included_credit(make_account, plans):
    account = make_account("credits-monthly", credit_micros=20 * USD)
    add_card(account)

    close_periods(now=AT_CLOSE)

    fee_invoice = Invoice.objects.get(
        account=account, reason=InvoiceReason.PLAN_FEE, period_start=SECOND_START
    )
    assert fee_invoice.status == InvoiceStatus.OPEN
    assert fee_invoice.amount_due_micros == FEE
    assert included_credit_of_second_period(account) == []  # not before it is paid
    assert reload(account).balance_micros == 20 * USD

    collect_due_invoices(now=AT_CLOSE)

    fee_invoice.refresh_from_db()
    assert fee_invoice.status == InvoiceStatus.PAID
    assert included_credit_of_second_period(account) == [50 * USD]
    # The card paid the fee: the balance gains the included credit, no more, no less.
    assert reload(account).balance_micros == 20 * USD + 50 * USD
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.INVOICE_PAYMENT).exists()


def test_a_prepaid_fee_from_credit_is_paid_at_once_and_never_with_the_credit_it_releases(
    make_account, plans
):
    plan = plans["credits-monthly"]
    plan.fee_payment = "credit"
    plan.save()
    account = make_account("credits-monthly", credit_micros=100 * USD)

    close_periods(now=AT_CLOSE)

    fee = LedgerEntry.objects.get(account=account, kind=EntryKind.PLAN_FEE, created_at=AT_CLOSE)
    assert fee.amount_micros == -FEE
    charge = PlanFeeCharge.objects.get(account=account, period_start=SECOND_START)
    assert (charge.paid_by, charge.paid_at) == (FeePaidBy.CREDIT, AT_CLOSE)
    assert not Invoice.objects.filter(
        account=account, reason=InvoiceReason.PLAN_FEE, period_start=SECOND_START
    ).exists()
    # The first period's 50 USD of included credit expired at the close; 100 - 45 bought credit
    # is left, and the second period's 50 USD is whole: the fee did not spend it.
    grant = CreditGrant.objects.get(
        account=account, kind=EntryKind.ALLOWANCE, expires_at=SECOND_END
    )
    assert grant.remaining_micros == 50 * USD
    assert reload(account).balance_micros == 100 * USD - FEE + 50 * USD
    assert not Subscription.objects.get(account=account).allowance_locked


def test_a_fee_from_credit_that_the_balance_cannot_cover_goes_to_the_card(make_account, plans):
    plan = plans["credits-monthly"]
    plan.fee_payment = "credit"
    plan.save()
    account = make_account("credits-monthly", credit_micros=10 * USD)

    close_periods(now=AT_CLOSE)

    assert (
        PlanFeeCharge.objects.get(account=account, period_start=SECOND_START).paid_by
        == FeePaidBy.CARD
    )
    assert (
        Invoice.objects.get(
            account=account, reason=InvoiceReason.PLAN_FEE, period_start=SECOND_START
        ).total_micros
        == FEE
    )
    assert reload(account).balance_micros == 10 * USD


def test_an_unpaid_fee_is_dunned_and_pauses_usage_while_the_credit_stays_locked(
    make_account, plans
):
    account = make_account("credits-monthly")
    add_card(account, Card.DECLINE)

    close_periods(now=AT_CLOSE)
    collect_due_invoices(now=AT_CLOSE)

    fee_invoice = Invoice.objects.get(
        account=account, reason=InvoiceReason.PLAN_FEE, period_start=SECOND_START
    )
    assert fee_invoice.status == InvoiceStatus.OPEN
    # SPEC P5: the retry schedule (a day later), an email, billable usage paused.
    assert fee_invoice.next_payment_attempt_at == AT_CLOSE + timedelta(days=1)
    assert account.notifications.filter(kind="invoice_payment_failed").count() == 1
    assert reload(account).past_due_since == AT_CLOSE
    assert included_credit_of_second_period(account) == []

    # The retry a day later declines again: still locked, still past due.
    collect_due_invoices(now=AT_CLOSE + timedelta(days=1))
    assert included_credit_of_second_period(account) == []

    replace_card(account)
    retry_account_invoices(account=account, now=AT_CLOSE + timedelta(days=2))
    assert included_credit_of_second_period(account) == [50 * USD]
    assert reload(account).past_due_since is None


def test_a_period_that_starts_on_a_plan_without_a_fee_is_charged_nothing(make_account):
    account = make_account("voice-prepaid", credit_micros=20 * USD)

    close_periods(now=AT_CLOSE)

    assert not PlanFeeCharge.objects.filter(account=account).exists()
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.PLAN_FEE).exists()


@pytest.mark.slow
def test_concurrent_period_closes_charge_each_fee_once(transactional_db, make_account, plans):
    if connection.vendor != "postgresql":
        pytest.skip("Row locks: PostgreSQL only (SQLite serializes every writer).")
    card_plan = [make_account("credits-monthly") for _ in range(4)]
    for account in card_plan:
        add_card(account)
    fee_of(plans["voice-enterprise"], 300 * USD)
    postpaid = [make_account("voice-enterprise") for _ in range(3)]
    runs = 4
    start = threading.Barrier(runs)
    errors = []

    def close():
        try:
            start.wait(10)
            close_periods(now=AT_CLOSE, chunk=3)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=close) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    # The sequential model: one close charges each account its second period's fee once.
    charges = sorted(
        PlanFeeCharge.objects.filter(period_start=SECOND_START).values_list(
            "account_id", "period_start", "amount_micros"
        )
    )
    assert charges == sorted(
        [(a.pk, SECOND_START, FEE) for a in card_plan]
        + [(a.pk, SECOND_START, 300 * USD) for a in postpaid]
    )
    assert Invoice.objects.filter(
        reason=InvoiceReason.PLAN_FEE, period_start=SECOND_START
    ).count() == len(card_plan)
    for account in postpaid:
        entries = LedgerEntry.objects.filter(
            account=account, kind=EntryKind.PLAN_FEE, created_at=AT_CLOSE
        )
        assert list(entries.values_list("amount_micros", flat=True)) == [-300 * USD]


def test_staff_see_and_add_a_plan_fee_in_dollars_in_admin(client, make_user, plans):
    client.force_login(make_user("staff@meterline.test", is_staff=True, is_superuser=True))
    plan = plans["credits-monthly"]

    page = client.get(f"/admin/billing/plan/{plan.pk}/change/")
    listing = client.get("/admin/billing/plan/")

    assert page.status_code == 200 and b"Fee per period (USD)" in page.content
    assert b"$45.00" in page.content
    assert b"$45.00" in listing.content
    form = PlanFeeForm(
        {"amount_usd": "$49.50", "effective_from": "2026-05-01 00:00:00"},
        instance=PlanFee(plan=plan),
    )
    assert form.is_valid(), form.errors
    assert form.save().amount_micros == 49_500_000
    assert not PlanFeeForm({"amount_usd": "lots", "effective_from": "2026-05-01"}).is_valid()
    assert not PlanFeeForm({"amount_usd": "-1", "effective_from": "2026-05-01"}).is_valid()
