"""Staff refund a call or an event from admin, whole or in part (issue 16; SPEC P4).

The credit goes through the platform refund's own path (`calls.credit_call`, and
`events.credit_event` for an event), so the item reads "Refunded" in the customer's usage log and
its price explanation shows the refund. The checks, the one-time form key, the audit record and
the two-person rule above the threshold are billing.staff's, as for every staff money action.
"""

from collections.abc import Callable
from dataclasses import dataclass
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
from billing.staff.customer_emails import email_customer
from usage.ingest.calls import credit_call
from usage.ingest.events import credit_event
from usage.models import Call, UsageEvent

UsageItem = Call | UsageEvent


@dataclass(frozen=True)
class _ItemKind:
    """What differs between refunding a call and refunding an event."""

    model: type[UsageItem]
    action: str
    noun: str  # "call" or "event", in messages and idempotency keys
    credit: Callable

    def public_id(self, item: UsageItem) -> str:
        return item.call_id if isinstance(item, Call) else item.event_id


_KINDS = {
    Call: _ItemKind(model=Call, action=StaffAction.REFUND_CALL, noun="call", credit=credit_call),
    UsageEvent: _ItemKind(
        model=UsageEvent, action=StaffAction.REFUND_EVENT, noun="event", credit=credit_event
    ),
}


def refundable_micros(item: UsageItem) -> int:
    """What of a call or event can still be refunded: what it was charged, less earlier refunds.
    A call is refundable once final; an event is final when it is stored."""
    if isinstance(item, Call) and not item.is_final:
        return 0
    return max(item.charged_micros - item.refunded_micros, 0)


def refund_usage_by_staff(
    *,
    item: UsageItem,
    amount_micros: int,
    reason: str,
    note: str,
    actor: User,
    key: str,
    now: datetime,
) -> Outcome:
    """Refund (part of) a call or event as credit; above the threshold it waits for a second
    approval.

    `reason` is the customer's (it is the ledger entry's reason, on statements and the CSV);
    `note` is staff's, kept in the audit record and never shown to the customer.
    """
    require_permission(actor, "billing.credit_back")
    require_within_support_limit(actor, positive(amount_micros))
    reason = clean_reason(reason)
    kind = _KINDS[type(item)]
    audit = _audit(kind, actor=actor, reason=reason, note=note, key=key, now=now)
    if repeat := audit.repeated():
        return repeat
    _check_refundable(kind, item, amount_micros)
    if needs_approval(amount_micros):
        return request_approval(
            audit=audit, account=item.account, amount_micros=amount_micros, target_id=str(item.pk)
        )
    return carry_out_usage_refund(
        item=item,
        amount_micros=amount_micros,
        reason=reason,
        note=note,
        actor=actor,
        key=key,
        now=now,
    )


def carry_out_usage_refund(
    *,
    item: UsageItem,
    amount_micros: int,
    reason: str,
    note: str,
    actor: User,
    key: str,
    now: datetime,
) -> Outcome:
    """Credit the item back: `refund_usage_by_staff` below the threshold, or its approval."""
    kind = _KINDS[type(item)]
    audit = _audit(kind, actor=actor, reason=reason, note=note, key=key, now=now)
    with transaction.atomic():
        locked = lock_account(item.account_id)
        # Asked again under the lock: a double click's twin may have committed meanwhile.
        if repeat := audit.repeated():
            return repeat
        # Re-read under the lock: another refund of this item may have committed since.
        item = kind.model.objects.get(pk=item.pk)
        _check_refundable(kind, item, amount_micros)
        refunded = f"{kind.noun}_refunded_micros"
        before = {**balance_state(locked.account), refunded: item.refunded_micros}
        entry = kind.credit(
            locked=locked,
            **{kind.noun: item},
            amount_micros=amount_micros,
            reason=reason,
            idempotency_key=f"{kind.noun}-refund:{item.pk}:{key}"[:120],
            now=now,
            actor=actor,
        )
        record = audit.write(
            account=locked.account,
            before=before,
            after={
                **balance_state(locked.account),
                refunded: item.refunded_micros + amount_micros,
                "amount_micros": amount_micros,
            },
            target=entry,
        )
        email_customer(
            audit=audit,
            account=locked.account,
            amount_micros=amount_micros,
            item=kind.public_id(item),
        )
    return Outcome(
        f"Refunded {format_usd_exact(amount_micros)} of {kind.noun} {kind.public_id(item)}.",
        record,
    )


def carry_out_approved_call_refund(*, approval: RefundApproval, now: datetime) -> Outcome:
    """Carry out a call refund a second staff member approved (registered in usage/apps.py)."""
    return _carry_out_approved(Call, approval=approval, now=now)


def carry_out_approved_event_refund(*, approval: RefundApproval, now: datetime) -> Outcome:
    """Carry out an event refund a second staff member approved (registered in usage/apps.py)."""
    return _carry_out_approved(UsageEvent, approval=approval, now=now)


def _carry_out_approved(model: type[UsageItem], *, approval: RefundApproval, now) -> Outcome:
    return carry_out_usage_refund(
        item=model.objects.get(pk=int(approval.target_id)),
        amount_micros=approval.amount_micros,
        reason=approval.reason,
        note=approval.note,
        actor=approval.requested_by,
        key=approval.key,
        now=now,
    )


def _audit(
    kind: _ItemKind, *, actor: User, reason: str, note: str, key: str, now: datetime
) -> Audit:
    return Audit(
        action=kind.action,
        actor=actor,
        reason=reason,
        key=key,
        now=now,
        note=(note or "").strip(),
    )


def _check_refundable(kind: _ItemKind, item: UsageItem, amount_micros: int) -> None:
    if isinstance(item, Call) and not item.is_final:
        raise StaffActionError("Only a call in a final state can be refunded.")
    left = refundable_micros(item)
    if amount_micros > left:
        raise StaffActionError(
            f"At most {format_usd_exact(left)} of this {kind.noun} is left to refund."
            if left
            else f"Nothing of this {kind.noun} is left to refund."
        )
