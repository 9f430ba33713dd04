"""PostgreSQL advisory locks: a lock on a number, not on a row (usage.charging.combining;
usage.reads.pending takes one with the rows it reads).

The lock is named by two integers, a namespace that says what the numbers mean and the number
itself (an account id), so that users of advisory locks for different things never meet.
Only PostgreSQL has them; callers check `available()` first.
"""

from django.db import connection


def available() -> bool:
    return connection.vendor == "postgresql"


def wait_until_free(*, namespace: int, key: int) -> None:
    """Return once nobody holds the lock (at once if nobody does), without keeping it.

    One statement takes the lock in shared mode, which waits for the holder of the exclusive
    lock to commit or die, and gives it back at once: every waiter wakes together, and none
    holds anything a new holder would wait for. (A target list is evaluated left to right.)
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock_shared(%s, %s), pg_advisory_unlock_shared(%s, %s)",
            [namespace, key, namespace, key],
        )
