"""Every row our apps keep, as comparable data: the proof that a refused request wrote nothing.

Row counts alone would miss an UPDATE (a revoked key, a changed role, a moved balance), so the
snapshot holds every column of every row. The test data sets are small, so this stays cheap.
"""

import contextlib
import re

from django.apps import apps
from django.db import connection

# Our three apps, allauth's email addresses, auth's groups and django-q's queued tasks (a
# refused request must not queue an email either).
APP_LABELS = ("accounts", "billing", "usage", "account", "auth", "django_q")

# What any API request by a valid key writes, whatever its fate: the rate-limit counters of the
# caller's key (SPEC G2: every request counts) and the key's last-used time (SPEC A4).
API_BOOKKEEPING = frozenset({"usage.RateLimitCounter", "accounts.ApiKey.last_used_at"})


def snapshot(*, ignore: frozenset[str] = frozenset(), app_labels=APP_LABELS) -> dict:
    """Return every row of the apps' tables, keyed by model label, minus the ignored parts.

    `ignore` names whole models ("usage.RateLimitCounter") or single fields
    ("accounts.ApiKey.last_used_at").
    """
    state = {}
    for model in apps.get_models():
        label = model._meta.label
        if model._meta.app_label not in app_labels or model._meta.proxy or label in ignore:
            continue
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if f"{label}.{f.name}" not in ignore and f"{label}.{f.attname}" not in ignore
        ]
        state[label] = list(model._base_manager.order_by("pk").values_list(*fields))
    return state


def changes(before: dict, after: dict) -> dict:
    """Return, per model, the rows that differ between two snapshots (empty: nothing written)."""
    diff = {}
    for label in before.keys() | after.keys():
        # repr: JSON columns hold dicts, which sets cannot.
        old = {repr(row) for row in before.get(label, [])}
        new = {repr(row) for row in after.get(label, [])}
        if old != new:
            diff[label] = {"removed": sorted(old - new), "added": sorted(new - old)}
    return diff


_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+\"?(\w+)\"?", re.I)
# The tables of API_BOOKKEEPING, and the cache table of the embedded default.
_BOOKKEEPING_TABLES = frozenset({"usage_ratelimitcounter", "meterline_cache"})


@contextlib.contextmanager
def recorded_writes():
    """Record the tables every INSERT, UPDATE and DELETE of the block writes to.

    The cheap form of `snapshot()` for loops of thousands of requests: a statement that never
    ran changed no row. The API's bookkeeping (rate-limit counters, the key's last-used time)
    is left out, as in API_BOOKKEEPING.
    """
    written: list[str] = []

    def record(execute, sql, params, many, context):
        match = _WRITE.match(sql)
        if match:
            table = match.group(2).lower()
            last_used = table == "accounts_apikey" and "last_used_at" in sql and "SET" in sql
            if table not in _BOOKKEEPING_TABLES and not last_used:
                written.append(f"{match.group(1).split()[0].upper()} {table}")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield written
