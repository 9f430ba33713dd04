"""Requests for a higher rate-limit tier on an API key (SPEC D4, G2).

A customer asks from the API keys page; staff grant or refuse in admin. Granting changes the
key's tier in the same transaction, and the rate limiter reads the tier on every request
(`usage.api.ratelimit.limit_for`), so the new limit applies to the key's next request.
"""

from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Account, ApiKey, KeyKind, RateTier, TierRequest, TierRequestStatus, User

TIER_ORDER = [RateTier.FREE, RateTier.ELEVATED, RateTier.PAID]


class TierRequestError(ValueError):
    """A refused request or decision; nothing was written."""


def higher_tiers(tier: str) -> list[str]:
    """Return the tiers above `tier`, lowest first."""
    if tier not in TIER_ORDER:
        return []
    return TIER_ORDER[TIER_ORDER.index(tier) + 1 :]


def request_higher_tier(
    *,
    account: Account,
    key_id: str,
    tier: str,
    reason: str,
    requested_by: User | None,
    now: datetime,
) -> TierRequest:
    """Record a pending request for `tier` on one of the account's active keys."""
    api_key = ApiKey.objects.filter(
        account=account, key_id=key_id, kind=KeyKind.CUSTOMER, revoked_at__isnull=True
    ).first()
    if api_key is None:
        raise TierRequestError("No such active key.")
    if tier not in higher_tiers(api_key.tier):
        raise TierRequestError("Choose a tier above the key's current one.")
    try:
        with transaction.atomic():
            return TierRequest.objects.create(
                account=account,
                api_key=api_key,
                from_tier=api_key.tier,
                tier=tier,
                reason=(reason or "").strip()[:2000],
                requested_by=requested_by,
                created_at=now,
            )
    except IntegrityError:
        raise TierRequestError("This key already has a request waiting for staff.") from None


def _decide(*, request_id: int, status: str, staff_user: User, now: datetime, note: str):
    with transaction.atomic():
        request = (
            TierRequest.objects.select_for_update().select_related("api_key").get(pk=request_id)
        )
        if request.status != TierRequestStatus.PENDING:
            raise TierRequestError(f"Request {request_id} was already {request.status}.")
        request.status = status
        request.decided_at = now
        request.decided_by = staff_user
        request.note = (note or "").strip()
        request.save(update_fields=["status", "decided_at", "decided_by", "note"])
        if status == TierRequestStatus.GRANTED:
            ApiKey.objects.filter(pk=request.api_key_id).update(tier=request.tier)
            request.api_key.tier = request.tier
    return request


def grant_tier_request(
    *, request_id: int, staff_user: User, now: datetime, note: str = ""
) -> TierRequest:
    """Grant a pending request: the key moves to the requested tier at once."""
    return _decide(
        request_id=request_id,
        status=TierRequestStatus.GRANTED,
        staff_user=staff_user,
        now=now,
        note=note,
    )


def refuse_tier_request(
    *, request_id: int, staff_user: User, now: datetime, note: str = ""
) -> TierRequest:
    return _decide(
        request_id=request_id,
        status=TierRequestStatus.REFUSED,
        staff_user=staff_user,
        now=now,
        note=note,
    )
