"""Collection that never strands a debt nor charges twice (issue 14 items 3, 4 and 5).

- Item 3: an amount under the payment provider's minimum charge (Stripe: 0.50 USD) is carried
  to the next invoice; a provider's refusal marks that attempt failed and the run goes on.
- Item 4: overlapping collection runs make one attempt per due time.
- Item 5: an invoice under half a cent is carried, so balance + unbilled + open invoices
  is never negative.
- Item 6: a card added while past due is the one the retry charges.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum
from django.urls import reverse

from billing.invoicing.invoices import invoice_thresholds
from billing.invoicing.period_close import close_periods
from billing.models import (
    EntryKind,
    Invoice,
    InvoiceKind,
    InvoicePayment,
    InvoiceStatus,
    Notification,
    PaymentMethod,
    PaymentStatus,
)
from billing.models import TestCardBehaviour as Card
from billing.money import MINIMUM_CARD_CHARGE_MICROS
from billing.payments import collection
from billing.payments.cards import add_test_card
from billing.payments.collection import collect_due_invoices, collect_invoice
from billing.payments.gateway.protocol import ProviderUnavailable
from billing.payments.gateway.stripe import StripeGateway
from billing.payments.gateway.test_mode import TestModeGateway
from tests.billing.postings import post_entry
from tests.billing.processes import run_in_processes
from tests.billing.usage_reports import (
    add_card,
    components,
    entries,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
    report_minutes,
    report_usage_of_458_usd,
)
from tests.conftest import NOW

DURING_FIRST = NOW + timedelta(days=3)
AFTER_FIRST = datetime(2026, 4, 15, 1, 0, tzinfo=UTC)
DURING_SECOND = AFTER_FIRST + timedelta(days=3)
AFTER_SECOND = datetime(2026, 5, 15, 1, 0, tzinfo=UTC)
ISSUED = NOW + timedelta(days=3)


def owed_never_negative(account) -> int:
    """Return balance + unbilled + open invoices (docs/billing-rules.md's invariant)."""
    account = reload(account)
    open_total = (
        Invoice.objects.filter(
            account=account,
            kind=InvoiceKind.INVOICE,
            status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
        ).aggregate(total=Sum("total_micros"))["total"]
        or 0
    )
    return account.balance_micros + account.unbilled_micros + open_total


def usage_cost(account) -> int:
    return -sum(e.amount_micros for e in entries(account, EntryKind.USAGE))


# Item 3: below the provider's minimum -----------------------------------------------------------


def test_an_invoice_below_the_smallest_card_payment_is_carried_to_the_next_invoice(make_account):
    account = make_account("voice-payg")
    add_card(account)
    report_minutes(account, 1, now=DURING_FIRST)  # 0.14 USD on gpt-4o
    small = usage_cost(account)
    assert 0 < small < MINIMUM_CARD_CHARGE_MICROS

    close_periods(now=AFTER_FIRST)
    collect_due_invoices(now=AFTER_FIRST)

    [first] = Invoice.objects.filter(account=account, kind=InvoiceKind.INVOICE)
    assert (first.status, first.amount_due_micros, first.total_micros) == (InvoiceStatus.PAID, 0, 0)
    carried = first.lines.get(component="carried_to_next")
    assert carried.amount_micros == -small
    assert "Below the smallest card payment, $0.50" in carried.description
    assert not InvoicePayment.objects.exists()  # nothing the provider would refuse was asked
    assert reload(account).unbilled_micros == small
    assert owed_never_negative(account) >= 0

    report_usage_of_458_usd(account, now=DURING_SECOND)
    close_periods(now=AFTER_SECOND)

    second = Invoice.objects.filter(account=account, kind=InvoiceKind.INVOICE).latest("pk")
    assert components(second)["carried_forward"] == small
    assert second.total_micros == usage_cost(account)


def test_the_test_mode_gateway_refuses_a_charge_below_the_minimum_as_stripe_does(make_account):
    account = make_account("voice-payg")
    add_card(account)

    outcome = TestModeGateway().charge_saved_card(
        account=account, amount_micros=490_000, idempotency_key="small", description="Test"
    )

    assert outcome.status == "failed"
    assert outcome.error == "Amount must be at least $0.50 usd."


def test_stripe_refusing_one_invoice_fails_that_attempt_and_the_run_collects_the_others(
    stripe_account, stripe_keys, fake_stripe
):
    refused, paid = stripe_account("voice-payg"), stripe_account("voice-payg")
    for account in (refused, paid):
        report_usage_of_458_usd(account, now=ISSUED)
    invoice_thresholds(now=ISSUED)
    # An open invoice asking less than Stripe's minimum (issued before the carry rule).
    Invoice.objects.filter(account=refused).update(amount_due_micros=400_000)

    assert collect_due_invoices(now=ISSUED) == 2

    refused_attempt = InvoicePayment.objects.get(invoice__account=refused)
    assert refused_attempt.status == PaymentStatus.FAILED
    assert refused_attempt.error == "Amount must be at least $0.50 usd"
    assert reload(refused).past_due_since == ISSUED
    assert Invoice.objects.get(account=paid).status == InvoiceStatus.PAID
    assert isinstance(collection.get_gateway(), StripeGateway)


def test_a_provider_that_cannot_answer_for_one_invoice_never_stops_the_run(
    make_account, monkeypatch
):
    accounts = [make_account("voice-payg") for _ in range(2)]
    for account in accounts:
        add_card(account)
        report_usage_of_458_usd(account, now=ISSUED)
    invoice_thresholds(now=ISSUED)
    unreachable = accounts[0]
    charge = TestModeGateway.charge_saved_card

    def flaky(self, *, account, **kwargs):
        if account.pk == unreachable.pk:
            raise ProviderUnavailable("Stripe did not answer.")
        return charge(self, account=account, **kwargs)

    monkeypatch.setattr(TestModeGateway, "charge_saved_card", flaky)

    assert collect_due_invoices(now=ISSUED) == 1

    assert Invoice.objects.get(account=accounts[1]).status == InvoiceStatus.PAID
    pending = InvoicePayment.objects.get(invoice__account=unreachable)
    assert pending.status == PaymentStatus.PENDING  # asked again, same key, after its lease


# Item 4: one attempt per due time ------------------------------------------------------------


def test_a_run_that_listed_an_invoice_before_another_run_failed_it_does_not_retry_it(
    make_account,
):
    account = make_account("voice-payg")
    add_card(account, Card.DECLINE)
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)
    listed = collection.invoices_to_collect(now=ISSUED)  # the second run's list

    first = collect_invoice(invoice_id=invoice.pk, now=ISSUED)
    second = [collect_invoice(invoice_id=pk, now=ISSUED) for pk in listed]

    assert first.status == PaymentStatus.FAILED
    assert second == [None]
    assert InvoicePayment.objects.filter(invoice=invoice).count() == 1
    assert Notification.objects.filter(kind="invoice_payment_failed").count() == 1


def _collect(now):
    return collect_due_invoices(now=now)


@pytest.mark.slow
def test_two_overlapping_collection_runs_make_one_attempt_per_declined_invoice(
    transactional_db, make_account, is_postgres
):
    if not is_postgres:
        pytest.skip("concurrent runs need PostgreSQL's row locks")
    accounts = [make_account("voice-payg") for _ in range(12)]
    for account in accounts:
        add_card(account, Card.DECLINE)
        report_usage_of_458_usd(account, now=ISSUED)
    invoices = invoice_thresholds(now=ISSUED)

    collected = run_in_processes(_collect, [(ISSUED,), (ISSUED + timedelta(milliseconds=5),)])

    assert sum(collected) == len(invoices)
    attempts = InvoicePayment.objects.values_list("invoice_id", flat=True)
    assert sorted(attempts) == sorted(i.pk for i in invoices)
    assert Notification.objects.filter(kind="invoice_payment_failed").count() == len(invoices)
    for invoice in Invoice.objects.all():
        assert invoice.payment_attempts == 1
        assert invoice.next_payment_attempt_at > ISSUED + timedelta(hours=23)


# Item 5: under half a cent ------------------------------------------------------------------


def test_an_invoice_under_half_a_cent_is_carried_and_the_debt_stays_billed(make_account):
    account = make_account("voice-payg")
    add_card(account)
    # Promotional credit pays all but 0.003 USD of a 0.14 USD minute: the invoice's total
    # would round to nothing due.
    post_entry(account=account, amount_micros=137_000, kind=EntryKind.PROMOTIONAL, now=NOW)
    report_minutes(account, 1, now=DURING_FIRST)
    owed = usage_cost(account) - 137_000
    assert 0 < owed < 5_000

    close_periods(now=AFTER_FIRST)
    collect_due_invoices(now=AFTER_FIRST)

    [invoice] = Invoice.objects.filter(account=account, kind=InvoiceKind.INVOICE)
    assert invoice.lines.get(component="carried_to_next").amount_micros == -owed
    assert reload(account).balance_micros == -owed
    assert reload(account).unbilled_micros == owed
    assert owed_never_negative(account) == 0


# Item 6: a card added while past due ---------------------------------------------------------


def test_a_card_added_while_past_due_becomes_the_default_and_pays_the_invoice(
    client, make_user, make_account, django_capture_on_commit_callbacks
):
    owner = make_user()
    account = make_account("voice-payg", owner=owner)
    declined = add_card(account, Card.DECLINE)
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)
    collect_invoice(invoice_id=invoice.pk, now=ISSUED)
    assert reload(account).past_due_since == ISSUED
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("payments:test_card", args=[account.public_id]), {"behaviour": Card.SUCCEED}
        )

    assert response.status_code == 302
    new = PaymentMethod.objects.get(account=account, test_behaviour=Card.SUCCEED)
    assert new.is_default
    declined.refresh_from_db()
    assert not declined.is_default
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID
    assert reload(account).past_due_since is None


def test_a_card_added_while_nothing_is_unpaid_leaves_the_default_alone(make_account):
    account = make_account("voice-payg")
    first = add_card(account)

    add_test_card(account=account, behaviour=Card.SUCCEED, now=NOW)

    first.refresh_from_db()
    assert first.is_default
    assert PaymentMethod.objects.filter(account=account, is_default=True).count() == 1
