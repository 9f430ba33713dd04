"""How long a prepaid balance lasts at the recent rate of spending (SPEC N3, D1).

The rate is the net cost (cost less refunds) of the daily usage rollups over the last 14 days,
today included, per day; an account younger than that is averaged over the days it has existed.
Credit that expires (an included allowance that resets at period end, promotional credit) counts
only for what the account would spend of it before it expires. A selector: plain numbers, no writes.
"""

from datetime import datetime, timedelta

from accounts.models import Account
from billing.ledger.grants import SPENDING_ORDER
from billing.models import CreditGrant, Notification
from usage.reads.rollups import spend_between

SECONDS_PER_DAY = 86_400

WINDOW_DAYS = 14


def average_daily_spend_micros(*, account: Account, now: datetime) -> int:
    """Return the account's average net usage cost per day over the last 14 days."""
    today = now.date()
    first_day = max(today - timedelta(days=WINDOW_DAYS - 1), account.created_at.date())
    days = max((today - first_day).days + 1, 1)
    spent = spend_between(
        account=account, first_day=first_day, end_day=today + timedelta(days=1)
    ).net_micros
    return max(spent, 0) // days


def credit_runway_days(*, account: Account, now: datetime) -> int | None:
    """Return the whole days the balance lasts at the recent daily spend.

    None when there is nothing to estimate: a postpaid account, no credit, or no recent usage.
    """
    if not account.is_prepaid or account.balance_micros <= 0:
        return None
    daily = average_daily_spend_micros(account=account, now=now)
    if daily <= 0:
        return None
    grants = CreditGrant.objects.filter(account=account, remaining_micros__gt=0).order_by(
        *SPENDING_ORDER
    )
    return int(
        runway_of_grants(
            [(g.remaining_micros, g.expires_at) for g in grants], daily_micros=daily, now=now
        )
    )


def runway_of_grants(
    grants: list[tuple[int, datetime | None]], *, daily_micros: int, now: datetime
) -> float:
    """Return the days credit lasts, spent in the ledger's order at `daily_micros` a day.

    `grants` are (remaining, expires_at) in spending order (billing.ledger.grants), earliest
    expiry first: at any moment the spending reaches a grant, the grants before it are used up
    or expired, so what a grant adds is what is spent of it before it expires.
    """
    days = 0.0
    for remaining_micros, expires_at in grants:
        lasts = remaining_micros / daily_micros
        if expires_at is not None:
            until_expiry = (expires_at - now).total_seconds() / SECONDS_PER_DAY
            lasts = min(lasts, max(until_expiry - days, 0.0))
        days += lasts
    return days


def runway_sentence(days: int | None) -> str:
    """Return the estimate as emails and pages say it, or "" when there is none."""
    if days is None:
        return ""
    if days < 1:
        return "At your recent usage, your credit lasts less than a day."
    if days == 1:
        return "At your recent usage, your credit lasts about 1 day."
    return f"At your recent usage, your credit lasts about {days:,} days."


# Emails that say how long the credit lasts at the recent rate of spending.
RUNWAY_KINDS = frozenset({"low_balance", "topup_receipt", "auto_topup_succeeded"})


def runway_email_context(notification: Notification) -> dict:
    """The run-out estimate of an email, as of the event, not of the (possibly delayed) send."""
    days = credit_runway_days(account=notification.account, now=notification.created_at)
    return {"runway": runway_sentence(days)}
