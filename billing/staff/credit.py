"""Credit on an account's balance from staff: credit-back of usage, grants and adjustments.

No money moves: each posts one ledger entry through billing.payments.refunds or billing.ledger. A
credit-back above the approval threshold waits for a second staff member.
"""

from datetime import datetime

from django.db import transaction

from accounts.models import Account, ApiKey, User
from billing.ledger.errors import DuplicatePosting, InsufficientCredit
from billing.ledger.locks import lock_account
from billing.ledger.posting import post_entry
from billing.models import EntryKind, StaffAction
from billing.money import format_usd
from billing.payments import refunds
from billing.staff.approval_requests import needs_approval, request_approval
from billing.staff.audit import ALREADY_DONE, Audit, Outcome, balance_state
from billing.staff.checks import (
    StaffActionError,
    clean_reason,
    positive,
    require_permission,
    require_within_support_limit,
)
from billing.staff.customer_emails import email_customer


def credit_back(
    *,
    account: Account,
    amount_micros: int,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    note: str = "",
) -> Outcome:
    """Refund usage as credit on the balance (no money moves)."""
    require_permission(actor, "billing.credit_back")
    require_within_support_limit(actor, positive(amount_micros))
    reason = clean_reason(reason)
    audit = Audit(
        action=StaffAction.CREDIT_BACK, actor=actor, reason=reason, key=key, now=now, note=note
    )
    if repeat := audit.repeated():
        return repeat
    if needs_approval(amount_micros):
        return request_approval(audit=audit, account=account, amount_micros=amount_micros)
    return carry_out_credit_back(
        account=account,
        amount_micros=amount_micros,
        reason=reason,
        actor=actor,
        key=key,
        now=now,
        note=note,
    )


def carry_out_credit_back(
    *,
    account: Account,
    amount_micros: int,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    note: str = "",
) -> Outcome:
    """Post the credit-back: `credit_back` below the threshold, or its approval above it."""
    audit = Audit(
        action=StaffAction.CREDIT_BACK, actor=actor, reason=reason, key=key, now=now, note=note
    )
    with transaction.atomic():
        locked = lock_account(account.pk)
        # Asked again under the lock: a double click's twin may have committed since the
        # caller looked, and then the ledger entry is found but the audit insert would fail.
        if repeat := audit.repeated():
            return repeat
        before = balance_state(locked.account)
        entry = refunds.credit_back(
            locked=locked,
            amount_micros=amount_micros,
            reason=reason,
            idempotency_key=f"staff:{key}"[:120],
            now=now,
            actor=actor,
            description="Credit-back by staff",
        )
        record = audit.write(
            account=account,
            before=before,
            after={**balance_state(locked.account), "amount_micros": amount_micros},
            target=entry,
        )
        email_customer(audit=audit, account=locked.account, amount_micros=amount_micros)
    return Outcome(f"Credited {format_usd(amount_micros)} back.", record)


def grant_credit(
    *,
    account: Account,
    amount_micros: int,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    expires_at: datetime | None = None,
    note: str = "",
) -> Outcome:
    """Grant promotional credit, optionally expiring."""
    require_permission(actor, "billing.grant_credit")
    require_within_support_limit(actor, positive(amount_micros))
    reason = clean_reason(reason)
    if expires_at is not None and expires_at <= now:
        raise StaffActionError("The expiry must be in the future.")
    return _post(
        account=account,
        audit=Audit(
            action=StaffAction.GRANT_CREDIT,
            actor=actor,
            reason=reason,
            key=key,
            now=now,
            note=note,
        ),
        amount_micros=amount_micros,
        kind=EntryKind.PROMOTIONAL,
        description="Credit granted by staff",
        grant_expires_at=expires_at,
    )


def grant_credit_by_key(
    *,
    account: Account,
    amount_micros: int,
    reason: str,
    api_key: ApiKey,
    key: str,
    now: datetime,
    expires_at: datetime | None = None,
    priority: int = 0,
) -> Outcome:
    """Grant promotional credit through the API with the operator's platform key (issue 15).

    The same grant and entry as staff's, audited as done by the key. No Support limit: the
    platform key is the operator's own, which may already report any usage of any account.
    """
    if amount_micros <= 0:
        raise StaffActionError("The amount must be positive.")
    reason = clean_reason(reason)
    if expires_at is not None and expires_at <= now:
        raise StaffActionError("The expiry must be in the future.")
    return _post(
        account=account,
        audit=Audit(
            action=StaffAction.GRANT_CREDIT,
            actor=None,
            actor_key=api_key,
            reason=reason,
            key=key,
            now=now,
        ),
        amount_micros=amount_micros,
        kind=EntryKind.PROMOTIONAL,
        description="Credit granted by the platform",
        grant_expires_at=expires_at,
        grant_priority=priority,
    )


def adjust_balance(
    *,
    account: Account,
    amount_micros: int,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    note: str = "",
) -> Outcome:
    """Correct a balance up or down with an adjustment entry."""
    require_permission(actor, "billing.adjust_balance")
    if amount_micros == 0:
        raise StaffActionError("An adjustment must change the balance.")
    require_within_support_limit(actor, abs(amount_micros))
    reason = clean_reason(reason)
    return _post(
        account=account,
        audit=Audit(
            action=StaffAction.ADJUST_BALANCE,
            actor=actor,
            reason=reason,
            key=key,
            now=now,
            note=note,
        ),
        amount_micros=amount_micros,
        kind=EntryKind.ADJUSTMENT,
        description="Adjustment by staff",
    )


def _post(
    *, account: Account, audit: Audit, amount_micros: int, kind: str, description: str, **extra
) -> Outcome:
    if repeat := audit.repeated():
        return repeat
    try:
        with transaction.atomic():
            locked = lock_account(account.pk)
            before = balance_state(locked.account)
            entry = post_entry(
                locked=locked,
                amount_micros=amount_micros,
                kind=kind,
                now=audit.now,
                actor=audit.actor,
                reason=audit.reason,
                description=description,
                idempotency_key=f"staff:{audit.key}"[:120],
                **extra,
            )
            record = audit.write(
                account=account,
                before=before,
                after={**balance_state(locked.account), "amount_micros": amount_micros},
                target=entry,
            )
            email_customer(audit=audit, account=locked.account, amount_micros=amount_micros)
    except InsufficientCredit:
        raise StaffActionError("The prepaid balance cannot go below zero.") from None
    except DuplicatePosting:
        # The ledger's own key caught a twin that committed after we looked: its record won.
        return Outcome(ALREADY_DONE, audit.done())
    return Outcome(f"Posted {format_usd(amount_micros)}.", record)
