"""`GET /api/v1/invoices`: a customer's invoices and statements with their lines (SPEC 11, I1).

A django-ninja router mounted on the API of `usage.api`, which brings the error shape and the
rate-limit headers. Authentication and errors are that API's own (`usage.api.auth`,
`usage.api.errors`); this module must not import `usage.api`, which imports it to mount it.
"""

from datetime import datetime
from typing import Literal

from django.db.models import Q
from django.http import HttpRequest
from ninja import Query, Router
from pydantic import BaseModel, Field

from billing.invoicing.documents import issued_invoices
from billing.models import Invoice
from billing.money import micros_to_api
from usage.api.auth import customer_key
from usage.api.errors import ApiError
from usage.api.schemas import PRINTABLE, ErrorOut, Money

router = Router(tags=["billing"])

# The error statuses of every customer-key operation (the same set as usage.api's).
CUSTOMER_ERRORS = frozenset({400, 401, 403, 429, 500})
MAX_LIMIT = 100


class InvoiceLineOut(BaseModel):
    description: str
    component: str = Field(description="call, llm, voice_engine, input_tokens, ..., refunds.")
    provider: str
    model: str
    items: int = Field(description="Calls, events or requests the line sums up.")
    quantity: int = Field(description="In `unit`: seconds, messages, tokens or requests.")
    unit: str = Field(description="second, message, token, request, or empty.")
    amount: Money
    savings: Money = Field(description="Commission lines: the savings it is a share of.")


class InvoiceOut(BaseModel):
    number: str
    kind: Literal["invoice", "statement"]
    reason: Literal["threshold", "period"]
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    period_start: datetime
    period_end: datetime = Field(description="Exclusive: the period is [start, end).")
    issued_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    currency: Literal["USD"]
    subtotal: Money = Field(description="Usage lines only.")
    total: Money = Field(description="The exact sum of the lines.")
    amount_due: Money = Field(description="The total rounded half-up to whole cents.")
    rounding: Money = Field(description="amount_due minus total.")
    amount_paid: Money
    opening_balance: Money | None = Field(description="Statements: credit at the start.")
    closing_balance: Money | None = Field(description="Statements: credit at the end.")
    lines: list[InvoiceLineOut]


class InvoicesOut(BaseModel):
    invoices: list[InvoiceOut]
    has_more: bool = Field(description="More, older ones follow: ask with starting_after.")


def _money_or_none(micros: int | None) -> str | None:
    return micros_to_api(micros) if micros is not None else None


def invoice_json(invoice: Invoice) -> dict:
    return {
        "number": invoice.number,
        "kind": invoice.kind,
        "reason": invoice.reason,
        "status": invoice.status,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "issued_at": invoice.issued_at,
        "due_at": invoice.due_at,
        "paid_at": invoice.paid_at,
        "currency": "USD",
        "subtotal": micros_to_api(invoice.subtotal_micros),
        "total": micros_to_api(invoice.total_micros),
        "amount_due": micros_to_api(invoice.amount_due_micros),
        "rounding": micros_to_api(invoice.rounding_micros),
        "amount_paid": micros_to_api(invoice.amount_paid_micros),
        "opening_balance": _money_or_none(invoice.opening_balance_micros),
        "closing_balance": _money_or_none(invoice.closing_balance_micros),
        "lines": [
            {
                "description": line.description,
                "component": line.component,
                "provider": line.provider,
                "model": line.model,
                "items": line.items,
                "quantity": line.quantity,
                "unit": line.unit,
                "amount": micros_to_api(line.amount_micros),
                "savings": micros_to_api(line.savings_micros),
            }
            # Sorted here rather than with .order_by() so the prefetched lines are used.
            for line in sorted(invoice.lines.all(), key=lambda line: line.position)
        ],
    }


@router.get(
    "/invoices",
    auth=customer_key,
    response={200: InvoicesOut, CUSTOMER_ERRORS: ErrorOut},
    summary="List invoices and statements",
)
def list_invoices(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=MAX_LIMIT, description="How many, 1 to 100."),
    starting_after: str = Query(
        "",
        max_length=20,
        # No control characters: PostgreSQL refuses a NUL in a query's text (a 500, not a 400).
        pattern=PRINTABLE,
        description="The number of the last invoice of the previous page.",
    ),
):
    """The key's account's invoices and statements, newest first, with their lines."""
    return invoices_page(account=request.auth.account, limit=limit, starting_after=starting_after)


def invoices_page(*, account, limit: int, starting_after: str) -> dict:
    """One page of the account's invoices, newest first (also GET /customers/{id}/invoices)."""
    invoices = issued_invoices(account=account)
    if starting_after:
        cursor = invoices.filter(number=starting_after).first()
        if cursor is None:
            raise ApiError(400, f"No invoice '{starting_after}' on this account.")
        invoices = invoices.filter(
            Q(created_at__lt=cursor.created_at) | Q(created_at=cursor.created_at, pk__lt=cursor.pk)
        )
    page = list(invoices.prefetch_related("lines")[: limit + 1])
    return {
        "invoices": [invoice_json(invoice) for invoice in page[:limit]],
        "has_more": len(page) > limit,
    }
