"""Subscribing accounts to plans (SPEC S2), and what the plan decides for their API keys."""

from datetime import datetime

from accounts.keys import IssuedKey, issue_api_key
from accounts.models import Account, KeyKind, RateTier, User
from billing.models import Plan, Subscription
from billing.periods import period_containing


def subscribe(
    *,
    account: Account,
    plan: Plan,
    now: datetime,
    anchor_day: int | None = None,
    allowance_locked: bool = False,
) -> Subscription:
    """Subscribe a new account; its first period starts on the anchor day (default: today).

    `allowance_locked`: its included minutes and credit wait for `unlock_allowance`
    (billing.plans.allowances), as for a subaccount a customer opens.

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
        allowance_locked=allowance_locked,
        created_at=now,
    )


def issue_customer_key(
    *, account: Account, name: str, now: datetime, created_by: User | None = None
) -> IssuedKey:
    """Create a key for the account at its plan's default rate-limit tier (the dashboard's)."""
    tier = (
        Subscription.objects.filter(account=account)
        .values_list("plan__default_rate_tier", flat=True)
        .first()
    )
    return issue_api_key(
        kind=KeyKind.CUSTOMER,
        name=name,
        now=now,
        account=account,
        tier=tier or RateTier.FREE,
        created_by=created_by,
    )
