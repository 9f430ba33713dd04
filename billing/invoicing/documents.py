"""What an invoice or statement says to people: one selector for its HTML page and its PDF.

The figures are stored by `billing.invoicing.invoices`; this module only reads and formats them,
once, so the page and the PDF can never disagree. Amounts are text here, in cents as people read a
document (docs/billing-rules.md, "Money as people read it"); each rounded figure carries its exact
value as `*_title` for the page's hover, and a "Rounding" line makes the column add up.
"""

from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account
from billing.invoicing.parties import seller_details
from billing.models import Invoice, InvoiceKind, InvoiceStatus, Receipt
from billing.money import (
    MICROS_PER_USD,
    cents_rounding,
    exact_title,
    format_rate,
    format_usd,
)

SECONDS_PER_MINUTE = 60
# Statement lines that sum ledger entries of a kind ("ledger:topup"), not usage.
LEDGER_LINE_PREFIX = "ledger:"
# Plural names of the quantity units invoicing writes on lines (billing.invoicing.invoices.UNITS).
_UNIT_NAMES = {"message": "messages", "token": "tokens", "request": "requests"}  # nosec B105


def issued_invoices(*, account: Account) -> QuerySet[Invoice]:
    """Return the account's issued invoices and statements, newest first.

    Drafts have no number yet and are not shown to customers.
    """
    return (
        Invoice.objects.filter(account=account)
        .exclude(status=InvoiceStatus.DRAFT)
        .order_by("-created_at", "-pk")
    )


def format_quantity(quantity: int, unit: str) -> str:
    """Return a line's quantity for people: seconds as minutes with two decimals ('1.38 min'),
    tokens, messages and requests as whole numbers ('1,234 tokens'); '' for lines without one."""
    if not unit:
        return ""
    if unit == "second":
        # Display only: the charge was rated on the exact seconds, not on this rounded figure.
        minutes = (Decimal(quantity) / SECONDS_PER_MINUTE).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
        return f"{minutes:,} min"
    name = _UNIT_NAMES.get(unit, unit)
    if quantity == 1 and name.endswith("s"):
        name = name[:-1]
    return f"{quantity:,} {name}"


# What a line's unit price is quoted per: the units rates are set in (billing.models.Rate).
_PRICE_UNITS = {
    "second": (SECONDS_PER_MINUTE, "min"),
    "token": (1_000_000, "1M tokens"),
    "message": (1, "message"),
}


def unit_price(amount_micros: int, quantity: int, unit: str) -> str:
    """Return a line's price per unit ('$0.05 / min'), or '' where a line has no unit price.

    The line's amount is the sum of charges each rounded once to the micro-dollar, so this is
    amount ÷ quantity, shown to four decimals past the cent at most: equal to the rate for a
    line at one rate, and the average when a price changed within the period.
    """
    if unit not in _PRICE_UNITS or quantity <= 0 or amount_micros <= 0:
        return ""
    per, name = _PRICE_UNITS[unit]
    price = (Decimal(amount_micros) * per / (Decimal(quantity) * MICROS_PER_USD)).quantize(
        Decimal("0.000001"), rounding=ROUND_HALF_UP
    )
    return f"{format_rate(price)} / {name}"


def _parties(invoice_or_receipt) -> tuple[dict, dict]:
    """Return the document's seller and customer as copied when it was issued.

    Documents issued before the copies existed print the seller from settings and the account's
    name and email, as they did then.
    """
    account = invoice_or_receipt.account
    seller = invoice_or_receipt.seller_details or seller_details()
    customer = invoice_or_receipt.customer_details or {
        "legal_name": account.name,
        "address": [],
        "country": "",
        "tax_id": "",
        "email": account.email,
    }
    return seller, customer


def signed_usd(micros: int) -> str:
    """Return '+$0.01' or '-$0.01': a difference in cents, sign always shown."""
    return f"+{format_usd(micros)}" if micros > 0 else format_usd(micros)


def _local(moment: datetime | None) -> datetime | None:
    return timezone.localtime(moment) if moment is not None else None


def _day(moment: date | datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"  # '5 Mar 2026'; %-d is not portable


def period_label(start: datetime, end: datetime) -> str:
    """Return the half-open period [start, end) as people read it.

    A period of whole days reads with its last day included ('15 Mar 2026 to 14 Apr 2026'); a
    threshold invoice, which ends at the moment it was cut, reads with times.
    """
    start, end = timezone.localtime(start), timezone.localtime(end)
    if start.time() == time(0) and end.time() == time(0) and end > start:
        last_day = (end - timedelta(days=1)).date()
        return f"{_day(start)} to {_day(last_day)}"
    zone = start.tzname() or ""
    return f"{_day(start)} {start:%H:%M} to {_day(end)} {end:%H:%M} {zone}".rstrip()


def invoice_summary(invoice: Invoice) -> dict:
    """Return one row of the invoice list: what tells invoices apart at a glance."""
    return {
        "number": invoice.number or "",
        "kind_label": invoice.get_kind_display(),
        "is_statement": invoice.kind == InvoiceKind.STATEMENT,
        "status": invoice.status,
        "status_label": invoice.get_status_display(),
        "period": period_label(invoice.period_start, invoice.period_end),
        "issued_at": _local(invoice.issued_at),
        "total": format_usd(invoice.total_micros),
        "amount_due": format_usd(_balance_due(invoice)),
    }


def _balance_due(invoice: Invoice) -> int:
    """Return what is left to pay: nothing on a statement or a paid invoice."""
    if invoice.kind == InvoiceKind.STATEMENT:
        return 0
    return max(invoice.amount_due_micros - invoice.amount_paid_micros, 0)


def invoice_document(invoice: Invoice) -> dict:
    """Return everything an invoice or statement shows, as plain data and ready-made text.

    Keys ending in `_micros` are the stored integers; their formatted twins are text.
    """
    is_statement = invoice.kind == InvoiceKind.STATEMENT
    lines = [
        {
            "position": line.position,
            "description": line.description,
            "quantity": format_quantity(line.quantity, line.unit),
            "unit_price": unit_price(line.amount_micros, line.quantity, line.unit),
            "savings": format_usd(line.savings_micros) if line.savings_micros else "",
            "amount_micros": line.amount_micros,
            "amount": format_usd(line.amount_micros),
            "amount_title": exact_title(line.amount_micros),
            "is_movement": line.component.startswith(LEDGER_LINE_PREFIX),
        }
        for line in invoice.lines.order_by("position")
    ]
    if is_statement:
        # A statement lists what usage cost and, apart, what was added to or taken from the
        # credit (top-ups, grants, expiry): both are positive amounts of a different sense.
        sections = [
            {"title": "Usage", "lines": [line for line in lines if not line["is_movement"]]},
            {"title": "Credit movements", "lines": [line for line in lines if line["is_movement"]]},
        ]
    else:
        sections = [{"title": "Lines", "lines": lines}]
    payments = [
        {
            "attempt": payment.attempt,
            "status": payment.get_status_display(),
            "status_code": payment.status,
            "at": _local(payment.completed_at or payment.created_at),
            "amount": format_usd(payment.amount_micros),
            "error": payment.error,
        }
        for payment in invoice.payments.order_by("attempt")
    ]
    # A statement asks for no money, so it has no total to reconcile its lines with.
    rounding = (
        0
        if is_statement
        else cents_rounding(
            total_micros=invoice.total_micros,
            line_micros=[line["amount_micros"] for line in lines],
        )
    )
    account = invoice.account
    seller, customer = _parties(invoice)
    balance_due = _balance_due(invoice)
    return {
        "seller": seller,
        "customer": customer,
        "number": invoice.number or "",
        "kind": invoice.kind,
        "kind_label": invoice.get_kind_display(),
        "is_statement": is_statement,
        "status": invoice.status,
        "status_label": invoice.get_status_display(),
        "status_reason": invoice.status_reason,
        "reason_label": invoice.get_reason_display(),
        "account_name": account.name,
        "account_public_id": account.public_id,
        "account_email": account.email,
        "period": period_label(invoice.period_start, invoice.period_end),
        "period_start": _local(invoice.period_start),
        "period_end": _local(invoice.period_end),
        "issued_at": _local(invoice.issued_at),
        "due_at": None if is_statement else _local(invoice.due_at),
        "paid_at": None if is_statement else _local(invoice.paid_at),
        "lines": lines,
        "sections": sections,
        "subtotal_micros": invoice.subtotal_micros,
        "subtotal": format_usd(invoice.subtotal_micros),
        "subtotal_title": exact_title(invoice.subtotal_micros),
        "total_micros": invoice.total_micros,
        "total": format_usd(invoice.total_micros),
        "total_title": exact_title(invoice.total_micros),
        # WARNING: the amount charged is the total rounded once, half-up, to whole cents by
        # invoicing; it is shown as stored, never re-rounded here.
        "amount_due_micros": balance_due,
        "amount_due": format_usd(balance_due),
        # Display only: the cents that make the lines, each shown rounded, add up to the total.
        "rounding_micros": rounding,
        "rounding": signed_usd(rounding) if rounding else "",
        "amount_paid": format_usd(invoice.amount_paid_micros),
        "opening_balance": (
            format_usd(invoice.opening_balance_micros)
            if invoice.opening_balance_micros is not None
            else ""
        ),
        "opening_balance_title": exact_title(invoice.opening_balance_micros or 0),
        "closing_balance_title": exact_title(invoice.closing_balance_micros or 0),
        "closing_balance": (
            format_usd(invoice.closing_balance_micros)
            if invoice.closing_balance_micros is not None
            else ""
        ),
        "payments": payments,
    }


def account_receipts(*, account: Account) -> QuerySet[Receipt]:
    """Return the account's receipts, newest first, with what `receipt_document` reads."""
    return (
        Receipt.objects.filter(account=account)
        .select_related("account", "topup", "invoice_payment__invoice")
        .order_by("-paid_at", "-pk")
    )


def receipt_document(receipt: Receipt) -> dict:
    """Return everything a receipt shows, for its HTML page and its PDF alike."""
    seller, customer = _parties(receipt)
    payment = receipt.invoice_payment
    topup = receipt.topup
    return {
        "number": receipt.number,
        "title": f"Receipt {receipt.number}",
        "seller": seller,
        "customer": customer,
        "account_name": receipt.account.name,
        "account_public_id": receipt.account.public_id,
        "description": receipt.description,
        "paid_at": _local(receipt.paid_at),
        "amount_micros": receipt.amount_micros,
        "amount": format_usd(receipt.amount_micros),
        "method": "Card",
        "reference": topup.public_id if topup else (payment.gateway_reference if payment else ""),
        "invoice_number": payment.invoice.number if payment else "",
    }
