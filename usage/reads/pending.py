"""The charge turn of an account and the reports pending for it, in one statement (PostgreSQL).

usage.charging.combining takes an account's turn with a try (never waiting) and, if it got it,
reads the reports other requests left pending. Every call report of a busy account runs this
first, inside the transaction that holds the turn, so it is one round trip instead of two.
Both parts see the statement's snapshot: a report committed after it is not read, and its
request takes the turn itself once this one commits.
"""

from functools import cache

from django.db import connection

from usage.models import PendingCharge


@cache
def _sql() -> str:
    table = PendingCharge._meta.db_table
    return (
        "SELECT pg_try_advisory_xact_lock(%s, %s), "  # noqa: S608  # nosec B608 - model names
        "(SELECT coalesce(json_agg(json_build_array(p.id, p.report) ORDER BY p.id), '[]') "
        f"FROM (SELECT id, report FROM {table} WHERE account_id = %s AND outcome = 0 "
        "ORDER BY id LIMIT %s) p)"
    )


def take_turn(*, namespace: int, account_id: int, limit: int) -> list[tuple[int, dict]] | None:
    """Take the account's turn (an advisory lock held until the transaction ends) if nobody
    holds it, and return the first `limit` pending reports of the account in arrival order
    as (id, report); None when somebody else holds the turn. Call inside transaction.atomic().
    """
    with connection.cursor() as cursor:
        cursor.execute(_sql(), [namespace, account_id, account_id, limit])
        taken, rows = cursor.fetchone()
    if not taken:
        return None
    return [(pk, report) for pk, report in rows]
