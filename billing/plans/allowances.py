"""A period's included allowance (SPEC U9): included minutes, their rollover, included credit.

Also the one home of the allowance lock: the included minutes and credit of a subaccount a
customer opened wait until staff approve it or its plan fee is paid (`unlock_allowance`).
While locked, a period starts with none of either, so authorization and charging treat its
usage as paid usage and period close grants no included credit.
"""

import contextlib
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F

from accounts.models import Account
from billing.ledger.errors import DuplicatePosting
from billing.ledger.locks import LockedAccount, lock_account
from billing.ledger.posting import Posting, apply_postings, post_entries
from billing.models import (
    Allowance,
    AllowanceUnlock,
    CreditGrant,
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
            # Rows made while locked hold no included seconds (a fee-paying period may hold
            # minutes rolled over from a paid one); a later period's row (usage that came
            # before period close) is released too.
            Allowance.objects.filter(
                account_id=account.pk, period_end__gt=now, included_seconds=0
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


@dataclass(frozen=True)
class IncludedCredit:
    """A period's included credit as granted, and how much of it is spent (micro-dollars)."""

    amount_micros: int
    used_micros: int

    @property
    def remaining_micros(self) -> int:
        return self.amount_micros - self.used_micros


def included_credit(*, account: Account, period_end: datetime) -> IncludedCredit | None:
    """Return the included credit granted for the period ending at `period_end`, or None.

    It is the ledger's grant of kind ALLOWANCE that expires with the period
    (`included_credit_posting`); what it no longer holds was spent.
    """
    grant = CreditGrant.objects.filter(
        account=account, kind=EntryKind.ALLOWANCE, expires_at=period_end
    ).first()
    if grant is None:
        return None
    return IncludedCredit(
        amount_micros=grant.amount_micros,
        used_micros=grant.amount_micros - grant.remaining_micros,
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
    arrives first, and makes the row period close would have made (`new_period_allowance`).
    A row that exists is the period's allowance whatever the plan is now: an immediate plan
    change leaves the period the minutes it began with (`keep_period_allowance`).
    """
    start, _ = period_containing(anchor_day=subscription.anchor_day, moment=now)
    allowance = Allowance.objects.filter(account=account, period_start=start).first()
    if allowance is not None:
        return allowance
    return create_period_allowance(account=account, subscription=subscription, now=now)


def create_period_allowance(
    *, account: Account, subscription: Subscription, now: datetime
) -> Allowance | None:
    """Create the allowance row of the period containing `now`, which has none yet; return
    None if the plan that period begins on has no included minutes. Call with the account
    locked."""
    start, end = period_containing(anchor_day=subscription.anchor_day, moment=now)
    if start == subscription.current_period_end:
        # Usage of the next period before period close reached this account: the period
        # begins on the plan staff scheduled for it, as period close would begin it.
        plan, rollover = next_period_terms(
            plan=subscription.plan,
            pending_plan=subscription.pending_plan,
            rollover_enabled=subscription.rollover_enabled,
        )
        ending_plan = subscription.plan
    else:
        plan, rollover, ending_plan = subscription.plan, subscription.rollover_enabled, None
    if not plan.included_minutes:
        return None
    previous = None
    if rollover:  # else no rollover: not even a query
        previous = Allowance.objects.filter(account=account, period_end=start).first()
    allowance = new_period_allowance(
        account=account,
        start=start,
        end=end,
        plan=plan,
        rollover_enabled=rollover,
        previous=previous,
        ending_plan=ending_plan,
        allowance_locked=subscription.allowance_locked,
    )
    allowance.save()
    return allowance


def next_period_terms(
    *, plan: Plan, pending_plan: Plan | None, rollover_enabled: bool
) -> tuple[Plan, bool]:
    """Return the plan and the rollover setting the period after the current one begins on.

    A plan change staff scheduled takes effect there, and so does its rollover setting: what
    is left of the old plan's minutes carries over only if the new plan has rollover (S2).
    """
    if pending_plan is None:
        return plan, rollover_enabled
    return pending_plan, pending_plan.rollover_available


def new_period_allowance(
    *,
    account: Account,
    start: datetime,
    end: datetime,
    plan: Plan,
    rollover_enabled: bool,
    previous: Allowance | None,
    ending_plan: Plan | None,
    allowance_locked: bool,
) -> Allowance:
    """Return the (unsaved) allowance row of the period [start, end) on `plan` (U9).

    The one rule for a period's row, used by period close and by a period's first usage
    before the close, so that both make the same row whichever comes first. `ending_plan` is
    the plan the period just before began on, when the caller knows it (the subscription's
    current period is the one ending): a period with included minutes has its row from its
    start (opening, period close, an immediate plan change), so one without a row used none
    of them. When the caller does not know it, a missing row rolls over nothing. A locked
    allowance (a customer's subaccount not yet approved or paid for) starts with no minutes
    and rolls over none from a period that had none.
    """
    unused_without_row = (
        period_included_seconds(plan=ending_plan, allowance_locked=allowance_locked)
        if ending_plan is not None
        else 0
    )
    return Allowance(
        account=account,
        period_start=start,
        period_end=end,
        included_seconds=period_included_seconds(plan=plan, allowance_locked=allowance_locked),
        rollover_seconds=rollover_seconds(
            rollover_enabled=rollover_enabled,
            previous=previous,
            unused_without_row_seconds=unused_without_row,
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


# Late usage of a settled period (U9, U10) ---------------------------------------------------
#
# A period's allowance is settled once the next period's row exists: that row took over what
# was left (its `rollover_seconds`), or let it expire. A late item of the settled period still
# uses what its own period had left, first the part that expired (nobody else counts it), then
# the part that rolled over, which it takes back from the next period: that period's
# `rollover_seconds` shrinks by as much. If the next period passed some of it on in turn, the
# same rule repeats down the chain. So each included second is used once, in one period, and a
# late item never gets minutes that a later period already used.


def allowances_from(*, account: Account, period_start: datetime) -> list[Allowance]:
    """Return the account's allowance rows of the period starting at `period_start` and of
    every later period, in order. Call with the account locked: the rows are read to be
    changed."""
    return list(
        Allowance.objects.filter(account=account, period_start__gte=period_start).order_by(
            "period_start"
        )
    )


def rollover_chain(rows: list[Allowance], *, period_start: datetime) -> list[Allowance]:
    """Return, from `rows` (`allowances_from`), the row of the period starting at
    `period_start`, then each later row that took over what the row before it left (empty if
    that period has no row)."""
    chain: list[Allowance] = []
    for row in rows:
        if not chain:
            if row.period_start != period_start:
                return []
        elif row.period_start != chain[-1].period_end or row.rollover_seconds <= 0:
            break
        chain.append(row)
    return chain


def _expired_seconds(chain: list[Allowance], index: int) -> int:
    """What the row at `index` left that no later row took over."""
    row = chain[index]
    passed_on = chain[index + 1].rollover_seconds if index + 1 < len(chain) else 0
    return max(row.remaining_seconds - passed_on, 0)


def chain_available_seconds(chain: list[Allowance], *, pending_last_seconds: int = 0) -> int:
    """Return the included seconds an item of `chain[0]`'s period may still use.

    `pending_last_seconds`: seconds of the last row already promised in memory (a charge
    session writes its current period's use at its end).
    """
    if not chain:
        return 0
    available = max(chain[-1].remaining_seconds - pending_last_seconds, 0)
    for index in range(len(chain) - 2, -1, -1):
        taken_over = chain[index + 1].rollover_seconds
        available = _expired_seconds(chain, index) + min(taken_over, available)
    return available


def use_chain(chain: list[Allowance], *, seconds: int) -> None:
    """Use `seconds` of `chain[0]`'s allowance, taking back rolled-over seconds as needed.

    Call with the account locked, with at most `chain_available_seconds`. Writes the rows and
    updates the instances in `chain`; the database's check (used within included + rollover)
    refuses anything more.
    """
    if seconds <= 0:
        return
    first = chain[0]
    Allowance.objects.filter(pk=first.pk).update(used_seconds=F("used_seconds") + seconds)
    # What each row let expire, read before any rollover below changes.
    expired = [_expired_seconds(chain, index) for index in range(len(chain))]
    wanted = seconds
    for index in range(len(chain) - 1):
        wanted -= min(wanted, expired[index])
        if not wanted:
            break
        following = chain[index + 1]
        Allowance.objects.filter(pk=following.pk).update(
            rollover_seconds=F("rollover_seconds") - wanted
        )
        following.rollover_seconds -= wanted
    first.used_seconds += seconds


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
