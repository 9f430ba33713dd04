"""The Redis cache, falling back to this process's memory while Redis is unreachable (SPEC O2).

The cache holds nothing that money depends on: allauth's login throttle counters (A1) and
throwaway values. With Django's plain RedisCache, Redis down meant every login answered 500.
Here a failed Redis call is logged and answered from a local-memory cache instead, so logging
in still works and is still throttled, per process rather than site-wide, until Redis is back.
After a failure Redis is left alone for a few seconds, so that an outage does not add a
connection attempt to every cache call.
"""

import functools
import logging
import time

import redis
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = 5.0
_METHODS = (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "has_key",
    "incr",
    "set_many",
    "delete_many",
)


class FailSoftRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._fallback = LocMemCache(f"meterline-fallback-{id(self)}", params)
        self._down_until = 0.0

    def _call(self, name: str, *args, **kwargs):
        if time.monotonic() >= self._down_until:
            try:
                return getattr(super(), name)(*args, **kwargs)
            except redis.RedisError as exc:
                self._down_until = time.monotonic() + BACKOFF_SECONDS
                logger.warning("Cache in process memory: Redis is unreachable (%s).", exc)
        return getattr(self._fallback, name)(*args, **kwargs)

    def clear(self) -> bool:
        """Delete this cache's own keys (its KEY_PREFIX), and nothing else in the database.

        Django's RedisCache.clear() runs FLUSHDB. The same Redis (REDIS_URL) also holds the
        task queue and the API rate-limit windows, which that would wipe; and two test runs,
        each with its own prefix, wiped each other's login throttle counters mid-test.
        """
        self._fallback.clear()
        if time.monotonic() < self._down_until:
            return True
        try:
            client = self._cache.get_client(write=True)
            batch = []
            for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + BACKOFF_SECONDS
            logger.warning("Cache in process memory: Redis is unreachable (%s).", exc)
        return True


def _fail_soft(name: str):
    @functools.wraps(getattr(RedisCache, name))
    def method(self, *args, **kwargs):
        return self._call(name, *args, **kwargs)

    return method


for _name in _METHODS:
    setattr(FailSoftRedisCache, _name, _fail_soft(_name))
