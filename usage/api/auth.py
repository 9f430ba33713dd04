"""API key authentication of the JSON API: `Authorization: Bearer KEY_ID:KEY_SECRET` (SPEC A4, G2).

Customer keys act for their own account and are rate limited; platform keys report usage for
any account. Each operation accepts one kind: the other kind gets 403, a missing, malformed,
unknown or revoked key 401.
"""

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from accounts.keys import InvalidApiKey, check_secret, split_token
from accounts.models import ApiKey, KeyKind
from usage.api import ratelimit
from usage.api.errors import ApiError
from usage.reads.keys import LoadedKey, load_key

# last_used_at is for people ("used 3 minutes ago"), so a write per minute per key is plenty;
# a write per request would put a row lock on the hottest path of the API.
LAST_USED_RESOLUTION = timedelta(minutes=1)
RATE_LIMIT_ATTR = "meterline_rate_limit"


def touch_last_used(api_key: ApiKey, now) -> None:
    """Record that a key was used, at most once a minute per key across all processes."""
    if api_key.last_used_at is not None and api_key.last_used_at > now - LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    api_key.last_used_at = now


def key_from_request(request: HttpRequest) -> LoadedKey:
    """Return the active key the request presents, or raise a 401 ApiError."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer KEY_ID:KEY_SECRET'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Malformed Authorization header; expected 'Bearer KEY_ID:KEY_SECRET'.")
    try:
        return key_for_token(token)
    except InvalidApiKey as exc:
        raise ApiError(401, str(exc)) from None


def key_for_token(token: str) -> LoadedKey:
    """Return the active key of a `KEY_ID:KEY_SECRET` token, or raise InvalidApiKey."""
    key_id, secret = split_token(token)
    # One query for the key, its account, subscription and plan (usage.reads.keys).
    loaded = load_key(key_id)
    check_secret(loaded.api_key if loaded is not None else None, secret)
    return loaded


def admit_key(request: HttpRequest) -> LoadedKey:
    """Return the request's key after recording its use and, for a customer key, counting the
    request against the key's rate limit; the limit's status goes on the request (RATE_LIMIT_ATTR).

    Raise a 401 ApiError for a missing or invalid key, a 429 one over the limit. Nothing is
    counted before the secret checks out, so no caller spends another key's limit.
    """
    loaded = key_from_request(request)
    api_key = loaded.api_key
    now = timezone.now()
    touch_last_used(api_key, now)
    if api_key.kind == KeyKind.CUSTOMER:
        # Every request of a customer key counts, whatever its fate, and every answer to
        # one carries the limit headers (api.py adds them from this attribute).
        limit = None
        if loaded.subscription is not None:
            limit = ratelimit.limit_from(
                plan_limits=loaded.subscription.plan.rate_limits, tier=api_key.tier
            )
        status = ratelimit.hit(api_key=api_key, now=now, limit=limit)
        setattr(request, RATE_LIMIT_ATTR, status)
        if not status.allowed:
            raise ApiError(
                429,
                f"Rate limit of {status.limit} requests per minute reached for this key; "
                f"retry in {status.retry_after_seconds} s.",
                headers={"Retry-After": str(status.retry_after_seconds)},
            )
    return loaded


class _KeyAuth(HttpBearer):
    kind: str
    openapi_bearerFormat = "KEY_ID:KEY_SECRET"

    def __call__(self, request: HttpRequest) -> LoadedKey:
        """Admit the request's key; ninja puts what this returns in `request.auth`."""
        loaded = admit_key(request)
        if loaded.api_key.kind != self.kind:
            raise ApiError(403, self.wrong_kind_message)
        return loaded

    def authenticate(self, request: HttpRequest, token: str) -> LoadedKey:  # pragma: no cover
        raise NotImplementedError("__call__ authenticates; ninja's hook is unused.")


class CustomerKey(_KeyAuth):
    """A customer's key: acts for its own account; rate limited by tier."""

    kind = KeyKind.CUSTOMER
    openapi_description = "A customer API key (dashboard → API keys); rate limited per minute."
    wrong_kind_message = "This operation needs a customer API key, not a platform key."


class PlatformKey(_KeyAuth):
    """The operator's key: reports usage for any account."""

    kind = KeyKind.PLATFORM
    openapi_description = "A platform key of the operator (manage.py create_platform_key)."
    wrong_kind_message = "This operation needs a platform API key, not a customer key."


customer_key = CustomerKey()
platform_key = PlatformKey()
