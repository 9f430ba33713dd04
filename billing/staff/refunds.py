"""Money refunds of a top-up to the card, from staff; large ones wait for a second approval.

The refund itself is billing.payments.refunds' (Stripe call, ledger entry, top-up bookkeeping); this
module checks, asks for approval or carries it out, and audits it.
"""

from datetime import datetime

from django.db import IntegrityError, transaction

import billing.payments.refunds
from accounts.models import Account, User
from billing.models import RefundStatus, StaffAction, TopUp
from billing.money import format_usd
from billing.staff.approval_requests import needs_approval, request_approval
from billing.staff.audit import Audit, Outcome, balance_state
from billing.staff.checks import StaffActionError, clean_reason, positive, require_permission
from billing.staff.customer_emails import email_customer

# What staff read after asking for a refund, by the state the card refund reached.
REFUND_OUTCOMES = {
    RefundStatus.SUCCEEDED: "{amount} refunded to the card.",
    RefundStatus.PENDING: "Refund of {amount} sent; the card provider has not confirmed it yet.",
    RefundStatus.FAILED: "Refund of {amount} failed at the card provider; the credit is restored.",
}


def refund_topup(
    *,
    topup: TopUp,
    amount_micros: int,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    note: str = "",
) -> Outcome:
    """Give (part of) a top-up back to the card; large refunds wait for a second approval."""
    require_permission(actor, "billing.refund_topup")
    positive(amount_micros)
    reason = clean_reason(reason)
    audit = Audit(
        action=StaffAction.REFUND_TOPUP, actor=actor, reason=reason, key=key, now=now, note=note
    )
    if repeat := audit.repeated():
        return repeat
    if amount_micros > billing.payments.refunds.refundable_micros(topup):
        raise StaffActionError(
            f"At most {format_usd(billing.payments.refunds.refundable_micros(topup))} of this "
            "top-up can be refunded (not yet refunded and still unspent)."
        )
    if needs_approval(amount_micros):
        return request_approval(
            audit=audit, account=topup.account, amount_micros=amount_micros, topup=topup
        )
    return carry_out_topup_refund(
        topup=topup,
        amount_micros=amount_micros,
        reason=reason,
        actor=actor,
        key=key,
        now=now,
        note=note,
    )


def carry_out_topup_refund(
    *,
    topup: TopUp,
    amount_micros: int,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    note: str = "",
) -> Outcome:
    """Make the refund: `refund_topup` below the threshold, or its approval above it.

    The audit record is written after billing.payments.refunds returns, not in one transaction with
    it: that calls Stripe, which must not happen in a transaction that may still roll back.
    The refund's request key makes a second request refund nothing more.
    """
    account = topup.account
    before = balance_state(Account.objects.get(pk=account.pk))
    try:
        refund = billing.payments.refunds.refund_topup(
            topup=topup,
            amount_micros=amount_micros,
            reason=reason,
            request_key=key,
            now=now,
            actor=actor,
        )
    except billing.payments.refunds.RefundError as exc:
        raise StaffActionError(str(exc)) from None
    audit = Audit(
        action=StaffAction.REFUND_TOPUP, actor=actor, reason=reason, key=key, now=now, note=note
    )
    try:
        with transaction.atomic():
            record = audit.write(
                account=account,
                before=before,
                after={
                    **balance_state(Account.objects.get(pk=account.pk)),
                    "amount_micros": amount_micros,
                    "refund_status": refund.status,
                },
                target=refund,
            )
            if refund.status != RefundStatus.FAILED:
                email_customer(
                    audit=audit,
                    account=Account.objects.get(pk=account.pk),
                    amount_micros=amount_micros,
                    item=f"top-up of {format_usd(topup.amount_micros)} "
                    f"({topup.created_at:%-d %b %Y})",
                )
    except IntegrityError:
        # A double click's twin wrote the record first.
        record = audit.done()
    return Outcome(REFUND_OUTCOMES[refund.status].format(amount=format_usd(amount_micros)), record)
