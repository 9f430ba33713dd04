"""A period's included allowance (SPEC U9): included minutes, their rollover, included credit.

Also the one home of the allowance lock: the included minutes and credit of a subaccount a
customer opened wait until staff approve it or its plan fee is paid (`unlock_allowance`).
While locked, a period starts with none of either, so authorization and charging treat its
usage as paid usage and period close grants no included credit.
"""

import contextlib
from datetime import datetime

from django.db import transaction

from accounts.models import Account
from billing.ledger.errors import DuplicatePosting
from billing.ledger.locks import LockedAccount, lock_account
from billing.ledger.posting import Posting, apply_postings, post_entries
from billing.models import (
    Allowance,
    AllowanceUnlock,
    EntryKind,
    Plan,
    Subscription,
)
from billing.periods import period_containing


def period_included_seconds(*, plan: Plan, allowance_locked: bool) -> int:
    """Return the included seconds a period on `plan` starts with: none while locked."""
    return 0 if allowance_locked else plan.included_minutes * 60


def period_included_credit_micros(*, plan: Plan, allowance_locked: bool) -> int:
    """Return the included credit a period on `plan` is granted: none while locked."""
    return 0 if allowance_locked else plan.included_credit_micros


def unlock_allowance(*, account: Account, reason: AllowanceUnlock, now: datetime) -> bool:
    """Release an account's locked included allowance; return False if it was not locked.

    Idempotent: the lock is read and cleared under the account's row lock, so two calls (a
    double click, staff approval racing a fee payment) release it once. The current period
    gets what it was held back: its allowance rows made while locked take the plan's included
    minutes, and its included credit is granted (with the period's key, as period close would).
    Staff approval (billing.staff.plans.approve_allowance) and a paid plan fee both call this.
    """
    with transaction.atomic():
        locked = lock_account(account.pk)
        subscription = Subscription.objects.select_related("plan").get(account_id=account.pk)
        if not subscription.allowance_locked:
            return False
        Subscription.objects.filter(pk=subscription.pk).update(
            allowance_locked=False, allowance_unlocked_at=now, allowance_unlock_reason=reason
        )
        plan = subscription.plan
        if plan.included_minutes:
            # Rows made while locked hold no included seconds; a later period's row (usage
            # that came before period close) is released too.
            Allowance.objects.filter(
                account_id=account.pk,
                period_end__gt=now,
                included_seconds=0,
                rollover_seconds=0,
            ).update(included_seconds=plan.included_minutes * 60)
        start, end = subscription.current_period_start, subscription.current_period_end
        # A period that already ended (close has not run yet) gets nothing: nothing could
        # spend it, and period close grants the next period's, now unlocked.
        if plan.included_credit_micros and end > now:
            posting = included_credit_posting(account=account, plan=plan, start=start, end=end)
            # Granted already if the period's credit came before it was locked (a fee unpaid).
            with contextlib.suppress(DuplicatePosting):
                post_entries(locked=locked, postings=[posting], now=now)
    return True


def included_credit_posting(*, account: Account, plan: Plan, start: datetime, end: datetime):
    """The posting of a period's included credit, expiring at the period's end (credits-monthly).

    Unused included credit expires (written off by the ledger) when the period ends; it does
    not carry over. The key makes a second grant for the same period fail.
    """
    return Posting(
        amount_micros=plan.included_credit_micros,
        kind=EntryKind.ALLOWANCE,
        description=f"Included credit {start:%Y-%m-%d} to {end:%Y-%m-%d}",
        idempotency_key=f"allowance:{account.public_id}:{start:%Y%m%d}",
        grant_expires_at=end,
        # Included credit is spent before anything bought.
        grant_priority=100,
    )


def grant_included_credit(
    *, locked: LockedAccount, plan: Plan, start: datetime, end: datetime, now: datetime
) -> None:
    """Grant one locked account a period's included credit (a new account)."""
    posting = included_credit_posting(account=locked.account, plan=plan, start=start, end=end)
    apply_postings(locked=locked, postings=[posting], now=now)


def current_allowance(
    *, account: Account, subscription: Subscription, now: datetime
) -> Allowance | None:
    """Return the period's allowance row, creating it (with any rollover) on first use.

    Call with the account locked. Period close creates the rows eagerly; this covers usage that
    arrives first. A row that exists is the period's allowance whatever the plan is now: an
    immediate plan change leaves the period the minutes it began with (`keep_period_allowance`).
    """
    plan = subscription.plan
    start, end = period_containing(anchor_day=subscription.anchor_day, moment=now)
    allowance = Allowance.objects.filter(account=account, period_start=start).first()
    if allowance is not None or not plan.included_minutes:
        return allowance
    previous = None
    if subscription.rollover_enabled:  # else no rollover: not even a query
        latest = (
            Allowance.objects.filter(account=account, period_start__lt=start)
            .order_by("-period_start")
            .first()
        )
        if latest is not None and latest.period_end == start:
            previous = latest
    return Allowance.objects.create(
        account=account,
        period_start=start,
        period_end=end,
        included_seconds=period_included_seconds(
            plan=plan, allowance_locked=subscription.allowance_locked
        ),
        rollover_seconds=rollover_seconds(
            rollover_enabled=subscription.rollover_enabled,
            previous=previous,
            # Every period with included minutes has its row from its start (opening, period
            # close, an immediate plan change), so a period just before without one is one
            # that period close has not reached yet: what it left is not known here, and
            # nothing rolls over.
            unused_without_row_seconds=0,
        ),
    )


def rollover_seconds(
    *, rollover_enabled: bool, previous: Allowance | None, unused_without_row_seconds: int
) -> int:
    """Return the included seconds a period takes over from the period just before it (U9).

    With rollover on, what that period left unused: what its allowance row has left, never
    less than nothing; `unused_without_row_seconds` when it has no row (the caller knows why).
    With rollover off, nothing: unused minutes expire at the period's end.
    """
    if not rollover_enabled:
        return 0
    if previous is not None:
        return max(previous.remaining_seconds, 0)
    return unused_without_row_seconds


def keep_period_allowance(
    *, account: Account, subscription: Subscription, new_plan: Plan, now: datetime
) -> None:
    """Fix the allowance of the period containing `now` before an immediate change to
    `new_plan` (S2).

    Call with the account locked and the subscription still on the old plan. A period's
    included minutes are those of the plan it began on; the new plan's allowance and rollover
    setting start with the next period. Without a row made now, the new plan's first use would
    make one from its own minutes (a free 6,000 minutes at once), and a plan without included
    minutes would stop using what was left of the old plan's. A period that began without
    included minutes gets a row of none, which the new plan's usage then finds.
    """
    if current_allowance(account=account, subscription=subscription, now=now) is not None:
        return
    if not new_plan.included_minutes:
        return  # neither plan has included minutes: nothing to keep
    start, end = period_containing(anchor_day=subscription.anchor_day, moment=now)
    Allowance.objects.create(
        account=account, period_start=start, period_end=end, included_seconds=0
    )
