"""`/readyz`: can this process do its work? (issue 18, item 2)

Written as a few plain checks rather than with django-health-check: we need exactly four
(database, cache, migrations, a task worker's heartbeat), the heartbeat is django-q2's own
cluster status, which that package does not read, and each check here is a few lines whose
cost is known (the readiness probe runs every few seconds on every web host).
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger(__name__)

# The cache key under which web processes share when a task worker was last seen, so that a
# worker restart of a few seconds does not make every web host unready at once.
WORKER_SEEN_KEY = "operations:worker-seen-at"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return Check("database", False, type(exc).__name__)
    return Check("database", True, "ok")


def check_cache() -> Check:
    """Reach the cache itself: with Redis, ping it (the fail-soft cache would answer from
    process memory while Redis is down, config/redis_cache.py)."""
    try:
        if getattr(settings, "REDIS_URL", ""):
            cache._cache.get_client(write=True).ping()
            return Check("cache", True, "redis")
        cache.get(WORKER_SEEN_KEY)
    except Exception as exc:
        return Check("cache", False, type(exc).__name__)
    return Check("cache", True, "database")


# Migrations, once all applied, stay applied for the life of this process's code: only a
# deploy brings new ones, and it starts new processes. So a process checks until it sees none
# pending, then stops paying for the migration graph (~0.1-0.3 s with dj-stripe's).
_migrated = False


def check_migrations() -> Check:
    global _migrated
    if _migrated:
        return Check("migrations", True, "applied")
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return Check("migrations", False, type(exc).__name__)
    if pending:
        return Check("migrations", False, f"{len(pending)} pending")
    _migrated = True
    return Check("migrations", True, "applied")


def workers_reporting(*, now: datetime) -> list[str]:
    """Return the task-worker clusters reporting now through django-q2's heartbeat.

    Every cluster's sentinel writes its status (`Stat`) to the broker twice a second with a
    3-second expiry, so a cluster listed here is alive; a stopped one says so before it goes.
    """
    from django_q.conf import Conf
    from django_q.status import Stat

    alive = []
    for stat in Stat.get_all():
        if stat.status in (Conf.STOPPED, Conf.STOPPING):
            continue
        if now - stat.timestamp > timedelta(seconds=settings.WORKER_HEARTBEAT_SECONDS):
            continue
        alive.append(f"{stat.host}:{stat.pid}")
    return alive


def check_worker(*, now: datetime) -> Check:
    try:
        alive = workers_reporting(now=now)
        if alive:
            cache.set(WORKER_SEEN_KEY, time.time(), settings.WORKER_HEARTBEAT_SECONDS * 2)
            return Check("worker", True, f"{len(alive)} cluster(s)")
        seen_at = cache.get(WORKER_SEEN_KEY)
    except Exception as exc:
        return Check("worker", False, type(exc).__name__)
    if seen_at is not None and time.time() - seen_at <= settings.WORKER_HEARTBEAT_SECONDS:
        return Check("worker", True, f"seen {int(time.time() - seen_at)} s ago")
    return Check("worker", False, f"none seen within {settings.WORKER_HEARTBEAT_SECONDS} s")


def readiness(*, now: datetime) -> list[Check]:
    """Return the four checks; the database and migrations first, as the others need less."""
    checks = [check_database(), check_cache()]
    checks.append(check_migrations() if checks[0].ok else Check("migrations", False, "no database"))
    checks.append(check_worker(now=now))
    return checks
