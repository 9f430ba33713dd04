"""What the billing contacts are told about invoices: issued, paid, payment failed (SPEC N3, P5).

Called from billing.invoicing.invoices and billing.payments.collection inside the transaction that
changed the invoice, so the email goes out only if that change commits. Keys name the invoice number
(and the failed attempt), so a job run twice emails once.
"""

from collections.abc import Iterable
from datetime import datetime

from billing.models import Invoice, InvoiceKind
from billing.money import format_usd
from billing.notifications.links import invoice_page_url
from billing.notifications.outbox import Notice, notify, notify_new

INVOICE_ISSUED = "invoice_issued"
INVOICE_PAID = "invoice_paid"
INVOICE_PAYMENT_FAILED = "invoice_payment_failed"


def invoice_context(invoice: Invoice) -> dict:
    return {
        "number": invoice.number,
        "amount_due": format_usd(invoice.amount_due_micros),
        "total": format_usd(invoice.total_micros),
        "period_start": f"{invoice.period_start:%d %B %Y}",
        "period_end": f"{invoice.period_end:%d %B %Y}",
        "invoice_url": invoice_page_url(invoice.account, invoice.number),
    }


def invoices_issued(*, invoices: Iterable[Invoice], now: datetime) -> None:
    """Email every issued invoice that asks for money (not statements, not zero invoices).

    The invoices were numbered in this transaction, so their keys are new (`notify_new`).
    """
    notify_new(
        notices=[
            Notice(
                account=invoice.account,
                kind=INVOICE_ISSUED,
                key=f"{INVOICE_ISSUED}:{invoice.number}",
                context=invoice_context(invoice),
            )
            for invoice in invoices
            if invoice.kind == InvoiceKind.INVOICE and invoice.amount_due_micros > 0
        ],
        now=now,
    )


def invoice_paid(*, invoice: Invoice, now: datetime) -> None:
    notify(
        account=invoice.account,
        kind=INVOICE_PAID,
        key=f"{INVOICE_PAID}:{invoice.number}",
        context=invoice_context(invoice),
        now=now,
    )


def invoice_payment_failed(
    *, invoice: Invoice, failures: int, next_attempt_at: datetime | None, now: datetime
) -> None:
    """Email each failed attempt: usage is paused until the invoice is paid."""
    notify(
        account=invoice.account,
        kind=INVOICE_PAYMENT_FAILED,
        key=f"{INVOICE_PAYMENT_FAILED}:{invoice.number}:{failures}",
        context={
            **invoice_context(invoice),
            "failures": failures,
            "next_attempt": f"{next_attempt_at:%d %B %Y}" if next_attempt_at else "",
        },
        now=now,
    )
