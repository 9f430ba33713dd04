"""Staff voiding an invoice, writing it off, and sending it again (SPEC I1)."""

from datetime import timedelta

import pytest

from billing import staff
from billing.invoicing.period_close import close_periods
from billing.models import (
    EntryKind,
    Invoice,
    InvoiceStatus,
    Notification,
    StaffAction,
    Subscription,
)
from billing.models import TestCardBehaviour as Card
from billing.money import format_usd
from billing.staff import StaffActionError
from tests.billing.staff.scenery import ISSUED, LATER, fresh_account, ledger_rows, past_due_invoice
from tests.billing.staff_data import USD, everything_written, new_key
from tests.billing.usage_reports import add_card
from tests.usage.metering import entries


def test_voiding_an_invoice_credits_its_total_back_and_lifts_the_past_due_pause(
    finance, make_account
):
    account = make_account("voice-payg")
    add_card(account, Card.DECLINE)
    invoice = past_due_invoice(account, at=ISSUED)
    assert fresh_account(account).past_due_since == ISSUED

    outcome = staff.void_invoice(
        invoice=invoice, reason="Billed twice", actor=finance, key=new_key(), now=LATER
    )

    invoice.refresh_from_db()
    assert (invoice.status, invoice.voided_at, invoice.status_reason) == (
        InvoiceStatus.VOID,
        LATER,
        "Billed twice",
    )
    [reversal] = entries(account, EntryKind.ADJUSTMENT)
    assert reversal.amount_micros == invoice.total_micros == 458 * USD
    assert reversal.cause == invoice
    assert reversal.actor == finance
    assert fresh_account(account).balance_micros == 0
    assert fresh_account(account).past_due_since is None
    assert (outcome.record.action, outcome.record.before, outcome.record.after) == (
        StaffAction.VOID_INVOICE,
        {"status": "open", "balance_micros": -458 * USD},
        {"status": "void", "balance_micros": 0},
    )


def test_voiding_one_invoice_keeps_the_pause_while_another_is_unpaid(finance, make_account):
    account = make_account("voice-payg")
    add_card(account, Card.DECLINE)
    first = past_due_invoice(account, at=ISSUED)
    second = past_due_invoice(account, at=ISSUED + timedelta(days=1))
    kwargs = {"reason": "Goodwill", "actor": finance, "now": LATER + timedelta(days=1)}

    staff.void_invoice(invoice=first, key=new_key(), **kwargs)
    assert fresh_account(account).past_due_since == ISSUED
    staff.void_invoice(invoice=second, key=new_key(), **kwargs)

    assert fresh_account(account).past_due_since is None
    assert fresh_account(account).balance_micros == 0


def test_a_paid_invoice_cannot_be_voided(finance, make_account):
    account = make_account("voice-payg")
    add_card(account, Card.SUCCEED)
    paid = past_due_invoice(account, at=ISSUED)
    assert paid.status == InvoiceStatus.PAID
    before = everything_written()

    with pytest.raises(StaffActionError, match="paid"):
        staff.void_invoice(invoice=paid, reason="r", actor=finance, key=new_key(), now=LATER)

    assert everything_written() == before


def test_marking_an_invoice_uncollectible_writes_it_off_without_touching_the_ledger(
    finance, open_invoice
):
    account = open_invoice.account
    ledger_before = ledger_rows(account)

    outcome = staff.mark_uncollectible(
        invoice=open_invoice,
        reason="Customer went bankrupt",
        actor=finance,
        key=new_key(),
        now=LATER,
    )

    open_invoice.refresh_from_db()
    assert open_invoice.status == InvoiceStatus.UNCOLLECTIBLE
    assert open_invoice.next_payment_attempt_at is None
    assert ledger_rows(account) == ledger_before
    assert (outcome.record.action, outcome.record.before, outcome.record.after) == (
        StaffAction.MARK_UNCOLLECTIBLE,
        {"status": "open"},
        {"status": "uncollectible"},
    )


def test_resending_an_invoice_records_a_notification_and_emails_the_invoice_again(
    finance, open_invoice, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcome = staff.resend_invoice(
            invoice=open_invoice, actor=finance, key=new_key(), now=LATER
        )

    [notification] = Notification.objects.filter(key__contains=":resend:")
    assert notification.kind == "invoice_issued"
    assert notification.account == open_invoice.account
    assert notification.context["number"] == open_invoice.number
    [message] = mailoutbox
    assert open_invoice.number in message.subject
    assert format_usd(open_invoice.amount_due_micros) in message.subject
    assert message.to == open_invoice.account.billing_emails
    assert outcome.record.action == StaffAction.RESEND_INVOICE
    assert outcome.record.actor == finance


def test_a_statement_is_not_resent_as_an_invoice(finance, make_account):
    account = make_account(credit_micros=10 * USD)
    close_periods(now=Subscription.objects.get(account=account).current_period_end)
    statement = Invoice.objects.get(account=account)

    with pytest.raises(StaffActionError, match="issued invoice"):
        staff.resend_invoice(invoice=statement, actor=finance, key=new_key(), now=LATER)
