"""The API's key query (usage.reads.keys): one statement, prepared once per connection on
PostgreSQL, that reads fresh rows on every call and recovers when its statement is lost."""

from datetime import UTC, datetime

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError, connection, transaction
from django.db.models import Max, Min
from django.test.utils import CaptureQueriesContext

from accounts.keys import revoke_api_key
from accounts.models import ApiKey
from billing.models import Budget, CreditGrant, Plan, Subscription
from tests.conftest import NOW
from usage.reads import keys as key_lookup
from usage.reads.keys import load_key


@pytest.fixture
def postgres_only(db, is_postgres):
    if not is_postgres:
        pytest.skip("prepared statements are PostgreSQL's")


@pytest.fixture
def key(make_account, make_key):
    return make_key(make_account("llm-api", credit_micros=5_000_000), tier="paid").api_key


def snapshot(loaded):
    """The field values load_key gave the key, its account, subscription and plan."""
    api_key, subscription = loaded.api_key, loaded.subscription
    return [
        {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
        for obj in (api_key, api_key.account, subscription, subscription.plan)
    ] + [loaded.last_hard_budget_period, loaded.credit_expires_at]


def forget_statement():
    """Make this process forget the statement prepared on its connection (it stays on it)."""
    key_lookup._prepared.pop(connection.connection, None)


def orm_snapshot(api_key):
    """The same values read through the ORM, one query per object."""
    key = ApiKey.objects.get(pk=api_key.pk)
    subscription = Subscription.objects.get(account_id=key.account_id)
    budget = Budget.objects.filter(account_id=key.account_id, hard=True).aggregate(
        last=Max("reached_period_start")
    )["last"]
    credit_expiry = CreditGrant.objects.filter(
        account_id=key.account_id, remaining_micros__gt=0
    ).aggregate(first=Min("expires_at"))["first"]
    return [
        {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
        for obj in (key, key.account, subscription, Plan.objects.get(pk=subscription.plan_id))
    ] + [budget, credit_expiry]


def tzinfos(snapshot):
    return [
        (name, value.tzinfo)
        for part in snapshot[:-2]
        for name, value in part.items()
        if isinstance(value, datetime)
    ]


def test_the_key_query_reads_what_the_orm_reads(db, key):
    revoke_api_key(api_key=key, now=NOW)  # a few more timestamps
    Subscription.objects.filter(account_id=key.account_id).update(last_closed_at=NOW)

    loaded = snapshot(load_key(key.key_id))

    assert loaded == orm_snapshot(key)
    assert tzinfos(loaded) == tzinfos(orm_snapshot(key))
    assert all(tz is UTC for _, tz in tzinfos(loaded))


def test_an_unknown_key_id_reads_as_none(db, key):
    assert load_key("mlk_0000000000000000") is None


def test_the_prepared_statement_reads_what_the_plain_query_reads(postgres_only, key, settings):
    prepared = snapshot(load_key(key.key_id))
    settings.KEY_QUERY_PREPARED = False

    assert snapshot(load_key(key.key_id)) == prepared


def test_the_key_query_is_prepared_once_per_connection(postgres_only, key):
    connection.ensure_connection()
    forget_statement()

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert load_key(key.key_id).api_key.pk == key.pk

    statements = [q["sql"].split(" ", 1)[0] for q in queries.captured_queries]
    assert statements == ["PREPARE", "EXECUTE", "EXECUTE", "EXECUTE"]


def test_the_plain_query_is_used_when_preparing_is_off(db, key, settings):
    settings.KEY_QUERY_PREPARED = False

    with CaptureQueriesContext(connection) as queries:
        load_key(key.key_id)

    [query] = queries.captured_queries
    assert query["sql"].startswith("SELECT ")


def test_a_prepared_statement_reads_fresh_rows_every_time(postgres_only, key):
    load_key(key.key_id)
    revoke_api_key(api_key=key, now=NOW)

    assert load_key(key.key_id).api_key.revoked_at == NOW


@pytest.mark.django_db(transaction=True)
def test_a_lost_statement_is_prepared_again_outside_a_transaction(postgres_only, key):
    load_key(key.key_id)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as DISCARD ALL or a pooler would

    assert load_key(key.key_id).api_key.pk == key.pk
    assert load_key(key.key_id).api_key.pk == key.pk


@pytest.mark.django_db(transaction=True)
def test_a_column_type_changed_by_a_migration_is_survived(postgres_only, key):
    # PostgreSQL refuses to run a prepared plan whose result type changed under it.
    load_key(key.key_id)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE accounts_apikey ALTER COLUMN name TYPE varchar(101)")
    try:
        assert load_key(key.key_id).api_key.name == key.name
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE accounts_apikey ALTER COLUMN name TYPE varchar(100)")


def test_a_lost_statement_inside_a_transaction_fails_once_then_recovers(postgres_only, key):
    load_key(key.key_id)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")

    # The error aborts the transaction it happened in, so it is not hidden there.
    with pytest.raises(ProgrammingError), transaction.atomic():
        load_key(key.key_id)

    assert load_key(key.key_id).api_key.pk == key.pk


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_prepares_its_own_statement(postgres_only, key):
    load_key(key.key_id)
    first = connection.connection
    connection.close()
    connection.connect()

    assert connection.connection is not first
    assert load_key(key.key_id).api_key.pk == key.pk


# Django's health check of a reused connection -------------------------------------------------


def terminate_backend(conn):
    """End the connection's server process from another connection, as a restart would."""
    with psycopg.connect(
        host=conn.settings_dict["HOST"] or "127.0.0.1",
        port=conn.settings_dict["PORT"] or 5432,
        user=conn.settings_dict["USER"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        pid = conn.connection.info.backend_pid
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]


def start_request(conn):
    """What Django does to a kept connection when a request starts (close_old_connections)."""
    conn.close_if_unusable_or_obsolete()
    assert conn.connection is not None and not conn.health_check_done


@pytest.mark.django_db(transaction=True)
def test_the_key_query_is_the_health_check_of_a_reused_connection(postgres_only, key, monkeypatch):
    load_key(key.key_id)
    start_request(connection)
    checks = []
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append("SELECT 1") or True)

    assert load_key(key.key_id).api_key.pk == key.pk
    assert checks == []  # no extra round trip
    assert connection.health_check_done


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_died_between_requests_is_replaced(postgres_only, key):
    load_key(key.key_id)
    dead = connection.connection
    start_request(connection)
    terminate_backend(connection)

    assert load_key(key.key_id).api_key.pk == key.pk
    assert connection.connection is not dead


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_dies_during_a_request_is_not_asked_again(postgres_only, key):
    load_key(key.key_id)  # the request's health check is done: the connection was fine
    terminate_backend(connection)
    try:
        with pytest.raises((OperationalError, InterfaceError)):
            load_key(key.key_id)
    finally:
        connection.close()
