"""Moving an account to another plan (SPEC S2, F1, F2): the one service behind staff's change
in admin (billing.staff.plans.change_plan) and the customer's on the Billing page
(billing.staff.plans.change_own_plan), and the preview both show first.

Rules (docs/billing-rules.md, "Plan changes"):
- Upgrade or downgrade: plans are ranked by their fee, then their included credit, then their
  included minutes. A customer's upgrade takes effect at once, a downgrade at the next period
  unless the new plan says otherwise (`Plan.downgrades_at_once`); staff choose either.
- At once: usage rated from now uses the new plan's rates; the fee is prorated by the second
  (billing.plans.fees.change_proration): the unused part of the old fee is credited, the rest of
  the new fee is charged, the net paid as the plan says (postpaid: on the next invoice; prepaid:
  from credit or by card). The period keeps the included allowance it began with; a new plan
  with a fee also gives its included credit and minutes for the rest of the period, prorated
  like its fee, once that is paid. Rollover follows the new plan from the next period.
- At the next period: recorded as the pending plan; period close applies it and charges the
  new plan's fee in advance.
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from accounts.models import Account, BillingMode
from billing.invoicing.invoices import LineDraft, save_drafts
from billing.invoicing.plan_fees import FEE_COMPONENT, fee_invoice_draft
from billing.ledger.locks import LockedAccount
from billing.ledger.posting import Posting, apply_postings
from billing.models import (
    EntryKind,
    FeeChargeKind,
    FeePaidBy,
    FeePayment,
    Plan,
    PlanFeeCharge,
    Subscription,
    UnbilledLine,
)
from billing.money import format_usd
from billing.notifications.links import billing_page_url
from billing.notifications.outbox import notify
from billing.payments.collection import collect_invoice
from billing.payments.gateway.protocol import ProviderUnavailable
from billing.plans.allowances import keep_period_allowance
from billing.plans.fees import (
    Proration,
    change_proration,
    grant_change_allowance,
    plan_fee_micros,
    prorated_fee_micros,
)

logger = logging.getLogger(__name__)

NOW, NEXT_PERIOD = "now", "next_period"
# A preview confirmed later than this is refused: the customer sees the figures again.
PREVIEW_LIFETIME = timedelta(minutes=15)


class PlanChangeError(Exception):
    """A plan change that cannot be made; nothing was written."""


def plan_rank(plan: Plan, *, at: datetime) -> tuple[int, int, int]:
    """Return what orders plans from lower to higher: fee, included credit, included minutes."""
    return (plan_fee_micros(plan=plan, at=at), plan.included_credit_micros, plan.included_minutes)


def is_downgrade(*, old_plan: Plan, new_plan: Plan, at: datetime) -> bool:
    return plan_rank(new_plan, at=at) < plan_rank(old_plan, at=at)


def self_serve_timing(*, old_plan: Plan, new_plan: Plan, at: datetime) -> str:
    """When a customer's change takes effect: upgrades at once, downgrades at the next period
    unless the new plan says otherwise."""
    if (
        is_downgrade(old_plan=old_plan, new_plan=new_plan, at=at)
        and not new_plan.downgrades_at_once
    ):
        return NEXT_PERIOD
    return NOW


@dataclass(frozen=True)
class PlanChangePreview:
    """What a change would do, as plain values for the preview page and emails."""

    old_plan: Plan
    new_plan: Plan
    when: str
    downgrade: bool
    effective_at: datetime
    period_start: datetime
    period_end: datetime
    old_fee_micros: int
    new_fee_micros: int
    proration: Proration | None  # None: nothing to prorate (next period)
    paid_by: str  # how a positive net is paid now: card, credit or invoice ("" if nothing)
    included_credit_now_micros: int  # the new plan's, for the rest of the period, when paid
    included_seconds_now: int
    rollover_next: bool  # whether the new plan's allowance rolls over
    fingerprint: str  # what the customer saw; a different one at confirmation is refused


def preview_plan_change(
    *, account: Account, subscription: Subscription, plan: Plan, when: str, now: datetime
) -> PlanChangePreview:
    """Return what moving `account` to `plan` `when` ("now" or "next_period") would do."""
    if when not in (NOW, NEXT_PERIOD):
        raise PlanChangeError("Choose 'now' or 'next_period'.")
    old_plan = subscription.plan
    start, end = subscription.current_period_start, subscription.current_period_end
    new_fee = plan_fee_micros(plan=plan, at=now if when == NOW else end)
    proration = None
    credit_now = seconds_now = 0
    paid_by = ""
    if when == NOW:
        proration = change_proration(
            account=account, old_plan=old_plan, new_plan=plan, start=start, end=end, at=now
        )
        if new_fee:
            credit_now = prorated_fee_micros(
                fee_micros=plan.included_credit_micros, start=start, end=end, at=now
            )
            seconds_now = (
                plan.included_minutes
                * 60
                * proration.remaining_seconds
                // (proration.period_seconds)
            )
        paid_by = _paid_by(account=account, plan=plan, net_micros=proration.net_micros)
    fingerprint = _fingerprint(
        subscription.plan_id,
        subscription.pending_plan_id,
        start.isoformat(),
        plan.pk,
        when,
        new_fee,
        plan_fee_micros(plan=old_plan, at=start),
    )
    return PlanChangePreview(
        old_plan=old_plan,
        new_plan=plan,
        when=when,
        downgrade=is_downgrade(old_plan=old_plan, new_plan=plan, at=now),
        effective_at=now if when == NOW else end,
        period_start=start,
        period_end=end,
        old_fee_micros=plan_fee_micros(plan=old_plan, at=start),
        new_fee_micros=new_fee,
        proration=proration,
        paid_by=paid_by,
        included_credit_now_micros=credit_now,
        included_seconds_now=seconds_now,
        rollover_next=plan.rollover_available,
        fingerprint=fingerprint,
    )


def _paid_by(*, account: Account, plan: Plan, net_micros: int) -> str:
    if net_micros <= 0:
        return ""
    if plan.billing_mode == BillingMode.POSTPAID:
        return FeePaidBy.INVOICE
    if plan.fee_payment == FeePayment.CREDIT and account.balance_micros >= net_micros:
        return FeePaidBy.CREDIT
    return FeePaidBy.CARD


def _fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PlanChangeResult:
    preview: PlanChangePreview
    fee_invoice_id: int | None  # an invoice to charge to the card now, after commit


def apply_plan_change(
    *,
    locked: LockedAccount,
    plan: Plan,
    when: str,
    key: str,
    now: datetime,
    fingerprint: str | None = None,
) -> PlanChangeResult:
    """Move the locked account to `plan` `when`; call in the caller's transaction.

    `fingerprint`: the preview the customer confirmed; refused if the subscription, the plans'
    fees or the period changed since (a stale preview). `key` makes the fee charge once.
    """
    account = locked.account
    subscription = Subscription.objects.select_related("plan", "pending_plan").get(account=account)
    preview = preview_plan_change(
        account=account, subscription=subscription, plan=plan, when=when, now=now
    )
    if fingerprint is not None and fingerprint != preview.fingerprint:
        raise PlanChangeError(
            "Your plan or its prices changed since this preview. Review the change again."
        )
    if subscription.plan_id == plan.pk and when == NOW:
        raise PlanChangeError("The account is already on that plan.")
    if when == NEXT_PERIOD:
        subscription.pending_plan = plan
        subscription.save(update_fields=["pending_plan"])
        return PlanChangeResult(preview=preview, fee_invoice_id=None)
    if plan.billing_mode != account.billing_mode and account.unbilled_micros:
        raise PlanChangeError(
            "Switching between prepaid and postpaid now would strand unbilled usage; "
            "change it from the next period."
        )
    # Before the switch: fix this period's allowance from the plan it began on.
    keep_period_allowance(account=account, subscription=subscription, new_plan=plan, now=now)
    subscription.plan = plan
    subscription.pending_plan = None
    # Read only when the next period's allowance is made, which is the new plan's.
    subscription.rollover_enabled = plan.rollover_available
    subscription.save(update_fields=["plan", "pending_plan", "rollover_enabled"])
    if plan.billing_mode != account.billing_mode:
        Account.objects.filter(pk=account.pk).update(billing_mode=plan.billing_mode)
        account.billing_mode = plan.billing_mode
    invoice_id = _settle_proration(locked=locked, preview=preview, key=key, now=now)
    return PlanChangeResult(preview=preview, fee_invoice_id=invoice_id)


def _proration_lines(preview: PlanChangePreview) -> list[LineDraft]:
    proration = preview.proration
    days = f"{proration.remaining_seconds:,} of {proration.period_seconds:,} seconds"
    lines = []
    if proration.credit_micros:
        lines.append(
            LineDraft(
                position=len(lines) + 1,
                component=FEE_COMPONENT,
                description=f"Unused time on {preview.old_plan.name} ({days})"[:200],
                amount_micros=-proration.credit_micros,
            )
        )
    if proration.charge_micros:
        lines.append(
            LineDraft(
                position=len(lines) + 1,
                component=FEE_COMPONENT,
                description=f"Remaining time on {preview.new_plan.name} ({days})"[:200],
                amount_micros=proration.charge_micros,
            )
        )
    return lines


def _settle_proration(
    *, locked: LockedAccount, preview: PlanChangePreview, key: str, now: datetime
) -> int | None:
    """Record and bill the net of the proration; return a card invoice to collect, if any."""
    proration = preview.proration
    if not (proration.credit_micros or proration.charge_micros):
        return None
    account, net = locked.account, proration.net_micros
    charge = PlanFeeCharge(
        account=account,
        plan=preview.new_plan,
        kind=FeeChargeKind.CHANGE,
        period_start=preview.period_start,
        period_end=preview.period_end,
        amount_micros=net,
        paid_by=FeePaidBy.CREDIT,
        included_credit_micros=preview.included_credit_now_micros,
        included_seconds=preview.included_seconds_now,
        key=f"planchange:{account.public_id}:{key}"[:120],
        created_at=now,
    )
    description = f"Plan change to {preview.new_plan.name}: prorated fee"
    if preview.paid_by == FeePaidBy.CARD:
        # The card pays the net on an invoice of its own lines; the credit is on it too.
        draft = fee_invoice_draft(
            account=account,
            lines=_proration_lines(preview),
            start=now,
            end=preview.period_end,
            key=charge.key,
            now=now,
        )
        [invoice] = save_drafts([draft], now=now, settles_unbilled=False)
        charge.paid_by, charge.invoice = FeePaidBy.CARD, invoice
        charge.save()
        return invoice.pk
    unbilled = 0
    if account.billing_mode == BillingMode.POSTPAID:
        # Billed with the usage: the lines join the next invoice, the ledger carries the debt.
        charge.paid_by = FeePaidBy.INVOICE
        for line in _proration_lines(preview):
            UnbilledLine.objects.create(
                account=account,
                component=FEE_COMPONENT,
                model=line.description[:100],
                items=1,
                amount_micros=line.amount_micros,
            )
        unbilled = net
    charge.paid_at = now
    charge.save()
    if net:
        apply_postings(
            locked=locked,
            postings=[
                Posting(
                    amount_micros=-net,
                    kind=EntryKind.PLAN_FEE,
                    description=description,
                    idempotency_key=charge.key,
                    cause=charge,
                )
            ],
            now=now,
            allow_overdraft=account.billing_mode == BillingMode.POSTPAID,
            unbilled_delta_micros=unbilled,
        )
    grant_change_allowance(locked=locked, charge=charge, now=now)
    return None


def collect_fee_invoice(*, invoice_id: int, now: datetime) -> None:
    """Charge a plan change's fee invoice to the card now; if the provider cannot answer, the
    dunning job asks again (the invoice is due, its attempt recorded)."""
    try:
        collect_invoice(invoice_id=invoice_id, now=now)
    except ProviderUnavailable:
        logger.warning("Payment provider unavailable for plan-fee invoice %s", invoice_id)


def plan_changed_email(
    *, account: Account, preview: PlanChangePreview, key: str, now: datetime
) -> None:
    """Tell the billing contacts what changed, when, and what it cost (text and HTML)."""
    net = preview.proration.net_micros if preview.proration else 0
    notify(
        account=account,
        kind="plan_changed",
        key=f"plan_changed:{key}"[:200],
        context={
            "old_plan": preview.old_plan.name,
            "new_plan": preview.new_plan.name,
            "effective": f"{preview.effective_at:%Y-%m-%d %H:%M} UTC",
            "at_once": preview.when == NOW,
            # Empty where nothing is charged or credited: the email leaves the sentence out.
            "charged": format_usd(net) if net > 0 else "",
            "credited": format_usd(-net) if net < 0 else "",
            "new_fee": format_usd(preview.new_fee_micros) if preview.new_fee_micros else "",
            "billing_page_url": billing_page_url(account),
        },
        now=now,
    )
