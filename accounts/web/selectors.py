"""What the account pages show (SPEC D4): API keys with their limits, subaccounts and usage."""

from datetime import datetime

from django.db.models import Q, Sum

from accounts.models import Account, ApiKey, KeyKind, RateTier
from billing.models import Subscription


def subaccount_rows(*, parent: Account) -> list[dict]:
    """Return each child of `parent` with its plan, balance and current period's usage.

    Two queries whatever the number of children: their subscriptions, and one aggregate over
    the daily rollups that picks each child's own period.
    """
    from usage.models import UsageRollup  # usage depends on accounts, not the other way round

    subscriptions = list(
        Subscription.objects.filter(account__parent=parent)
        .select_related("account", "plan")
        .order_by("account__name")
    )
    if not subscriptions:
        return []
    periods = Q()
    for subscription in subscriptions:
        periods |= Q(
            account_id=subscription.account_id,
            day__gte=subscription.current_period_start.date(),
            day__lt=subscription.current_period_end.date(),
        )
    totals = {
        row["account_id"]: row
        for row in UsageRollup.objects.filter(periods, is_line=False)
        .values("account_id")
        .annotate(
            seconds=Sum("quantity", filter=Q(component="call")),
            cost=Sum("cost_micros"),
            refunded=Sum("refunded_micros"),
        )
    }
    rows = []
    for subscription in subscriptions:
        account = subscription.account
        total = totals.get(account.pk, {})
        rows.append(
            {
                "account": account,
                "plan": subscription.plan,
                "period_start": subscription.current_period_start,
                "period_end": subscription.current_period_end,
                "minutes": (total.get("seconds") or 0) // 60,
                "cost_micros": (total.get("cost") or 0) - (total.get("refunded") or 0),
            }
        )
    return rows


def keys_overview(*, account: Account, now: datetime) -> list[dict]:
    """Return the account's customer keys for its API keys page, active first.

    Each with its tier's limit (requests per minute), its 429s of the last 7 days and the state
    of its tier requests; a fixed number of queries whatever the number of keys.
    """
    from accounts.models import TierRequest, TierRequestStatus
    from accounts.tier_requests import higher_tiers
    from usage.api.ratelimit import limit_for, recent_429_counts

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
