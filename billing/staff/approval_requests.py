"""Refunds above REFUND_APPROVAL_THRESHOLD_MICROS wait for a second staff member's approval.

A credit-back or money refund over the threshold is not carried out: it becomes a pending
RefundApproval, which billing.staff.approvals decides.
"""

from dataclasses import replace

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from accounts.models import Account, User
from billing.models import ApprovalStatus, RefundApproval, StaffAction, TopUp
from billing.money import format_usd, format_usd_exact
from billing.notifications.outbox import notify
from billing.staff.audit import Audit, Outcome

APPROVE_PERMISSION = "billing.approve_refund"


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
            _tell_approvers(approval)
    return Outcome(
        f"{format_usd(amount_micros)} is over {format_usd(approval_threshold_micros())}: "
        "waiting for a second staff member's approval.",
        record,
        pending_approval=approval,
    )


def approvers(*, besides: User) -> list[str]:
    """Return the emails of the active staff who may approve a request of `besides`."""
    app_label, codename = APPROVE_PERMISSION.split(".")
    # As Django's ModelBackend grants it (the custom user manager has no with_perm).
    granted = Q(permissions__content_type__app_label=app_label, permissions__codename=codename)
    may_approve = (
        Q(is_superuser=True)
        | Q(groups__in=Group.objects.filter(granted))
        | Q(
            user_permissions__in=Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            )
        )
    )
    return sorted(
        set(
            User.objects.filter(may_approve, is_active=True, is_staff=True)
            .exclude(pk=besides.pk)
            .values_list("email", flat=True)
        )
    )


def _tell_approvers(approval: RefundApproval) -> None:
    """Email every approver but the requester that a request waits (sent on commit)."""
    notify(
        account=approval.account,
        kind="approval_waiting",
        key=f"approval_waiting:{approval.pk}",
        context={
            "approvers": approvers(besides=approval.requested_by),
            "action": approval.get_action_display(),
            "amount": format_usd_exact(approval.amount_micros),
            "requested_by": str(approval.requested_by),
            "reason": approval.reason,
            "note": approval.note,
            "decide_path": reverse("admin:billing_approval_decide", args=[approval.pk]),
        },
        now=approval.requested_at,
    )


def approvals_waiting(*, user: User) -> dict:
    """Return what waits on approval as `user` sees it: how many requests they may decide (none
    of their own), and how many of their own requests still wait."""
    pending = RefundApproval.objects.filter(status=ApprovalStatus.PENDING)
    return {
        "to_decide": (
            pending.exclude(requested_by=user).count() if user.has_perm(APPROVE_PERMISSION) else 0
        ),
        "own": pending.filter(requested_by=user).count(),
    }
