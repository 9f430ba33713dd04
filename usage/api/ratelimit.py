"""Per-key request limits of the customer API: fixed one-minute windows (SPEC G2).

A customer key may make `limit` requests per Unix minute, by the key's tier: the account's plan
`rate_limits` ({"free": 10, "elevated": 60, "paid": 100}) wins over settings.RATE_LIMIT_TIERS.
Counters are shared by every web process on every host:

- Redis, when settings.REDIS_URL is set: INCR and EXPIRE of one key per key and window, in one
  Lua script (atomic like MULTI/EXEC, and one command instead of four for the client to build
  and parse on every API request).
- Otherwise the database table `usage.RateLimitCounter`, with one atomic upsert per request. The
  database *cache* cannot do this job: its `incr` is a read followed by a write, so two processes
  can both read 9 and both write 10.

Requests refused with 429 are also counted per key and Unix day (Redis key, or a counter row
with `window = -day`) for `recent_429_counts`.

Failure direction: if Redis cannot be reached, requests are ALLOWED (fail open) and a warning is
logged. Refusing every API call of every customer because a counter store is down would stop
billing and the customers' products with it; a few minutes without limits costs far less. After
a failure Redis is left alone for a few seconds so that an outage does not add a connection
timeout to every request.
"""

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Q

from accounts.models import ApiKey
from billing.models import Subscription
from usage.models import RateLimitCounter

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
DAY_SECONDS = 86_400
# Daily 429 counts older than this are deleted from the table (and expire in Redis).
KEEP_429_DAYS = 35
# On a key's first request in a window, clean old rows with this probability: often enough that
# the table stays small, rarely enough that the DELETE costs nothing per request on average.
CLEANUP_PROBABILITY = 0.02
REDIS_TIMEOUT_SECONDS = 0.25
REDIS_BACKOFF_SECONDS = 5.0
REDIS_PREFIX = "meterline:rl"


@dataclass(frozen=True)
class RateLimitStatus:
    """Where one key stands in the current window, after counting this request."""

    limit: int
    remaining: int
    reset_at: int  # Unix time of the window's end
    allowed: bool
    retry_after_seconds: int  # whole seconds until the window ends, at least 1

    @property
    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": str(self.reset_at),
        }


def limit_for(api_key: ApiKey) -> int:
    """Return the requests per minute of a customer key: its plan's tier limit, else settings.

    Read on every request (one indexed query, or none when the API's key query already read
    the plan), so a tier granted in admin, or a plan's limits changed by staff, apply at once.
    """
    rows = Subscription.objects.filter(account_id=api_key.account_id).values_list(
        "plan__rate_limits", flat=True
    )[:1]
    return limit_from(plan_limits=next(iter(rows), None), tier=api_key.tier)


def limit_from(*, plan_limits, tier: str) -> int:
    """Return the limit of a tier: the plan's `rate_limits` entry, else settings, else free."""
    defaults = settings.RATE_LIMIT_TIERS
    for limits in (plan_limits, defaults):
        value = limits.get(tier) if isinstance(limits, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return defaults["free"]


def hit(*, api_key: ApiKey, now: datetime, limit: int | None = None) -> RateLimitStatus:
    """Count one request of a customer key and say whether it is within the limit.

    `limit` is the key's limit when the caller already read it (see `limit_from`).
    """
    if limit is None:
        limit = limit_for(api_key)
    timestamp = now.timestamp()
    window = int(timestamp // WINDOW_SECONDS)
    reset_at = (window + 1) * WINDOW_SECONDS
    retry_after = max(1, math.ceil(reset_at - timestamp))
    count = _backend().incr_window(api_key.key_id, window, now=now)
    if count is None:  # counter store unreachable: fail open
        return RateLimitStatus(limit, limit, reset_at, True, retry_after)
    allowed = count <= limit
    if not allowed:
        _backend().incr_day(api_key.key_id, int(timestamp // DAY_SECONDS))
    return RateLimitStatus(limit, max(0, limit - count), reset_at, allowed, retry_after)


def recent_429_counts(key_ids, *, now: datetime | None = None, days: int = 7) -> dict[str, int]:
    """Return how many requests of each key were refused with 429 in the last `days` days.

    Every key asked about is in the answer, with 0 when it was never limited.
    """
    key_ids = list(dict.fromkeys(key_ids))
    if not key_ids:
        return {}
    timestamp = now.timestamp() if now is not None else time.time()
    today = int(timestamp // DAY_SECONDS)
    counts = _backend().day_counts(key_ids, range(today - days + 1, today + 1))
    return {key_id: counts.get(key_id, 0) for key_id in key_ids}


def delete_old_counters(*, now: datetime) -> int:
    """Delete database counters of past windows and 429 counts older than KEEP_429_DAYS."""
    timestamp = now.timestamp()
    window = int(timestamp // WINDOW_SECONDS)
    oldest_day = int(timestamp // DAY_SECONDS) - KEEP_429_DAYS
    deleted, _ = RateLimitCounter.objects.filter(
        Q(window__gte=0, window__lt=window - 1) | Q(window__lt=0, window__gt=-oldest_day)
    ).delete()
    return deleted


# Backends --------------------------------------------------------------------------------------


# ON CONFLICT ... DO UPDATE ... RETURNING works on PostgreSQL and SQLite >= 3.35. The row lock
# the update takes serializes concurrent requests of one key, and autocommit releases it at once.
# "window" is a reserved word in PostgreSQL.
UPSERT_SQL = (
    'INSERT INTO usage_ratelimitcounter (key_id, "window", count) VALUES (%s, %s, 1) '
    'ON CONFLICT (key_id, "window") DO UPDATE SET count = usage_ratelimitcounter.count + 1 '
    "RETURNING count"
)


class DatabaseCounters:
    """Counters in `usage_ratelimitcounter`; one upsert per request, atomic in every database."""

    def _upsert(self, key_id: str, window: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(UPSERT_SQL, [key_id, window])
            return cursor.fetchone()[0]

    def incr_window(self, key_id: str, window: int, *, now: datetime) -> int:
        count = self._upsert(key_id, window)
        if count == 1 and random.random() < CLEANUP_PROBABILITY:
            delete_old_counters(now=now)
        return count

    def incr_day(self, key_id: str, day: int) -> None:
        # Days are stored as negative windows so that they never meet a minute window.
        self._upsert(key_id, -day)

    def day_counts(self, key_ids: list[str], days: range) -> dict[str, int]:
        counts: dict[str, int] = {}
        rows = RateLimitCounter.objects.filter(
            key_id__in=key_ids, window__lte=-days.start, window__gte=-(days.stop - 1)
        ).values_list("key_id", "count")
        for key_id, count in rows:
            counts[key_id] = counts.get(key_id, 0) + count
        return counts


# Count a request and (re)arm the counter's expiry, atomically: a Lua script runs alone in
# Redis, so no counter is ever left without its expiry.
INCR_AND_EXPIRE = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""


class RedisCounters:
    """Counters in Redis; one connection pool per process and URL."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry_on_timeout=False,
        )
        self.down_until = 0.0
        self.incr_and_expire = self.client.register_script(INCR_AND_EXPIRE)

    def _run(self, build) -> list | None:
        """Run a MULTI/EXEC pipeline; on a Redis failure log, back off and return None."""
        if time.monotonic() < self.down_until:
            return None
        try:
            with self.client.pipeline(transaction=True) as pipe:
                build(pipe)
                return pipe.execute()
        except redis.RedisError as exc:
            self._went_down(exc)
            return None

    def _count(self, name: str, ttl_seconds: int) -> int | None:
        """Add one to a counter and arm its expiry; on a Redis failure log, back off, None."""
        if time.monotonic() < self.down_until:
            return None
        try:
            # EVALSHA, and EVAL once if Redis does not know the script (a restart, a new host).
            return int(self.incr_and_expire(keys=[name], args=[ttl_seconds]))
        except redis.RedisError as exc:
            self._went_down(exc)
            return None

    def _went_down(self, exc: redis.RedisError) -> None:
        self.down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
        logger.warning("Rate limits not enforced: Redis is unreachable (%s).", exc)

    def incr_window(self, key_id: str, window: int, *, now: datetime) -> int | None:
        return self._count(f"{REDIS_PREFIX}:{key_id}:{window}", 2 * WINDOW_SECONDS)

    def incr_day(self, key_id: str, day: int) -> None:
        self._count(f"{REDIS_PREFIX}:429:{key_id}:{day}", (KEEP_429_DAYS + 1) * DAY_SECONDS)

    def day_counts(self, key_ids: list[str], days: range) -> dict[str, int]:
        names = [f"{REDIS_PREFIX}:429:{key_id}:{day}" for key_id in key_ids for day in days]
        result = self._run(lambda pipe: pipe.mget(names))
        counts: dict[str, int] = {}
        if result is None:
            return counts
        per_key = len(days)
        for index, value in enumerate(result[0]):
            if value is not None:
                key_id = key_ids[index // per_key]
                counts[key_id] = counts.get(key_id, 0) + int(value)
        return counts


_redis_backends: dict[str, RedisCounters] = {}
_redis_lock = threading.Lock()
_database_counters = DatabaseCounters()


def _backend() -> RedisCounters | DatabaseCounters:
    url = settings.REDIS_URL
    if url:
        backend = _redis_backends.get(url)
        if backend is None:
            with _redis_lock:
                backend = _redis_backends.setdefault(url, RedisCounters(url))
        return backend
    return _database_counters
