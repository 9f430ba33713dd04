"""Invoices: lines, numbering, status and threshold invoicing (SPEC I1, I2, I4).

Every invoice is cut from the account's unbilled lines under the account's row lock and deletes
them in the same transaction, so no charge is invoiced twice or never. Numbers are handed out
per year from a locked counter in the transaction that issues the invoice, so a rolled-back
transaction takes no number and the sequence has no gaps.

Period close (invoices and statements at period end) is in `billing.invoicing.period_close`.
"""

from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import transaction
from django.db.models import F, Max

from accounts.models import Account, BillingMode
from billing import events
from billing.db.bulk_insert import insert_objects, insert_rows
from billing.db.row_updates import update_by_pk
from billing.invoicing.emails import invoices_issued
from billing.invoicing.numbering import next_numbers
from billing.invoicing.parties import (
    customer_details,
    customer_details_by_account,
    seller_details,
)
from billing.ledger.locks import lock_accounts
from billing.models import (
    ALLOWED_TRANSITIONS,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceReason,
    InvoiceStatus,
    LedgerEntry,
    Subscription,
    UnbilledLine,
)
from billing.money import MINIMUM_CARD_CHARGE_MICROS, format_usd, round_to_cents

# Postpaid invoices are due at once: they are charged to the saved card when issued.
PAYMENT_TERMS = timedelta(days=0)

# How invoice lines read, and in which order they appear.
LINE_ORDER = [
    "plan_fee",
    "call",
    "llm",
    "voice_engine",
    "destination",
    "chat",
    "sms",
    "input_tokens",
    "output_tokens",
    "commission",
    "allowance",
    "uncollected",
    "refunds",
    "credits_applied",
    "carried_forward",
]
UNITS = {
    "call": "second",
    "llm": "second",
    "voice_engine": "second",
    "destination": "second",
    "chat": "second",
    "sms": "message",
    "input_tokens": "token",
    "output_tokens": "token",
    "commission": "request",
    "allowance": "second",
}


class UnbilledRow(NamedTuple):
    """An unbilled line as invoicing reads it (plain values: no model instance per row)."""

    component: str
    provider: str
    model: str
    items: int
    quantity: int
    amount_micros: int
    savings_micros: int


class InvoiceError(Exception):
    """A refused invoice operation; nothing was written."""


def describe_line(component: str, provider: str, model: str) -> str:
    names = {
        # A plan change's prorated fee keeps its own wording (billing.payments.plan_changes).
        "plan_fee": model or "Plan fee",
        "call": "Call minutes",
        "llm": f"Call minutes, LLM {model}",
        "voice_engine": "Voice engine minutes",
        "destination": f"International surcharge, {model}",
        "chat": "Chat minutes",
        "sms": "SMS",
        "input_tokens": f"Input tokens, {model}",
        "output_tokens": f"Output tokens, {model}",
        "commission": f"Commission on flex savings, {provider}/{model}".rstrip("/"),
        "allowance": f"Included minutes used, of the period from {model}"
        if model
        else "Included minutes used",
        "uncollected": "Usage the balance could not cover",
        "refunds": "Refunds",
        "credits_applied": "Credits applied",
        "carried_forward": "Carried forward from an earlier invoice (under the minimum charge)",
    }
    return names.get(component, component)[:200]


def _sort_key(row) -> tuple:
    order = LINE_ORDER.index(row.component) if row.component in LINE_ORDER else len(LINE_ORDER)
    return (order, row.provider, row.model)


@dataclass(slots=True)
class LineDraft:
    """An invoice line before it is saved (InvoiceLine's fields but the invoice).

    Period close drafts a few hundred thousand of these: plain objects, cheaper to make than
    model instances, written to the database in one go by `save_drafts`.
    """

    position: int
    component: str
    description: str
    amount_micros: int
    provider: str = ""
    model: str = ""
    items: int = 0
    quantity: int = 0
    unit: str = ""
    savings_micros: int = 0


LINE_FIELDS = [field.name for field in fields(LineDraft)]


def lines_from_unbilled(rows: list[UnbilledRow]) -> list[LineDraft]:
    lines = []
    for position, row in enumerate(sorted(rows, key=_sort_key), start=1):
        lines.append(
            LineDraft(
                position=position,
                component=row.component,
                provider=row.provider,
                model=row.model,
                description=describe_line(row.component, row.provider, row.model),
                items=row.items,
                quantity=row.quantity,
                unit=UNITS.get(row.component, ""),
                amount_micros=row.amount_micros,
                savings_micros=row.savings_micros if row.component == "commission" else 0,
            )
        )
    return lines


def allocate_numbers(*, year: int, count: int) -> list[str]:
    """Hand out `count` consecutive numbers of the year; call inside the issuing transaction."""
    numbers = next_numbers(InvoiceNumberSequence, count=count, year=year)
    return [f"{year}-{n:06d}" for n in numbers]


def transition(*, invoice: Invoice, to: str, now: datetime, reason: str = "") -> Invoice:
    """Move an invoice to another status if the rules allow it (I1)."""
    if to not in ALLOWED_TRANSITIONS[invoice.status]:
        raise InvoiceError(f"An invoice that is {invoice.status} cannot become {to}.")
    updates = {"status": to}
    if to == InvoiceStatus.PAID:
        updates["paid_at"] = now
        updates["next_payment_attempt_at"] = None
    elif to == InvoiceStatus.VOID:
        updates["voided_at"] = now
        updates["next_payment_attempt_at"] = None
    elif to == InvoiceStatus.UNCOLLECTIBLE:
        updates["next_payment_attempt_at"] = None
    if reason:
        updates["status_reason"] = reason
    with transaction.atomic():
        if invoice.status == InvoiceStatus.DRAFT and not invoice.number:
            # A draft leaving draft is issued, and an issued invoice has a number (database
            # check `issued_invoice_has_number`): without this, draft -> open or void failed
            # with an IntegrityError. The number is taken in this transaction, so a refused
            # change gives it back and the sequence keeps no gap.
            [updates["number"]] = allocate_numbers(year=now.year, count=1)
            updates["issued_at"] = invoice.issued_at or now
            updates["seller_details"] = seller_details()
            updates["customer_details"] = customer_details(invoice.account)
        changed = Invoice.objects.filter(pk=invoice.pk, status=invoice.status).update(**updates)
        if not changed:
            raise InvoiceError("The invoice changed meanwhile; reload it and try again.")
    for field, value in updates.items():
        setattr(invoice, field, value)
    return invoice


@dataclass
class Draft:
    account: Account
    invoice: Invoice
    lines: list[LineDraft]
    carry_micros: int = 0  # carried to the next invoice under the minimum charge


def draft_invoice(
    *,
    account: Account,
    kind: str,
    reason: str,
    start: datetime,
    end: datetime,
    rows: list[UnbilledRow],
    key: str,
    now: datetime,
    minimum_micros: int = 0,
    first_lines: list[LineDraft] = (),
) -> Draft:
    """Draft an invoice of the unbilled rows, after `first_lines` (a plan fee in advance)."""
    lines = [*first_lines, *lines_from_unbilled(rows)]
    for position, line in enumerate(lines, start=1):
        line.position = position
    total = sum(line.amount_micros for line in lines)
    subtotal = sum(line.amount_micros for line in lines if line.component in UNITS)
    carry = 0
    # I4: under the plan's minimum charge, or under the smallest amount a card can be charged
    # (which also covers a total under half a cent, that would round to nothing due), nothing
    # is charged: the amount moves to the next invoice as a visible line, so the debt stays
    # billed (balance + unbilled + open invoices never negative).
    if kind == InvoiceKind.INVOICE and 0 < total < max(minimum_micros, MINIMUM_CARD_CHARGE_MICROS):
        carry = total
        if total < minimum_micros:
            why = f"Below the minimum charge of {format_usd(minimum_micros)}"
        else:
            why = f"Below the smallest card payment, {format_usd(MINIMUM_CARD_CHARGE_MICROS)}"
        lines.append(
            LineDraft(
                position=len(lines) + 1,
                component="carried_to_next",
                description=f"{why}: carried to the next invoice",
                amount_micros=-carry,
            )
        )
        total = 0
    due = max(round_to_cents(total), 0) if kind == InvoiceKind.INVOICE else 0
    invoice = Invoice(
        account=account,
        kind=kind,
        reason=reason,
        period_start=start,
        period_end=end,
        idempotency_key=key,
        subtotal_micros=subtotal,
        total_micros=total,
        amount_due_micros=due,
        rounding_micros=due - total if kind == InvoiceKind.INVOICE and total > 0 else 0,
        created_at=now,
        issued_at=now,
        due_at=now + PAYMENT_TERMS,
    )
    return Draft(account=account, invoice=invoice, lines=lines, carry_micros=carry)


def save_drafts(
    drafts: list[Draft], *, now: datetime, settles_unbilled: bool = True
) -> list[Invoice]:
    """Number, insert and settle the state of drafts; the accounts are locked by the caller.

    `settles_unbilled`: the drafts bill the accounts' unbilled lines, which go (False: an
    invoice of other lines, a plan change's fee, leaves them for the period's document).
    """
    if not drafts:
        return []
    numbers = allocate_numbers(year=now.year, count=len(drafts))
    # Both parties as they are now, copied onto the invoice: later edits do not rewrite it.
    seller = seller_details()
    customers = customer_details_by_account([draft.account for draft in drafts])
    invoices = []
    for draft, number in zip(drafts, numbers, strict=True):
        invoice = draft.invoice
        invoice.number = number
        invoice.seller_details = seller
        invoice.customer_details = customers[draft.account.pk]
        nothing_due = invoice.kind == InvoiceKind.STATEMENT or invoice.amount_due_micros == 0
        invoice.status = InvoiceStatus.PAID if nothing_due else InvoiceStatus.OPEN
        invoice.paid_at = now if nothing_due else None
        invoice.next_payment_attempt_at = None if nothing_due else now
        invoices.append(invoice)
    insert_objects(Invoice, invoices)
    insert_rows(
        InvoiceLine,
        ["invoice_id", *LINE_FIELDS],
        [
            (draft.invoice.pk, *(getattr(line, name) for name in LINE_FIELDS))
            for draft in drafts
            for line in draft.lines
        ],
    )
    if settles_unbilled:
        _settle_unbilled(drafts)
    invoices_issued(invoices=invoices, now=now)
    events.invoices_issued(invoices=invoices, now=now)
    return invoices


def _settle_unbilled(drafts: list[Draft]) -> None:
    """Delete the unbilled lines the drafts billed, keeping what each carries forward."""
    account_ids = [d.account.pk for d in drafts]
    UnbilledLine.objects.filter(account_id__in=account_ids).delete()
    carried = [
        UnbilledLine(
            account=d.account,
            component="carried_forward",
            items=1,
            amount_micros=d.carry_micros,
        )
        for d in drafts
        if d.carry_micros
    ]
    UnbilledLine.objects.bulk_create(carried)
    for draft in drafts:
        draft.account.unbilled_micros = draft.carry_micros
    # Nearly every account starts again from 0: one update for those, few for the carries.
    update_by_pk(Account, "unbilled_micros", {d.account.pk: d.carry_micros for d in drafts})


def unbilled_by_account(account_ids: list[int]) -> dict[int, list[UnbilledRow]]:
    rows: dict[int, list[UnbilledRow]] = defaultdict(list)
    for account_id, *values in UnbilledLine.objects.filter(account_id__in=account_ids).values_list(
        "account_id", *UnbilledRow._fields
    ):
        rows[account_id].append(UnbilledRow(*values))
    return rows


# Threshold invoicing (I2) ---------------------------------------------------------------------


def accounts_over_threshold() -> list[int]:
    """Return the postpaid accounts whose unbilled usage reached their plan's threshold.

    One indexed query over accounts and plans, never a loop over every account.
    """
    return list(
        Account.objects.filter(
            billing_mode=BillingMode.POSTPAID,
            subscription__plan__billing_threshold_micros__isnull=False,
            unbilled_micros__gte=F("subscription__plan__billing_threshold_micros"),
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


# Accounts per threshold transaction: the sweep invoices them with a few statements per chunk.
THRESHOLD_CHUNK = 500


def invoice_thresholds(*, now: datetime, chunk: int = THRESHOLD_CHUNK) -> list[Invoice]:
    """Invoice every postpaid account over its threshold for all it accrued until now."""
    due = accounts_over_threshold()
    invoices = []
    for offset in range(0, len(due), chunk):
        invoices += _invoice_threshold_chunk(due[offset : offset + chunk], now=now)
    return invoices


def _invoice_threshold_chunk(account_ids: list[int], *, now: datetime) -> list[Invoice]:
    with transaction.atomic():
        accounts = {pk: locked.account for pk, locked in lock_accounts(account_ids).items()}
        subscriptions = {
            s.account_id: s
            for s in Subscription.objects.select_related("plan").filter(account_id__in=accounts)
        }
        # Re-checked under the locks: a concurrent run may have invoiced some a moment ago.
        due = [
            account
            for account in accounts.values()
            if account.billing_mode == BillingMode.POSTPAID
            and (threshold := subscriptions[account.pk].plan.billing_threshold_micros) is not None
            and account.unbilled_micros >= threshold
        ]
        if not due:
            return []
        ids = [account.pk for account in due]
        unbilled = unbilled_by_account(ids)
        # The key names the last entry invoiced: a second run before new usage finds the same
        # key, and new usage after it makes a new one.
        last_entries = dict(
            LedgerEntry.objects.filter(account_id__in=ids)
            .values("account_id")
            .annotate(last=Max("pk"))
            .values_list("account_id", "last")
        )
        drafts = []
        for account in due:
            subscription = subscriptions[account.pk]
            drafts.append(
                draft_invoice(
                    account=account,
                    kind=InvoiceKind.INVOICE,
                    reason=InvoiceReason.THRESHOLD,
                    start=subscription.last_closed_at or subscription.current_period_start,
                    end=now,
                    rows=unbilled[account.pk],
                    key=f"threshold:{account.public_id}:{last_entries.get(account.pk, 0)}",
                    now=now,
                )
            )
        invoices = save_drafts(drafts, now=now)
        Subscription.objects.filter(account_id__in=ids).update(last_closed_at=now)
    return invoices
