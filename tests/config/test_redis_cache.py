"""Clearing the cache deletes the cache's own keys only (SPEC O2): the same Redis holds the task
queue and the rate-limit windows, and parallel test runs each use their own key prefix."""

import secrets

import pytest
import redis
from django.conf import settings

from config.redis_cache import FailSoftRedisCache

REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/15"


@pytest.fixture
def unique():
    return secrets.token_hex(6)


def test_clearing_the_cache_leaves_other_prefixes_and_other_keys_alone(unique):
    mine = FailSoftRedisCache(REDIS_URL, {"KEY_PREFIX": f"mine-{unique}"})
    theirs = FailSoftRedisCache(REDIS_URL, {"KEY_PREFIX": f"theirs-{unique}"})
    raw = redis.Redis.from_url(REDIS_URL)
    queue = f"django_q:meterline:q-{unique}"  # what django-q2's broker keeps in the same Redis
    try:
        mine.set_many({f"throttle-{n}": n for n in range(2500)})  # more than one SCAN batch
        theirs.set("throttle", 1)
        raw.rpush(queue, "a task")

        assert mine.clear() is True

        assert mine.get_many([f"throttle-{n}" for n in range(2500)]) == {}
        assert theirs.get("throttle") == 1
        assert raw.lrange(queue, 0, -1) == [b"a task"]
    finally:
        theirs.clear()
        raw.delete(queue)
