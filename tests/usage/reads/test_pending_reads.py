"""usage.reads.pending: the charge turn and the pending reports in one statement, held equal to
the ORM's read of the same rows (PostgreSQL: advisory locks)."""

import pytest
from django.db import connection, transaction

from usage.charging.combining import LOCK_NAMESPACE
from usage.models import PendingCharge
from usage.reads.pending import take_turn

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="advisory locks: PostgreSQL only"
)


def orm_pending(account_id: int, limit: int) -> list[tuple[int, dict]]:
    return list(
        PendingCharge.objects.filter(account_id=account_id, outcome=0)
        .order_by("pk")
        .values_list("pk", "report")[:limit]
    )


@pytest.mark.django_db
def test_take_turn_reads_what_the_orm_reads():
    for n in range(5):
        PendingCharge.objects.create(account_id=7, report={"n": n, "at": "2026-12-07T10:00:00"})
    PendingCharge.objects.create(account_id=8, report={"other": True})
    PendingCharge.objects.create(account_id=7, report={"done": True}, outcome=1, value=3)

    with transaction.atomic():
        rows = take_turn(namespace=LOCK_NAMESPACE, account_id=7, limit=3)

    assert rows == orm_pending(7, 3)
    assert [r[1]["n"] for r in rows] == [0, 1, 2]
    with transaction.atomic():
        assert take_turn(namespace=LOCK_NAMESPACE, account_id=9, limit=3) == orm_pending(9, 3) == []


@pytest.mark.django_db(transaction=True)
def test_take_turn_answers_none_while_another_connection_holds_the_turn():
    import psycopg

    from tests.child_processes import child_database_url

    with psycopg.connect(child_database_url()) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, 7])
        with transaction.atomic():
            assert take_turn(namespace=LOCK_NAMESPACE, account_id=7, limit=3) is None
        other.rollback()
    with transaction.atomic():
        assert take_turn(namespace=LOCK_NAMESPACE, account_id=7, limit=3) == []
