"""Staff refund a call from admin, whole or in part (issue 16; SPEC P4).

The credit goes through the platform refund's own path (`calls.credit_call`), so the call reads
"Refunded" in the customer's usage log and its price explanation shows the refund. The checks,
the one-time form key, the audit record and the two-person rule above the threshold are
billing.staff's, as for every staff money action.
"""

from datetime import datetime

from django.db import transaction

from accounts.models import User
from billing.ledger.locks import lock_account
from billing.models import RefundApproval, StaffAction
from billing.money import format_usd_exact
from billing.staff.approval_requests import needs_approval, request_approval
from billing.staff.audit import Audit, Outcome, balance_state
from billing.staff.checks import (
    StaffActionError,
    clean_reason,
    positive,
    require_permission,
    require_within_support_limit,
)
from usage.ingest.calls import credit_call
from usage.models import Call


def refundable_micros(call: Call) -> int:
    """What of a call can still be refunded: what it was charged, less earlier refunds."""
    if not call.is_final:
        return 0
    return max(call.charged_micros - call.refunded_micros, 0)


def refund_call_by_staff(
    *,
    call: Call,
    amount_micros: int,
    reason: str,
    note: str,
    actor: User,
    key: str,
    now: datetime,
) -> Outcome:
    """Refund (part of) a call as credit; above the threshold it waits for a second approval.

    `reason` is the customer's (it is the ledger entry's reason, on statements and the CSV);
    `note` is staff's, kept in the audit record and never shown to the customer.
    """
    require_permission(actor, "billing.credit_back")
    require_within_support_limit(actor, positive(amount_micros))
    reason = clean_reason(reason)
    audit = _audit(actor=actor, reason=reason, note=note, key=key, now=now)
    if repeat := audit.repeated():
        return repeat
    _check_refundable(call, amount_micros)
    if needs_approval(amount_micros):
        return request_approval(
            audit=audit, account=call.account, amount_micros=amount_micros, target_id=str(call.pk)
        )
    return carry_out_call_refund(
        call=call,
        amount_micros=amount_micros,
        reason=reason,
        note=note,
        actor=actor,
        key=key,
        now=now,
    )


def carry_out_call_refund(
    *,
    call: Call,
    amount_micros: int,
    reason: str,
    note: str,
    actor: User,
    key: str,
    now: datetime,
) -> Outcome:
    """Credit the call back: `refund_call_by_staff` below the threshold, or its approval."""
    audit = _audit(actor=actor, reason=reason, note=note, key=key, now=now)
    with transaction.atomic():
        locked = lock_account(call.account_id)
        # Asked again under the lock: a double click's twin may have committed meanwhile.
        if repeat := audit.repeated():
            return repeat
        # Re-read under the lock: another refund of this call may have committed since.
        call = Call.objects.get(pk=call.pk)
        _check_refundable(call, amount_micros)
        before = {**balance_state(locked.account), "call_refunded_micros": call.refunded_micros}
        entry = credit_call(
            locked=locked,
            call=call,
            amount_micros=amount_micros,
            reason=reason,
            idempotency_key=f"call-refund:{call.pk}:{key}"[:120],
            now=now,
            actor=actor,
        )
        record = audit.write(
            account=locked.account,
            before=before,
            after={
                **balance_state(locked.account),
                "call_refunded_micros": call.refunded_micros + amount_micros,
                "amount_micros": amount_micros,
            },
            target=entry,
        )
    return Outcome(f"Refunded {format_usd_exact(amount_micros)} of call {call.call_id}.", record)


def carry_out_approved_call_refund(*, approval: RefundApproval, now: datetime) -> Outcome:
    """Carry out a call refund a second staff member approved (registered in usage/apps.py)."""
    return carry_out_call_refund(
        call=Call.objects.get(pk=int(approval.target_id)),
        amount_micros=approval.amount_micros,
        reason=approval.reason,
        note=approval.note,
        actor=approval.requested_by,
        key=approval.key,
        now=now,
    )


def _audit(*, actor: User, reason: str, note: str, key: str, now: datetime) -> Audit:
    return Audit(
        action=StaffAction.REFUND_CALL,
        actor=actor,
        reason=reason,
        key=key,
        now=now,
        note=(note or "").strip(),
    )


def _check_refundable(call: Call, amount_micros: int) -> None:
    if not call.is_final:
        raise StaffActionError("Only a call in a final state can be refunded.")
    left = refundable_micros(call)
    if amount_micros > left:
        raise StaffActionError(
            f"At most {format_usd_exact(left)} of this call is left to refund."
            if left
            else "Nothing of this call is left to refund."
        )
