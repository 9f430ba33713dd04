"""Crediting back a call the platform got wrong (seed 000 "Refunds"; SPEC P4, U11)."""

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import Account
from billing.invoicing.period_close import close_periods
from billing.models import EntryKind, Invoice, InvoiceStatus, UnbilledLine
from billing.payments.collection import collect_invoice
from tests.billing.usage_reports import add_card
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    call,
    entries,
    everything_written,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.ingest.calls import refund_call, report_call
from usage.models import Call, UsageRollup
from usage.reports import NotFound, UsageError

LATER = NOW + timedelta(hours=2)
# The periods of an account opened at NOW (anchor day 15).
FIRST_END = datetime(2026, 4, 15, tzinfo=UTC)
SECOND_END = datetime(2026, 5, 15, tzinfo=UTC)


@pytest.fixture
def prepaid(make_account):
    return make_account("voice-prepaid", credit_micros=20 * USD)


def test_refund_call_credits_back_the_charged_amount(prepaid):
    charged, _ = report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)

    refunded = refund_call(call_id="c1", now=LATER, reason="Agent crashed")

    assert balance(prepaid) == 20 * USD
    [refund] = entries(prepaid, EntryKind.REFUND)
    assert refund.amount_micros == 110_667
    assert refund.cause == charged
    assert refund.reason == "Agent crashed"
    assert (refunded.refunded_micros, refunded.refunded_at) == (110_667, LATER)
    assert refunded.cost_micros == 110_667  # the rating itself is kept


def test_refunding_a_call_twice_credits_it_back_once(prepaid):
    report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)
    first = refund_call(call_id="c1", now=LATER)
    before = everything_written()

    second = refund_call(call_id="c1", now=LATER + timedelta(minutes=1))

    assert (second.pk, second.refunded_micros, second.refunded_at) == (first.pk, 110_667, LATER)
    assert len(entries(prepaid, EntryKind.REFUND)) == 1
    assert everything_written() == before


def test_a_refund_shows_in_the_rollups(prepaid):
    report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)

    refund_call(call_id="c1", now=LATER)

    row = UsageRollup.objects.get(account=prepaid, is_line=False, component="call")
    assert (row.items, row.cost_micros, row.refunded_micros) == (1, 110_667, 110_667)


def test_a_partly_collected_call_refunds_only_what_was_charged(make_account):
    account = make_account("voice-prepaid", credit_micros=50_000)
    report_call(report=call(account, 83, call_id="c1"), now=NOW)

    refunded = refund_call(call_id="c1", now=LATER)

    assert refunded.refunded_micros == 50_000
    assert balance(account) == 50_000


def test_a_free_call_has_nothing_to_refund(prepaid):
    report_call(report=call(prepaid, 83, call_id="c1", status="failed"), now=NOW)

    with pytest.raises(UsageError):
        refund_call(call_id="c1", now=LATER)
    assert entries(prepaid, EntryKind.REFUND) == []


def test_a_call_that_is_not_final_cannot_be_refunded(prepaid):
    report_call(report=call(prepaid, call_id="c1", status="in_progress", ended_at=None), now=NOW)

    with pytest.raises(UsageError):
        refund_call(call_id="c1", now=LATER)


def test_refunding_an_unknown_call_is_not_found(prepaid):
    with pytest.raises(NotFound) as raised:
        refund_call(call_id="nope", now=LATER)

    assert raised.value.status == 404


# Postpaid: a refund reduces what is owed exactly once (SPEC P4, L6, I1) ---------------------
# A 60 s call with gpt-4o on voice-payg is one aggregated minute: 0.05 (LLM) + 0.09 (voice
# engine) = 0.14 USD. What the customer pays in the end is what the invoices collect. Calls that
# are invoiced are 4 minutes (0.56 USD): an invoice under 0.50 USD is carried, not charged.


def unbilled_lines(account: Account) -> dict[str, int]:
    return dict(
        UnbilledLine.objects.filter(account=account).values_list("component", "amount_micros")
    )


def unbilled_total(account: Account) -> int:
    return Account.objects.values_list("unbilled_micros", flat=True).get(pk=account.pk)


def close_period(account: Account, end: datetime) -> Invoice:
    close_periods(now=end)
    return Invoice.objects.filter(account=account).latest("created_at")


def pay(invoice: Invoice, *, now: datetime) -> None:
    add_card(invoice.account)
    collect_invoice(invoice_id=invoice.pk, now=now)
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID


def second_call(account: Account) -> None:
    """Another 0.56 USD call (4 minutes), in the second period."""
    connected_at = FIRST_END + timedelta(hours=3)
    report_call(
        report=call(account, 240, call_id="c2", llm="gpt-4o", connected_at=connected_at),
        now=connected_at + timedelta(hours=1),
    )


def cash_collected(account: Account) -> int:
    return sum(e.amount_micros for e in entries(account, EntryKind.INVOICE_PAYMENT))


def test_a_refunded_postpaid_call_reduces_what_is_owed(make_account):
    account = make_account("voice-payg")
    report_call(report=call(account, 60, call_id="c1", llm="gpt-4o"), now=NOW)

    refund_call(call_id="c1", now=LATER)

    assert balance(account) == 0
    assert Call.objects.get(call_id="c1").refunded_micros == 140_000
    assert unbilled_lines(account) == {"llm": 50_000, "voice_engine": 90_000, "refunds": -140_000}
    assert unbilled_total(account) == 0
    invoice = close_period(account, FIRST_END)
    assert (invoice.total_micros, invoice.amount_due_micros) == (0, 0)
    assert balance(account) == 0


def test_a_postpaid_call_paid_by_credit_is_refunded_as_that_credit_not_again_off_the_invoice(
    make_account,
):
    account = make_account("voice-payg", credit_micros=100_000)
    report_call(report=call(account, 60, call_id="c1", llm="gpt-4o"), now=NOW)
    assert (balance(account), unbilled_total(account)) == (-40_000, 40_000)

    refund_call(call_id="c1", now=LATER)

    # 0.04 repaid the debt still to be invoiced; 0.10 is credit again, spendable once.
    assert balance(account) == 100_000
    assert unbilled_lines(account) == {
        "llm": 50_000,
        "voice_engine": 90_000,
        "credits_applied": -100_000,
        "refunds": -40_000,
    }
    assert unbilled_total(account) == 0
    assert close_period(account, FIRST_END).total_micros == 0


def test_refunding_a_call_on_an_open_invoice_gives_it_back_once_when_the_invoice_is_paid(
    make_account,
):
    account = make_account("voice-payg")
    report_call(report=call(account, 240, call_id="c1", llm="gpt-4o"), now=NOW)
    invoice = close_period(account, FIRST_END)
    assert (invoice.status, invoice.total_micros) == (InvoiceStatus.OPEN, 560_000)

    refund_call(call_id="c1", now=FIRST_END + timedelta(hours=1))

    assert (balance(account), unbilled_total(account), unbilled_lines(account)) == (0, 0, {})
    pay(invoice, now=FIRST_END + timedelta(hours=2))
    assert balance(account) == 560_000  # the refund, as credit
    second_call(account)
    assert (balance(account), unbilled_total(account)) == (0, 0)
    assert unbilled_lines(account) == {
        "llm": 200_000,
        "voice_engine": 360_000,
        "credits_applied": -560_000,
    }
    assert close_period(account, SECOND_END).total_micros == 0
    # Two calls of 0.56, one refunded: 0.56 paid in all.
    assert cash_collected(account) == 560_000


def test_refunding_a_call_on_a_paid_invoice_credits_it_once(make_account):
    account = make_account("voice-payg")
    report_call(report=call(account, 240, call_id="c1", llm="gpt-4o"), now=NOW)
    pay(close_period(account, FIRST_END), now=FIRST_END + timedelta(hours=1))
    assert balance(account) == 0

    refund_call(call_id="c1", now=FIRST_END + timedelta(hours=2))

    assert (balance(account), unbilled_total(account), unbilled_lines(account)) == (560_000, 0, {})
    second_call(account)
    # The auditor's figures: unbilled was -0.56 USD here, crediting the refund twice.
    assert (balance(account), unbilled_total(account)) == (0, 0)
    assert unbilled_lines(account) == {
        "llm": 200_000,
        "voice_engine": 360_000,
        "credits_applied": -560_000,
    }
    assert close_period(account, SECOND_END).total_micros == 0
    assert cash_collected(account) == 560_000


def test_refunding_a_paid_call_while_newer_usage_is_unbilled_takes_it_off_that_usage_once(
    make_account,
):
    account = make_account("voice-payg")
    report_call(report=call(account, 240, call_id="c1", llm="gpt-4o"), now=NOW)
    pay(close_period(account, FIRST_END), now=FIRST_END + timedelta(hours=1))
    second_call(account)
    assert (balance(account), unbilled_total(account)) == (-560_000, 560_000)

    refund_call(call_id="c1", now=FIRST_END + timedelta(hours=5))

    # The credit-back repaid the new debt: that much is no longer to be invoiced.
    assert (balance(account), unbilled_total(account)) == (0, 0)
    assert unbilled_lines(account)["refunds"] == -560_000
    assert close_period(account, SECOND_END).total_micros == 0
    assert cash_collected(account) == 560_000
