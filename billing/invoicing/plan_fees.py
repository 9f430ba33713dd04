"""The plan fee at period close (SPEC F1): who pays it how, its invoice line, its ledger entry.

Charged in advance when a period starts, once: the `PlanFeeCharge` of (account, period start)
is unique, so a second close of the same period (concurrent, or after a crash) fails its
insert and rolls its chunk back. A postpaid account finds the fee as the first line of the
invoice cut at the start of the period; a prepaid account pays it from credit when its plan
says so and the balance covers it, and otherwise by card on an invoice of its own, which the
dunning of SPEC P5 collects (billing.payments.collection). Until a fee is paid, the period's
included allowance stays locked; paying the invoice releases it (billing.plans.fees).
"""

from dataclasses import dataclass
from datetime import datetime

from accounts.models import Account, BillingMode
from billing.invoicing.invoices import Draft, LineDraft, save_drafts
from billing.ledger.locks import LockedAccount
from billing.ledger.posting import Posting, post_entries
from billing.models import (
    EntryKind,
    FeePaidBy,
    FeePayment,
    Invoice,
    InvoiceKind,
    InvoiceReason,
    Plan,
    PlanFeeCharge,
)
from billing.money import round_to_cents
from billing.plans.fees import plan_fee_micros, prorated_fee_micros

FEE_COMPONENT = "plan_fee"


def fee_line(*, plan: Plan, amount_micros: int, start: datetime, end: datetime) -> LineDraft:
    """The invoice line of a period's fee, in advance."""
    return LineDraft(
        position=1,
        component=FEE_COMPONENT,
        description=f"{plan.name} plan fee, {start:%Y-%m-%d} to {end:%Y-%m-%d} (in advance)",
        amount_micros=amount_micros,
        items=1,
        quantity=1,
        unit="period",
    )


def fee_key(*, account: Account, start: datetime) -> str:
    return f"planfee:{account.public_id}:{start:%Y%m%d}"


def paid_by(*, account: Account, plan: Plan, fee_micros: int) -> str:
    """How the fee of a period that begins on `plan` is paid (the account locked)."""
    if plan.billing_mode == BillingMode.POSTPAID and account.billing_mode == BillingMode.POSTPAID:
        return FeePaidBy.INVOICE
    if plan.fee_payment == FeePayment.CREDIT and account.balance_micros >= fee_micros:
        return FeePaidBy.CREDIT
    # A card plan, or credit that does not cover the fee: the card pays it on an invoice.
    return FeePaidBy.CARD


def fee_invoice_draft(
    *, account: Account, lines: list[LineDraft], start: datetime, end: datetime, key: str, now
) -> Draft:
    """An invoice of plan-fee lines alone, charged to the saved card (prepaid accounts)."""
    total = sum(line.amount_micros for line in lines)
    due = max(round_to_cents(total), 0)
    invoice = Invoice(
        account=account,
        kind=InvoiceKind.INVOICE,
        reason=InvoiceReason.PLAN_FEE,
        period_start=start,
        period_end=end,
        idempotency_key=key,
        subtotal_micros=total,
        total_micros=total,
        amount_due_micros=due,
        rounding_micros=due - total if total > 0 else 0,
        created_at=now,
        issued_at=now,
        due_at=now,
    )
    return Draft(account=account, invoice=invoice, lines=lines)


@dataclass
class PeriodFee:
    """A period's fee decided at close, saved once its invoice (if any) has an id."""

    account: Account
    plan: Plan
    start: datetime
    end: datetime
    amount_micros: int
    paid_by: str
    draft: Draft | None = None  # the invoice that bills it (INVOICE, CARD)

    @property
    def locks_allowance(self) -> bool:
        """The period's included allowance waits until the fee is paid; one paid from credit
        is paid now, and releases it (as paying the invoice would)."""
        return self.paid_by != FeePaidBy.CREDIT


def period_fee(
    *, account: Account, plan: Plan, start: datetime, end: datetime, amount_micros: int, now
) -> PeriodFee:
    """Decide how the fee of the period [start, end) is paid; a card-paid fee gets its own
    invoice draft (a postpaid fee's invoice is the caller's: period close's period invoice).
    Call with the account locked (the balance decides a fee paid from credit)."""
    fee = PeriodFee(
        account=account,
        plan=plan,
        start=start,
        end=end,
        amount_micros=amount_micros,
        paid_by=paid_by(account=account, plan=plan, fee_micros=amount_micros),
    )
    if fee.paid_by == FeePaidBy.CARD:
        fee.draft = fee_invoice_draft(
            account=account,
            lines=[fee_line(plan=plan, amount_micros=amount_micros, start=start, end=end)],
            start=start,
            end=end,
            key=fee_key(account=account, start=start),
            now=now,
        )
    return fee


def charge_first_period_fee(
    *, locked: LockedAccount, plan: Plan, start: datetime, end: datetime, now: datetime
) -> PeriodFee | None:
    """Charge a new account the fee of the period it opens in, as period close charges the
    next one (`period_fee`, `record_period_fees`); return it, or None for a plan without one.

    The fee in effect at opening, prorated by the second to what is left of [start, end)
    (`prorated_fee_micros`: an account opened on its anchor day pays the fee less the hours
    already gone). A postpaid account's is the first line of its first invoice, cut now.
    Neither invoice is charged before the account has a card: it waits, open, with no attempt
    due, so a new account is never past due (402) before it could add one; a saved card makes
    it due at once (billing.payments.collection.schedule_card_retries).
    """
    account = locked.account
    amount = prorated_fee_micros(
        fee_micros=plan_fee_micros(plan=plan, at=now), start=start, end=end, at=now
    )
    if not amount:
        return None
    fee = period_fee(
        account=account, plan=plan, start=start, end=end, amount_micros=amount, now=now
    )
    if fee.paid_by == FeePaidBy.INVOICE:
        fee.draft = fee_invoice_draft(
            account=account,
            lines=[fee_line(plan=plan, amount_micros=amount, start=start, end=end)],
            start=start,
            end=end,
            key=fee_key(account=account, start=start),
            now=now,
        )
    if fee.draft is not None:
        [invoice] = save_drafts([fee.draft], now=now, settles_unbilled=False)
        Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt_at=None)
    record_period_fees([fee], locked={account.pk: locked}, now=now)
    return fee


def record_period_fees(
    fees: list[PeriodFee], *, locked: dict[int, LockedAccount], now: datetime
) -> None:
    """Insert the fee charges (the unique constraint makes a second close of the period fail)
    and post what the ledger carries: a fee paid from credit, and a postpaid fee the period's
    invoice bills (its payment posts the invoice's total back). A card-paid fee moves no
    balance: the card pays it, and its invoice says so.

    WARNING (ordering): call before the next period's included credit is granted, so a fee
    paid from credit is never paid with the credit it releases.
    """
    PlanFeeCharge.objects.bulk_create(
        [
            PlanFeeCharge(
                account=fee.account,
                plan=fee.plan,
                kind="period",
                period_start=fee.start,
                period_end=fee.end,
                amount_micros=fee.amount_micros,
                paid_by=fee.paid_by,
                invoice=fee.draft.invoice if fee.draft else None,
                key=fee_key(account=fee.account, start=fee.start),
                created_at=now,
                paid_at=now if fee.paid_by == FeePaidBy.CREDIT else None,
            )
            for fee in fees
        ]
    )
    for fee in fees:
        if fee.paid_by == FeePaidBy.CARD:
            continue
        post_entries(
            locked=locked[fee.account.pk],
            postings=[
                Posting(
                    amount_micros=-fee.amount_micros,
                    kind=EntryKind.PLAN_FEE,
                    description=f"{fee.plan.name} plan fee, {fee.start:%Y-%m-%d} to "
                    f"{fee.end:%Y-%m-%d}",
                    idempotency_key=fee_key(account=fee.account, start=fee.start),
                    cause=fee.draft.invoice if fee.draft else None,
                )
            ],
            now=now,
            allow_overdraft=fee.paid_by == FeePaidBy.INVOICE,
        )
