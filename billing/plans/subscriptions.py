"""Subscribing accounts to plans (SPEC S2)."""

from datetime import datetime

from accounts.models import Account
from billing.models import Plan, Subscription
from billing.periods import period_containing


def subscribe(
    *, account: Account, plan: Plan, now: datetime, anchor_day: int | None = None
) -> Subscription:
    """Subscribe a new account; its first period starts on the anchor day (default: today).

    Rollover follows the plan; a plan change sets it again for the new plan's first period
    (billing.staff.plans.change_plan, billing.invoicing.period_close).
    """
    anchor_day = anchor_day or now.day
    start, end = period_containing(anchor_day=anchor_day, moment=now)
    return Subscription.objects.create(
        account=account,
        plan=plan,
        anchor_day=anchor_day,
        current_period_start=start,
        current_period_end=end,
        rollover_enabled=plan.rollover_available,
        created_at=now,
    )
