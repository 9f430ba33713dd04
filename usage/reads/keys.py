"""Load a presented API key and what the gateway needs about its account, in one query.

Every customer API request authenticates its key and checks its rate limit, and `authorize`
(the platform asks it before each call or request) then needs the account, its subscription and
plan, and whether a hard budget may stop it. Read one by one through the ORM that was six
queries and most of the request's time; here it is one indexed join, read with raw SQL and
turned into model instances the way the ORM would (same column converters), so the rest of the
code sees the ordinary objects.

The join reads fresh rows on every request: nothing is cached between requests, so a revoked
key, a plan change, a new tier or a reached budget applies to the very next request.

It is the first query of every API request, so on PostgreSQL it is made cheap to send and read:
- prepared once per connection (settings.KEY_QUERY_PREPARED): planning its four joins and
  subquery cost PostgreSQL about four times what running it does. What is kept is the plan,
  never a row;
- it stands in for Django's `SELECT 1` health check of a reused connection;
- its timestamps are read with psycopg's C loader rather than Django's Python one.
"""

import itertools
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    connections,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from accounts.models import Account, ApiKey
from billing.db.raw_rows import Columns
from billing.models import Budget, CreditGrant, Plan, Subscription


@dataclass(frozen=True)
class LoadedKey:
    """A presented key and what the gateway needs about its account, read in one statement."""

    # The key, with its account as select_related would have loaded it (None: a platform key).
    api_key: ApiKey
    # The account's subscription with its plan; None for platform keys.
    subscription: Subscription | None
    # The latest period in which a hard budget of the account (or of this key) was reached,
    # None if none ever was. Earlier than the current period: no hard budget stops the key now,
    # and authorize skips usage.spending.budgets.reached_hard_budget's query.
    last_hard_budget_period: datetime | None
    # When the account's earliest-expiring unspent credit expires (None: none of it expires).
    # Past `now`, credit in the cached balance is no longer spendable and must be written off
    # before the balance answers anything (billing.ledger.expiry.write_off_expired_credit).
    credit_expires_at: datetime | None = None
    # The customer a platform key acts for (POST /customers/{external_id}/authorize, ...),
    # read by load_customer; None for a customer key, which acts for its own account.
    customer: Account | None = None

    @property
    def account(self) -> Account | None:
        if self.customer is not None:
            return self.customer
        return self.api_key.account if self.api_key.account_id is not None else None

    def hard_budget_possible(self, *, period_start: datetime) -> bool:
        """Return whether a hard budget may have been reached in the period starting then."""
        last = self.last_hard_budget_period
        return last is not None and last >= period_start

    def has_expired_credit(self, *, now: datetime) -> bool:
        """Return whether credit in the account's cached balance had expired by `now`."""
        return self.credit_expires_at is not None and self.credit_expires_at <= now


_KEY = Columns(ApiKey, "k")
_ACCOUNT = Columns(Account, "a")
_SUBSCRIPTION = Columns(Subscription, "s")
_PLAN = Columns(Plan, "p")


class _Value(Columns):
    """One column of a model read by itself (the budget subquery)."""

    def __init__(self, model: type[Model], name: str):
        self.fields = [model._meta.get_field(name)]
        self.alias = "b"
        self._converters = {}

    def read(self, value, conn: BaseDatabaseWrapper):
        for _, col, converters in self.converters(conn):
            for converter in converters:
                value = converter(value, col, conn)
        return value


_BUDGET_PERIOD = _Value(Budget, "reached_period_start")
_CREDIT_EXPIRY = _Value(CreditGrant, "expires_at")


@cache
def _sql(placeholder: str = "%s") -> str:
    key, account = ApiKey._meta.db_table, Account._meta.db_table
    subscription, plan = Subscription._meta.db_table, Plan._meta.db_table
    budget, grant = Budget._meta.db_table, CreditGrant._meta.db_table
    # Every join is on a primary key or a unique column; the budget subquery uses the
    # budget's account index, the credit expiry subquery the grants' (account, expires_at)
    # index. Platform keys have no account: the LEFT JOINs give NULLs.
    return (
        f"SELECT {_KEY.sql}, {_ACCOUNT.sql}, {_SUBSCRIPTION.sql}, {_PLAN.sql}, "  # noqa: S608  # nosec B608 - model names
        f"(SELECT MAX(b.reached_period_start) FROM {budget} b "
        "WHERE b.account_id = k.account_id AND b.hard "
        "AND (b.api_key_id IS NULL OR b.api_key_id = k.id)), "
        f"(SELECT MIN(g.expires_at) FROM {grant} g "
        "WHERE g.account_id = k.account_id AND g.remaining_micros > 0) "
        f"FROM {key} k LEFT JOIN {account} a ON a.id = k.account_id "
        f"LEFT JOIN {subscription} s ON s.account_id = a.id "
        f"LEFT JOIN {plan} p ON p.id = s.plan_id "
        f"WHERE k.key_id = {placeholder}"
    )


@cache
def _customer_sql() -> str:
    account, subscription = Account._meta.db_table, Subscription._meta.db_table
    plan, budget, grant = Plan._meta.db_table, Budget._meta.db_table, CreditGrant._meta.db_table
    # The key query's joins, from the account found by the operator's id through the partial
    # unique index on external_id. A platform key has no budget of its own: only the
    # account's budgets can stop it.
    return (
        f"SELECT {_ACCOUNT.sql}, {_SUBSCRIPTION.sql}, {_PLAN.sql}, "  # noqa: S608  # nosec B608 - model names
        f"(SELECT MAX(b.reached_period_start) FROM {budget} b "
        "WHERE b.account_id = a.id AND b.hard AND b.api_key_id IS NULL), "
        f"(SELECT MIN(g.expires_at) FROM {grant} g "
        "WHERE g.account_id = a.id AND g.remaining_micros > 0) "
        f"FROM {account} a LEFT JOIN {subscription} s ON s.account_id = a.id "
        f"LEFT JOIN {plan} p ON p.id = s.plan_id "
        "WHERE a.external_id = %s"
    )


def load_customer(*, platform_key: LoadedKey, external_id: str) -> LoadedKey | None:
    """Return what the gateway needs about the customer with the operator's id, for the
    platform key acting for it, in one query; None if no account has that id."""
    conn = connections[DEFAULT_DB_ALIAS]
    with conn.cursor() as cursor:
        cursor.execute(_customer_sql(), [external_id])
        row = cursor.fetchone()
    if row is None:
        return None
    account_end = len(_ACCOUNT.names)
    subscription_end = account_end + len(_SUBSCRIPTION.names)
    plan_end = subscription_end + len(_PLAN.names)
    account = _ACCOUNT.build(row[:account_end], conn)
    subscription = None
    if row[account_end] is not None:
        subscription = _SUBSCRIPTION.build(row[account_end:subscription_end], conn)
        Subscription.plan.field.set_cached_value(
            subscription, _PLAN.build(row[subscription_end:plan_end], conn)
        )
        Subscription.account.field.set_cached_value(subscription, account)
        Account.subscription.related.set_cached_value(account, subscription)
    return LoadedKey(
        api_key=platform_key.api_key,
        subscription=subscription,
        last_hard_budget_period=_BUDGET_PERIOD.read(row[-2], conn),
        credit_expires_at=_CREDIT_EXPIRY.read(row[-1], conn),
        customer=account,
    )


# Prepared statements (PostgreSQL) ---------------------------------------------------------------
#
# SQL-level PREPARE and EXECUTE rather than psycopg's own prepared statements: Django's cursors
# bind parameters on the client side and turn psycopg's preparing off (prepare_threshold None),
# and going through Django's cursor keeps query logging, execute wrappers and error wrapping.
# A prepared statement lives as long as its connection, and PREPARE is not undone by a rollback.

# The name of the statement prepared on each psycopg connection of this process. Each
# preparation takes a new name, so a statement left behind by a failure never stands in the way.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_preparations = itertools.count(1)
# The statement is gone (DISCARD ALL; a transaction pooler, see docs/operations.md), or a
# migration changed the type of a column it reads ("cached plan must not change result type").
STALE_STATEMENT_SQLSTATES = frozenset({"26000", "0A000"})


def _use_prepared(conn: BaseDatabaseWrapper) -> bool:
    return conn.vendor == "postgresql" and settings.KEY_QUERY_PREPARED


def _prepare(cursor, conn: BaseDatabaseWrapper) -> str:
    name = f"meterline_key_query_{next(_preparations)}"
    cursor.execute(f"PREPARE {name} (text) AS {_sql('$1')}")
    _prepared[conn.connection] = name
    return name


def _execute_prepared(cursor, conn: BaseDatabaseWrapper, key_id: str) -> None:
    """Run the key query as this connection's prepared statement, preparing it if need be."""
    name = _prepared.get(conn.connection) or _prepare(cursor, conn)
    try:
        cursor.execute(f"EXECUTE {name} (%s)", [key_id])
    except (ProgrammingError, NotSupportedError) as exc:
        if getattr(exc.__cause__, "sqlstate", None) not in STALE_STATEMENT_SQLSTATES:
            raise
        _prepared.pop(conn.connection, None)
        # Outside a transaction nothing was lost: prepare afresh and ask again. Inside one the
        # error has aborted it, so it goes to the caller; the next query prepares afresh.
        if conn.in_atomic_block:
            raise
        cursor.execute(f"EXECUTE {_prepare(cursor, conn)} (%s)", [key_id])


@cache
def _timestamptz_loader() -> tuple[int, type]:
    """psycopg's own loader of timestamptz (its C one when installed), with the type's oid."""
    import psycopg  # PostgreSQL only: the embedded default runs on SQLite

    oid = psycopg.postgres.types["timestamptz"].oid
    return oid, psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT)


def _read_timestamps_with_psycopg(cursor, conn: BaseDatabaseWrapper) -> None:
    """Read this cursor's timestamps with psycopg's loader instead of Django's.

    Django reads every timestamptz with a pure-Python loader so as to put its own tzinfo on
    the value: about 6 us a value, as much as the rest of this query's client time. On a
    session in UTC, which Django sets up when USE_TZ is on, psycopg's loader returns the same
    values with the same tzinfo (datetime.timezone.utc); on any other, Django's loader stays.
    """
    if conn.timezone is not UTC or conn.connection.info.parameter_status("TimeZone") != "UTC":
        return
    oid, loader = _timestamptz_loader()
    cursor.cursor.adapters.register_loader(oid, loader)


def _read_row(conn: BaseDatabaseWrapper, key_id: str):
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            _read_timestamps_with_psycopg(cursor, conn)
        if _use_prepared(conn):
            _execute_prepared(cursor, conn, key_id)
        else:
            cursor.execute(_sql(), [key_id])
        return cursor.fetchone()


def _take_over_health_check(conn: BaseDatabaseWrapper) -> bool:
    """Say whether this query stands in for Django's health check of a reused connection.

    With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of each request on
    a connection kept from an earlier one, and replaces the connection if that fails. The key
    query is the first query of an API request and only reads, so it can be the check itself:
    one round trip instead of two. Not inside a transaction, where a retry would be unsafe.
    """
    pending = (
        conn.connection is not None
        and conn.health_check_enabled
        and not conn.health_check_done
        and not conn.in_atomic_block
    )
    if pending:
        conn.health_check_done = True
    return pending


def _fetch_row(conn: BaseDatabaseWrapper, key_id: str):
    checking = _take_over_health_check(conn)
    try:
        return _read_row(conn, key_id)
    except (OperationalError, InterfaceError):
        if not checking:
            raise
    # The connection kept from an earlier request died (a database restart, a dropped TCP
    # connection): replace it and ask again, as Django's failed health check would have.
    conn.close()
    return _read_row(conn, key_id)


@cache
def _column_ranges() -> list[tuple[int, int]]:
    """Where the key's, account's, subscription's and plan's columns are in the row."""
    ranges, start = [], 0
    for columns in (_KEY, _ACCOUNT, _SUBSCRIPTION, _PLAN):
        ranges.append((start, start + len(columns.names)))
        start += len(columns.names)
    return ranges


def load_key(key_id: str) -> LoadedKey | None:
    """Return the key with the id, its account, subscription and plan, or None if unknown."""
    conn = connections[DEFAULT_DB_ALIAS]  # the connection itself, not the proxy: read often
    row = _fetch_row(conn, key_id)
    if row is None:
        return None
    (k0, k1), (a0, a1), (s0, s1), (p0, p1) = _column_ranges()
    api_key = _KEY.build(row[k0:k1], conn)
    subscription = None
    if row[a0] is not None:
        account = _ACCOUNT.build(row[a0:a1], conn)
        ApiKey.account.field.set_cached_value(api_key, account)
        if row[s0] is not None:
            subscription = _SUBSCRIPTION.build(row[s0:s1], conn)
            Subscription.plan.field.set_cached_value(subscription, _PLAN.build(row[p0:p1], conn))
            Subscription.account.field.set_cached_value(subscription, account)
            Account.subscription.related.set_cached_value(account, subscription)
    return LoadedKey(
        api_key=api_key,
        subscription=subscription,
        last_hard_budget_period=_BUDGET_PERIOD.read(row[-2], conn),
        credit_expires_at=_CREDIT_EXPIRY.read(row[-1], conn),
    )
