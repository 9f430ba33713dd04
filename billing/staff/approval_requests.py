"""Refunds above REFUND_APPROVAL_THRESHOLD_MICROS wait for a second staff member's approval.

A credit-back or money refund over the threshold is not carried out: it becomes a pending
RefundApproval, which billing.staff.approvals decides.
"""

from dataclasses import replace

from django.conf import settings
from django.db import transaction

from accounts.models import Account
from billing.models import RefundApproval, StaffAction, TopUp
from billing.money import format_usd
from billing.staff.audit import Audit, Outcome


def approval_threshold_micros() -> int:
    return getattr(settings, "REFUND_APPROVAL_THRESHOLD_MICROS", 500_000_000)


def needs_approval(amount_micros: int) -> bool:
    return amount_micros > approval_threshold_micros()


def request_approval(
    *,
    audit: Audit,
    account: Account,
    amount_micros: int,
    topup: TopUp | None = None,
    target_id: str = "",
) -> Outcome:
    """Record the action in `audit` as waiting for approval, once per form key.

    `target_id` names what a refund of usage refunds (billing cannot point at usage's rows).
    """
    with transaction.atomic():
        approval, created = RefundApproval.objects.get_or_create(
            key=audit.key[:120],
            defaults={
                "account": account,
                "action": audit.action,
                "amount_micros": amount_micros,
                "topup": topup,
                "reason": audit.reason,
                "note": audit.note,
                "target_id": target_id,
                "requested_by": audit.actor,
                "requested_at": audit.now,
            },
        )
        record = None
        if created:
            # The request's own record; the action's is written when it is carried out.
            record = replace(audit, action=StaffAction.REQUEST_APPROVAL).write(
                account=account,
                before={},
                after={"action": audit.action, "amount_micros": amount_micros},
                target=approval,
            )
    return Outcome(
        f"{format_usd(amount_micros)} is over {format_usd(approval_threshold_micros())}: "
        "waiting for a second staff member's approval.",
        record,
        pending_approval=approval,
    )
