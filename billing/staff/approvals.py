"""A second staff member approves (and so carries out) or rejects a large refund (SPEC P4)."""

from collections.abc import Callable
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db import transaction

import billing.payments.refunds
from accounts.models import User
from billing.ledger.locks import lock_account
from billing.models import ApprovalStatus, RefundApproval, StaffAction, TopUp
from billing.money import format_usd
from billing.staff.audit import Audit, Outcome
from billing.staff.checks import StaffActionError, clean_reason, require_permission
from billing.staff.credit import carry_out_credit_back
from billing.staff.refunds import carry_out_topup_refund

# How an approved request of an action billing cannot carry out itself is carried out: a refund
# of usage is usage's (usage sits above billing), so usage registers it (usage/apps.py).
_CARRIERS: dict[str, Callable[..., Outcome]] = {}


def register_carrier(action: str, carry_out: Callable[..., Outcome]) -> None:
    """Have `carry_out(approval=, now=)` carry out approved requests of `action`."""
    _CARRIERS[action] = carry_out


def decide_approval(
    *, approval: RefundApproval, approve: bool, actor: User, reason: str, now: datetime
) -> Outcome:
    """A second staff member approves (and so carries out) or rejects a large refund."""
    require_permission(actor, "billing.approve_refund")
    reason = clean_reason(reason)
    if approval.requested_by_id == actor.pk:
        raise PermissionDenied("A refund needs the approval of another staff member.")
    with transaction.atomic():
        updated = RefundApproval.objects.filter(
            pk=approval.pk, status=ApprovalStatus.PENDING
        ).update(
            status=ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
            decided_by=actor,
            decided_at=now,
        )
        if not updated:
            return Outcome("This request was already decided.")
        audit = Audit(
            action=StaffAction.APPROVE_REFUND if approve else StaffAction.REJECT_REFUND,
            actor=actor,
            reason=reason,
            key=f"decide:{approval.key}",
            now=now,
        )
        record = audit.write(
            account=approval.account,
            before={"status": "pending"},
            after={"status": "approved" if approve else "rejected"},
            target=approval,
        )
        if not approve:
            return Outcome("Rejected.", record)
        requester = approval.requested_by
        if carry_out := _CARRIERS.get(approval.action):
            # In the decision's transaction, as the credit-back below: refused, it stays pending.
            return carry_out(approval=approval, now=now)
        if approval.action == StaffAction.CREDIT_BACK:
            # Carried out in the decision's transaction: if the credit-back is refused, the
            # request stays pending instead of reading "approved and carried out" with nothing
            # done and no way to decide it again.
            return carry_out_credit_back(
                account=approval.account,
                amount_micros=approval.amount_micros,
                reason=approval.reason,
                actor=requester,
                key=approval.key,
                now=now,
                note=approval.note,
            )
        # A money refund asks Stripe, which must not happen in a transaction that may still
        # roll back; so check now, under the locks, that it can still be made (the top-up may
        # have been spent or refunded since the request), and leave it pending if not.
        lock_account(approval.account_id)
        # of=("self",): PostgreSQL cannot lock the nullable side of the join to the grant.
        topup = (
            TopUp.objects.select_for_update(of=("self",))
            .select_related("grant")
            .get(pk=approval.topup_id)
        )
        if approval.amount_micros > billing.payments.refunds.refundable_micros(topup):
            raise StaffActionError(
                f"At most {format_usd(billing.payments.refunds.refundable_micros(topup))} of this "
                "top-up can still be refunded; reject the request and ask for a new one."
            )
    return carry_out_topup_refund(
        topup=approval.topup,
        amount_micros=approval.amount_micros,
        reason=approval.reason,
        actor=requester,
        key=approval.key,
        now=now,
        note=approval.note,
    )
