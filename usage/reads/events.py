"""What a batch of usage events reads besides what it charges: raw SQL, for the hot path.

A batch of 100 events did these reads through the ORM, and compiling them cost more than
running them (each is an indexed lookup). Both read fresh rows for every batch: nothing is
cached between requests, so a plan change or a stored event counts for the very next batch.
"""

from django.db import connection

from accounts.models import Account
from billing.db.raw_rows import Columns, column_in
from billing.models import Plan, Subscription
from usage.models import UsageEvent

_ACCOUNT = Columns(Account, "a")
_SUBSCRIPTION = Columns(Subscription, "s")
_PLAN = Columns(Plan, "p")


def subscriptions_by_public_id(
    public_ids: list[str],
) -> dict[str, tuple[Account, Subscription | None]]:
    """Return each known account of `public_ids` with its subscription and plan, in one query.

    Read before the account's lock, as the subscription always was: the plan rates the batch;
    what the lock protects (balance, carries, allowance) is read under it. An account without
    a subscription comes with None.
    """
    if not public_ids:
        return {}
    condition, params = column_in("a.public_id", public_ids)
    sql = (
        f"SELECT {_ACCOUNT.sql}, {_SUBSCRIPTION.sql}, {_PLAN.sql} "  # noqa: S608  # nosec B608 - model names
        f"FROM {Account._meta.db_table} a "
        f"LEFT JOIN {Subscription._meta.db_table} s ON s.account_id = a.id "
        f"LEFT JOIN {Plan._meta.db_table} p ON p.id = s.plan_id "
        f"WHERE {condition}"
    )
    a_end = len(_ACCOUNT)
    s_end = a_end + len(_SUBSCRIPTION)
    found: dict[str, tuple[Account, Subscription | None]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for row in rows:
        account = _ACCOUNT.build(row[:a_end])
        subscription = None
        if row[a_end] is not None:
            subscription = _SUBSCRIPTION.build(row[a_end:s_end])
            Subscription.plan.field.set_cached_value(subscription, _PLAN.build(row[s_end:]))
            Subscription.account.field.set_cached_value(subscription, account)
            Account.subscription.related.set_cached_value(account, subscription)
        found[account.public_id] = (account, subscription)
    return found


def stored_events(event_ids: list[str]) -> dict[str, tuple[int, str, int]]:
    """Return (account id, content hash, cost) of each of `event_ids` already stored.

    Read under the account's lock: an id claimed by a concurrent batch of this account is seen;
    one claimed by another account's batch meanwhile fails the insert (unique event_id).
    """
    if not event_ids:
        return {}
    condition, params = column_in("event_id", event_ids)
    sql = (
        "SELECT event_id, account_id, content_hash, cost_micros "  # noqa: S608  # nosec B608 - model names
        f"FROM {UsageEvent._meta.db_table} WHERE {condition}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {
            event_id: (account_id, digest, cost) for event_id, account_id, digest, cost in cursor
        }
