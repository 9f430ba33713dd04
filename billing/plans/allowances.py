"""A period's included allowance (SPEC U9): included minutes, their rollover, included credit."""

from dataclasses import dataclass
from datetime import datetime

from accounts.models import Account
from billing.ledger.locks import LockedAccount
from billing.ledger.posting import Posting, apply_postings
from billing.models import (
    Allowance,
    CreditGrant,
    EntryKind,
    Plan,
    Subscription,
)
from billing.periods import period_containing


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
        included_seconds=plan.included_minutes * 60,
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
