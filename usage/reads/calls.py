"""What a call report reads before it takes the account's lock, in one statement.

The account (by its public id) with its subscription and plan, whether the call's period has an
allowance row (usage.ingest.calls._prepare), and the call if it was reported before. Through the ORM
that was three queries whose compiling cost more than PostgreSQL's work; every call report
runs it, so it is raw SQL turned into the ordinary model instances (billing.db.raw_rows).
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connection

from accounts.models import Account
from billing.db.raw_rows import Columns
from billing.models import Allowance, Plan, Subscription
from usage.models import Call

_ACCOUNT = Columns(Account, "a")
_SUBSCRIPTION = Columns(Subscription, "s")
_PLAN = Columns(Plan, "p")
_CALL = Columns(Call, "c")


@dataclass(frozen=True)
class BeforeLock:
    account_id: int
    # With its plan and account; None if the account has none (it is then refused later).
    subscription: Subscription | None
    # Whether the period containing the call's moment has an allowance row.
    allowance_at_call: bool
    # The call as reported before, if it was.
    call: Call | None
    # On PostgreSQL, an id drawn from the call table's sequence for a call not reported
    # before (usage.ingest.calls writes a new final call once, after its ledger entry); else None.
    new_call_pk: int | None


@cache
def _sql(vendor: str) -> str:
    call_table = Call._meta.db_table
    new_id = (
        f"CASE WHEN c.id IS NULL THEN nextval(pg_get_serial_sequence('{call_table}', 'id')) END"
        if vendor == "postgresql"
        else "NULL"
    )
    return (
        f"SELECT {_ACCOUNT.sql}, {_SUBSCRIPTION.sql}, {_PLAN.sql}, {_CALL.sql}, {new_id}, "  # noqa: S608  # nosec B608 - model names
        f"EXISTS (SELECT 1 FROM {Allowance._meta.db_table} al WHERE al.account_id = a.id "
        "AND al.period_start <= %s AND al.period_end > %s) "
        f"FROM {Account._meta.db_table} a "
        f"LEFT JOIN {Subscription._meta.db_table} s ON s.account_id = a.id "
        f"LEFT JOIN {Plan._meta.db_table} p ON p.id = s.plan_id "
        # call_id is unique: the call whatever its account (another's is a conflict).
        f"LEFT JOIN {call_table} c ON c.call_id = %s "
        "WHERE a.public_id = %s"
    )


def read_before_lock(*, account_public_id: str, call_id: str, at: datetime) -> BeforeLock | None:
    """Return what the report of `call_id` for the account reads before the lock; None if
    there is no such account. `at` is the moment the call is rated at."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(connection.vendor), [at, at, call_id, account_public_id])
        row = cursor.fetchone()
    if row is None:
        return None
    a, s, p, c = _ACCOUNT.spans(_SUBSCRIPTION, _PLAN, _CALL)
    account = _ACCOUNT.build(row[a])
    subscription = _SUBSCRIPTION.build_or_none(row[s])
    if subscription is not None:
        Subscription.plan.field.set_cached_value(subscription, _PLAN.build(row[p]))
        Subscription.account.field.set_cached_value(subscription, account)
        Account.subscription.related.set_cached_value(account, subscription)
    call = _CALL.build_or_none(row[c])
    return BeforeLock(
        account_id=account.pk,
        subscription=subscription,
        allowance_at_call=bool(row[-1]),
        call=call,
        new_call_pk=row[-2],
    )
