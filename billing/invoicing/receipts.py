"""Receipts: a numbered proof of every card payment, a top-up or an invoice paid (SPEC P1, P2, P5).

Issued in the transaction that records the payment, under the account's lock, so a payment that
rolls back leaves no receipt and takes no number. One receipt per payment: the receipt's
one-to-one fields to the top-up and to the invoice payment are unique. Numbers run per year
without gaps, R-2026-000001, R-2026-000002, ... (`billing.invoicing.numbering`).
"""

from datetime import datetime

from billing.invoicing.numbering import next_numbers
from billing.invoicing.parties import customer_details, seller_details
from billing.models import InvoicePayment, Receipt, ReceiptNumberSequence, TopUp


def receipt_series(year: int) -> str:
    return f"R-{year}"


def _issue(*, account, amount_micros: int, description: str, paid_at: datetime, **payment):
    series = receipt_series(paid_at.year)
    [number] = next_numbers(ReceiptNumberSequence, count=1, series=series)
    return Receipt.objects.create(
        account=account,
        number=f"{series}-{number:06d}",
        description=description[:200],
        amount_micros=amount_micros,
        paid_at=paid_at,
        seller_details=seller_details(),
        customer_details=customer_details(account),
        created_at=paid_at,
        **payment,
    )


def receipt_for_topup(*, topup: TopUp, now: datetime) -> Receipt:
    """Issue the receipt of a paid top-up; the caller holds the account's lock."""
    return _issue(
        account=topup.account,
        amount_micros=topup.amount_micros,
        description=f"{topup.get_kind_display()}: credit added to the balance",
        paid_at=now,
        topup=topup,
    )


def receipt_for_invoice_payment(*, payment: InvoicePayment, now: datetime) -> Receipt:
    """Issue the receipt of a card payment of an invoice; the caller holds the account's lock."""
    invoice = payment.invoice
    return _issue(
        account=invoice.account,
        amount_micros=payment.amount_micros,
        description=f"Payment of invoice {invoice.number}",
        paid_at=now,
        invoice_payment=payment,
    )
