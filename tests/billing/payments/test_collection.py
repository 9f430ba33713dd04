"""Charging invoices to the saved card, dunning, the past-due pause, and crash safety (SPEC P5,
I3). Cards are test-mode cards (`PaymentMethod.test_behaviour`) behind the real gateway
interface (`billing.payments.gateway.get_gateway`).
"""

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import ApiKey
from billing.invoicing.invoices import invoice_thresholds, transition
from billing.invoicing.period_close import close_periods
from billing.ledger.drift import ledger_drift
from billing.models import (
    EntryKind,
    Invoice,
    InvoicePayment,
    InvoiceStatus,
    PaymentMethod,
    PaymentStatus,
)
from billing.models import (
    TestCardBehaviour as Card,
)
from billing.payments import collection
from billing.payments.collection import (
    PENDING_LEASE,
    RETRY_DELAYS,
    _claim_attempt,
    collect_due_invoices,
    collect_invoice,
    invoices_to_collect,
    retry_account_invoices,
)
from billing.payments.gateway import test_mode
from billing.payments.gateway.protocol import ChargeOutcome
from tests.billing.usage_reports import (
    USD,
    add_card,
    entries,
    flex_request,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
    report_usage_of_458_usd,
)
from tests.conftest import NOW
from usage.reads.keys import load_key
from usage.reports import PaymentRequired
from usage.spending.authorize import authorize

ISSUED = NOW + timedelta(days=3)
AFTER_FIRST = datetime(2026, 4, 15, 1, 0, tzinfo=UTC)


class CountingGateway:
    """The test-mode gateway, counting what it is asked and what it charges."""

    def __init__(self):
        self.asked: list[str] = []
        self.charged: list[str] = []

    def __call__(self):
        return self  # stands in for get_gateway()

    def charge_saved_card(self, *, account, amount_micros, idempotency_key, description, **extra):
        self.asked.append(idempotency_key)
        remembered = idempotency_key in test_mode.TestModeGateway._results
        outcome = test_mode.TestModeGateway().charge_saved_card(
            account=account,
            amount_micros=amount_micros,
            idempotency_key=idempotency_key,
            description=description,
        )
        if not remembered and outcome.status == PaymentStatus.SUCCEEDED:
            self.charged.append(idempotency_key)
        return outcome


@pytest.fixture
def gateway(monkeypatch) -> CountingGateway:
    counting = CountingGateway()
    monkeypatch.setattr(collection, "get_gateway", counting)
    return counting


@pytest.fixture
def open_invoice(make_account):
    """A voice-payg account's 458 USD threshold invoice, issued and not yet charged."""
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)
    return invoice


def fresh(invoice: Invoice) -> Invoice:
    return Invoice.objects.get(pk=invoice.pk)


def may_spend(account, make_key, feature="call", **request) -> bool:
    """Ask the gateway as the API does, with the key (and its account) read afresh."""
    key = ApiKey.objects.select_related("account").get(pk=make_key(account).api_key.pk)
    try:
        authorize(
            key=load_key(key.key_id),
            feature=feature,
            model=request.get("model", "gpt-4o"),
            provider=request.get("provider", "openai"),
            start_within=request.get("start_within", ""),
            call_id="",
            now=request.get("now", ISSUED),
        )
    except PaymentRequired:
        return False
    return True


# Charging the saved card -------------------------------------------------------------------------


def test_an_open_invoice_is_charged_to_the_saved_card_and_becomes_paid(open_invoice, gateway):
    account = open_invoice.account
    add_card(account)
    assert reload(account).balance_micros == -458 * USD  # what the customer owes

    payment = collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)

    assert (payment.status, payment.attempt, payment.amount_micros) == (
        PaymentStatus.SUCCEEDED,
        1,
        458 * USD,
    )
    assert payment.gateway_reference
    invoice = fresh(open_invoice)
    assert (invoice.status, invoice.paid_at, invoice.amount_paid_micros) == (
        InvoiceStatus.PAID,
        ISSUED,
        458 * USD,
    )
    assert invoice.next_payment_attempt_at is None
    [paid] = entries(account, EntryKind.INVOICE_PAYMENT)
    assert (paid.amount_micros, paid.cause) == (458 * USD, invoice)
    assert reload(account).balance_micros == 0  # the debt is cleared
    assert reload(account).past_due_since is None
    assert gateway.charged == [payment.idempotency_key]
    assert ledger_drift() == []


def test_a_paid_invoice_is_not_charged_again(open_invoice, gateway):
    add_card(open_invoice.account)
    collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)

    assert collect_invoice(invoice_id=open_invoice.pk, now=ISSUED) is None
    assert collect_due_invoices(now=ISSUED + timedelta(days=30)) == 0
    assert len(gateway.asked) == 1
    assert len(entries(open_invoice.account, EntryKind.INVOICE_PAYMENT)) == 1


def test_the_dunning_job_charges_every_invoice_that_is_due(make_account, gateway):
    accounts = [make_account("voice-payg") for _ in range(3)]
    for account in accounts:
        add_card(account)
        report_usage_of_458_usd(account, now=ISSUED)
    invoice_thresholds(now=ISSUED)

    assert collect_due_invoices(now=ISSUED - timedelta(seconds=1)) == 0
    assert collect_due_invoices(now=ISSUED) == 3

    assert set(Invoice.objects.values_list("status", flat=True)) == {InvoiceStatus.PAID}
    assert [reload(a).balance_micros for a in accounts] == [0, 0, 0]


def test_sub_cent_totals_are_charged_rounded_and_the_ledger_clears_the_exact_total(
    make_account, gateway
):
    account = make_account("flex-router")
    add_card(account)
    flex_request(account, now=NOW + timedelta(days=3), standard="110", flex="0")  # 22 USD
    flex_request(account, now=NOW + timedelta(days=3))  # 0.0144
    close_periods(now=AFTER_FIRST)

    assert collect_due_invoices(now=AFTER_FIRST) == 1

    [payment] = InvoicePayment.objects.all()
    assert payment.amount_micros == 22_010_000  # 22.0144 rounded half-up to cents
    [paid] = entries(account, EntryKind.INVOICE_PAYMENT)
    assert paid.amount_micros == 22_014_400  # the rounding is forgiven, not owed
    assert reload(account).balance_micros == 0


# A failed charge: past due, retries, the pause (P5) ---------------------------------------------


@pytest.mark.parametrize("behaviour", [Card.DECLINE, Card.REQUIRE_ACTION])
def test_a_failed_charge_makes_the_account_past_due_and_schedules_a_retry(
    open_invoice, gateway, behaviour
):
    account = open_invoice.account
    add_card(account, behaviour)

    payment = collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)

    assert payment.status in (PaymentStatus.FAILED, PaymentStatus.REQUIRES_ACTION)
    assert payment.error
    invoice = fresh(open_invoice)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.next_payment_attempt_at == ISSUED + RETRY_DELAYS[0]
    assert reload(account).past_due_since == ISSUED
    assert reload(account).balance_micros == -458 * USD
    assert not entries(account, EntryKind.INVOICE_PAYMENT)
    assert gateway.charged == []


def test_an_invoice_without_a_card_fails_like_a_declined_one(open_invoice, gateway):
    payment = collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)

    assert (payment.status, payment.error) == (PaymentStatus.FAILED, "No saved card.")
    assert reload(open_invoice.account).past_due_since == ISSUED


def test_retries_follow_the_schedule_then_wait_for_a_new_card(open_invoice, gateway):
    add_card(open_invoice.account, Card.DECLINE)
    collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)
    attempted_at = ISSUED

    for delay in RETRY_DELAYS:
        due_at = attempted_at + delay
        assert fresh(open_invoice).next_payment_attempt_at == due_at
        assert collect_due_invoices(now=due_at - timedelta(seconds=1)) == 0
        assert collect_due_invoices(now=due_at) == 1
        attempted_at = due_at

    invoice = fresh(open_invoice)
    assert invoice.payment_attempts == len(RETRY_DELAYS) + 1
    assert invoice.next_payment_attempt_at is None  # no more retries: the customer must act
    assert collect_due_invoices(now=attempted_at + timedelta(days=60)) == 0
    assert len(set(gateway.asked)) == len(gateway.asked) == len(RETRY_DELAYS) + 1
    assert reload(open_invoice.account).past_due_since == ISSUED


def test_past_due_pauses_billable_calls_and_chat_on_voice_payg_but_not_free_sms(
    open_invoice, gateway, make_key
):
    account = open_invoice.account
    assert may_spend(account, make_key, "call")
    add_card(account, Card.DECLINE)
    collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)
    account = reload(account)

    assert not may_spend(account, make_key, "call")
    assert not may_spend(account, make_key, "chat")
    assert may_spend(account, make_key, "sms")  # SMS cost nothing on voice-payg


def past_due_flex_account(make_account):
    account = make_account("flex-router")
    add_card(account, Card.DECLINE)
    flex_request(account, now=NOW + timedelta(days=3), standard="110", flex="0")  # 22 USD
    close_periods(now=AFTER_FIRST)
    collect_due_invoices(now=AFTER_FIRST)
    account = reload(account)
    assert account.past_due_since == AFTER_FIRST
    return account


def test_past_due_on_flex_router_pauses_flex_requests_only(make_account, make_key, gateway):
    account = past_due_flex_account(make_account)

    def flex(**request):
        return may_spend(account, make_key, "llm", now=AFTER_FIRST, **request)

    assert not flex(start_within="00h-00m-30s")
    assert not flex(start_within="00h-05m-00s", provider="google", model="gemini-2.5-flash")
    assert flex(start_within="default")
    assert flex(start_within="priority")
    assert flex(start_within="auto")
    assert flex(start_within="00h-00m-30s", provider="anthropic", model="claude-sonnet-4")


def test_a_working_card_pays_the_past_due_invoice_at_once_and_lifts_the_pause(
    make_account, make_key, gateway
):
    account = past_due_flex_account(make_account)
    PaymentMethod.objects.filter(account=account).update(test_behaviour=Card.SUCCEED)
    card_changed_at = AFTER_FIRST + timedelta(hours=2)  # well before the next scheduled retry

    assert retry_account_invoices(account=account, now=card_changed_at) == 1

    [invoice] = Invoice.objects.filter(account=account)
    assert (invoice.status, invoice.paid_at) == (InvoiceStatus.PAID, card_changed_at)
    assert reload(account).past_due_since is None
    assert reload(account).balance_micros == 0
    assert may_spend(reload(account), make_key, "llm", start_within="00h-00m-30s", now=AFTER_FIRST)
    assert [p.status for p in InvoicePayment.objects.order_by("attempt")] == [
        PaymentStatus.FAILED,
        PaymentStatus.SUCCEEDED,
    ]


def test_a_new_default_card_is_the_one_charged(make_account, make_key, gateway):
    account = past_due_flex_account(make_account)
    PaymentMethod.objects.filter(account=account).update(is_default=False)
    add_card(account, Card.SUCCEED)

    retry_account_invoices(account=account, now=AFTER_FIRST + timedelta(hours=2))

    assert reload(account).past_due_since is None


def test_the_account_stays_past_due_while_another_invoice_is_unpaid(make_account, gateway):
    account = make_account("voice-payg")
    add_card(account, Card.DECLINE)
    report_usage_of_458_usd(account, now=ISSUED)
    [first] = invoice_thresholds(now=ISSUED)
    collect_invoice(invoice_id=first.pk, now=ISSUED)
    later = ISSUED + timedelta(days=2)
    report_usage_of_458_usd(account, now=later)
    [second] = invoice_thresholds(now=later)
    collect_invoice(invoice_id=second.pk, now=later)
    PaymentMethod.objects.filter(account=account).update(test_behaviour=Card.SUCCEED)
    retry_at = later + RETRY_DELAYS[0]  # the second invoice's first retry

    collect_invoice(invoice_id=second.pk, now=retry_at)

    assert fresh(second).status == InvoiceStatus.PAID
    assert reload(account).past_due_since == ISSUED  # the first is still unpaid
    collect_invoice(invoice_id=first.pk, now=retry_at)
    assert reload(account).past_due_since is None
    assert reload(account).balance_micros == 0


def test_an_uncollectible_invoice_keeps_usage_paused_and_a_new_card_pays_it(
    make_account, make_key, gateway
):
    account = past_due_flex_account(make_account)
    [invoice] = Invoice.objects.filter(account=account)
    transition(invoice=invoice, to=InvoiceStatus.UNCOLLECTIBLE, now=AFTER_FIRST)
    flex = {"start_within": "00h-00m-30s", "now": AFTER_FIRST}

    # Written off stops the dunning, not the debt.
    assert invoices_to_collect(now=AFTER_FIRST + timedelta(days=30)) == []
    assert reload(account).past_due_since is not None
    assert not may_spend(reload(account), make_key, "llm", **flex)

    PaymentMethod.objects.filter(account=account).update(test_behaviour=Card.SUCCEED)
    assert retry_account_invoices(account=account, now=AFTER_FIRST + timedelta(hours=2)) == 1

    assert fresh(invoice).status == InvoiceStatus.PAID
    assert reload(account).past_due_since is None
    assert may_spend(reload(account), make_key, "llm", **flex)


def test_paying_one_invoice_keeps_the_pause_while_another_is_written_off_unpaid(
    make_account, gateway
):
    account = make_account("voice-payg")
    add_card(account, Card.DECLINE)
    report_usage_of_458_usd(account, now=ISSUED)
    [first] = invoice_thresholds(now=ISSUED)
    collect_invoice(invoice_id=first.pk, now=ISSUED)
    transition(invoice=fresh(first), to=InvoiceStatus.UNCOLLECTIBLE, now=ISSUED)
    later = ISSUED + timedelta(days=2)
    report_usage_of_458_usd(account, now=later)
    [second] = invoice_thresholds(now=later)
    PaymentMethod.objects.filter(account=account).update(test_behaviour=Card.SUCCEED)

    collect_invoice(invoice_id=second.pk, now=later)

    assert fresh(second).status == InvoiceStatus.PAID
    assert reload(account).past_due_since == ISSUED  # the first is still owed


# Crash safety (I3) ------------------------------------------------------------------------------


def test_a_run_killed_before_asking_the_gateway_is_resumed_with_the_same_key(open_invoice, gateway):
    add_card(open_invoice.account)
    pending = _claim_attempt(invoice_id=open_invoice.pk, now=ISSUED)  # then the worker dies
    assert pending.status == PaymentStatus.PENDING

    # The next dunning run finds it once the dead worker's lease is over.
    assert collect_due_invoices(now=ISSUED + timedelta(minutes=5)) == 0
    assert collect_due_invoices(now=ISSUED + PENDING_LEASE) == 1

    assert gateway.asked == [pending.idempotency_key]
    [payment] = InvoicePayment.objects.all()
    assert (payment.pk, payment.attempt, payment.status) == (
        pending.pk,
        1,
        PaymentStatus.SUCCEEDED,
    )
    assert fresh(open_invoice).status == InvoiceStatus.PAID
    assert len(entries(open_invoice.account, EntryKind.INVOICE_PAYMENT)) == 1
    assert collect_due_invoices(now=ISSUED + timedelta(days=1)) == 0
    assert gateway.asked == [pending.idempotency_key]


def test_collecting_again_while_an_attempt_is_pending_does_not_ask_the_gateway_twice(
    open_invoice, gateway
):
    add_card(open_invoice.account)
    pending = _claim_attempt(invoice_id=open_invoice.pk, now=ISSUED)

    assert collect_invoice(invoice_id=open_invoice.pk, now=ISSUED + timedelta(minutes=1)) is None
    assert retry_account_invoices(account=open_invoice.account, now=ISSUED) == 0
    assert gateway.asked == []

    resumed = collect_invoice(invoice_id=open_invoice.pk, now=ISSUED + PENDING_LEASE)

    assert resumed.pk == pending.pk
    assert gateway.asked == [pending.idempotency_key]
    assert InvoicePayment.objects.count() == 1


def test_a_run_killed_after_the_charge_but_before_recording_it_charges_once(open_invoice, gateway):
    account = open_invoice.account
    add_card(account)
    pending = _claim_attempt(invoice_id=open_invoice.pk, now=ISSUED)
    # The gateway charged the card, then the worker died before recording the outcome.
    gateway.charge_saved_card(
        account=account,
        amount_micros=pending.amount_micros,
        idempotency_key=pending.idempotency_key,
        description="",
    )

    assert collect_due_invoices(now=ISSUED + PENDING_LEASE) == 1

    assert gateway.asked == [pending.idempotency_key, pending.idempotency_key]
    assert gateway.charged == [pending.idempotency_key]  # asked twice, charged once
    assert InvoicePayment.objects.get().status == PaymentStatus.SUCCEEDED
    assert len(entries(account, EntryKind.INVOICE_PAYMENT)) == 1
    assert reload(account).balance_micros == 0


def test_a_charge_still_processing_is_neither_paid_nor_declined_and_is_asked_again(
    open_invoice, gateway, monkeypatch
):
    account = open_invoice.account
    add_card(account)
    answers = iter(
        [ChargeOutcome("pending", reference="pi_processing"), ChargeOutcome("succeeded", "pi_1")]
    )
    monkeypatch.setattr(gateway, "charge_saved_card", lambda **request: next(answers))

    [payment] = [collect_invoice(invoice_id=open_invoice.pk, now=ISSUED)]

    assert (payment.status, payment.gateway_reference) == (PaymentStatus.PENDING, "pi_processing")
    assert fresh(open_invoice).status == InvoiceStatus.OPEN
    assert reload(account).past_due_since is None  # no pause, no "payment failed" email
    assert not account.notifications.filter(kind__contains="failed").exists()
    assert collect_due_invoices(now=ISSUED + PENDING_LEASE / 2) == 0  # its lease still runs

    assert collect_due_invoices(now=ISSUED + PENDING_LEASE) == 1

    assert InvoicePayment.objects.get().status == PaymentStatus.SUCCEEDED
    assert fresh(open_invoice).status == InvoiceStatus.PAID


def test_a_threshold_run_killed_after_issuing_makes_no_second_invoice_nor_charge(
    make_account, gateway
):
    account = make_account("voice-payg")
    add_card(account)
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)  # issued; the worker dies before charging

    assert invoice_thresholds(now=ISSUED + timedelta(minutes=30)) == []
    assert collect_due_invoices(now=ISSUED + timedelta(minutes=30)) == 1
    assert collect_due_invoices(now=ISSUED + timedelta(minutes=45)) == 0

    assert Invoice.objects.get().pk == invoice.pk
    assert fresh(invoice).status == InvoiceStatus.PAID
    assert len(gateway.charged) == 1
    assert len(entries(account, EntryKind.INVOICE_PAYMENT)) == 1
