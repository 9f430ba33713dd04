"""What the account pages show (SPEC D4): API keys with their limits, subaccounts and usage."""

from datetime import datetime

from accounts.models import Account, ApiKey, KeyKind, RateTier, TierRequest, TierRequestStatus
from accounts.tier_requests import higher_tiers
from billing.models import Subscription
from billing.periods import period_last_day
from usage.api.ratelimit import limit_for, recent_429_counts
from usage.reads.rollups import period_spend_by_account


def subaccount_rows(*, parent: Account) -> list[dict]:
    """Return each child of `parent` with its plan, balance and current period's usage.

    Two queries whatever the number of children: their subscriptions, and one aggregate over
    the daily rollups that picks each child's own period.
    """
    subscriptions = list(
        Subscription.objects.filter(account__parent=parent)
        .select_related("account", "plan")
        .order_by("account__name")
    )
    if not subscriptions:
        return []
    spends = period_spend_by_account(
        periods={
            s.account_id: (s.current_period_start, s.current_period_end) for s in subscriptions
        }
    )
    rows = []
    for subscription in subscriptions:
        account = subscription.account
        spend = spends[account.pk]
        rows.append(
            {
                "account": account,
                "plan": subscription.plan,
                "period_start": subscription.current_period_start,
                "period_end": subscription.current_period_end,
                "period_last_day": period_last_day(subscription.current_period_end),
                "minutes": spend.minute_seconds // 60,
                "cost_micros": spend.net_micros,
            }
        )
    return rows


def keys_overview(*, account: Account, now: datetime) -> list[dict]:
    """Return the account's customer keys for its API keys page, active first.

    Each with its tier's limit (requests per minute), its 429s of the last 7 days and the state
    of its tier requests; a fixed number of queries whatever the number of keys.
    """
    keys = list(
        ApiKey.objects.filter(account=account, kind=KeyKind.CUSTOMER).order_by(
            "revoked_at", "-created_at"
        )
    )
    if not keys:
        return []
    limits = {tier: limit_for(ApiKey(account=account, tier=tier)) for tier in RateTier.values}
    refused = recent_429_counts([k.key_id for k in keys if k.revoked_at is None], now=now)
    latest_requests: dict[int, TierRequest] = {}
    for request in TierRequest.objects.filter(api_key__in=keys).order_by("created_at"):
        latest_requests[request.api_key_id] = request  # the latest one per key
    return [
        {
            "key": key,
            "limit": limits.get(key.tier),
            "refused_7d": refused.get(key.key_id, 0),
            "request": latest_requests.get(key.pk),
            "pending": getattr(latest_requests.get(key.pk), "status", "")
            == TierRequestStatus.PENDING,
            "higher_tiers": [(t, RateTier(t).label, limits[t]) for t in higher_tiers(key.tier)],
        }
        for key in keys
    ]
