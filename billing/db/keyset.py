"""Date ranges and keyset cursors of the dashboard's long lists (usage log, ledger statement).

Both come from the query string, so anything may arrive: a range ending on the last day a date
can hold, or a cursor at year 1 in a time zone ahead of UTC. Neither may reach the database as an
error: a range without an upper bound is read as open, a cursor that is not one of ours is
ignored (the first page).
"""

from datetime import UTC, date, datetime, time, timedelta

# Primary keys are 64-bit; a larger number in a cursor is not one of ours.
MAX_PK = 2**63 - 1


def day_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """Return [start's midnight, the midnight after end) in UTC; None where there is no bound."""
    lower = datetime.combine(start, time(0), UTC) if start else None
    # The day after date.max does not exist: such a range has no upper bound.
    upper = (
        datetime.combine(end + timedelta(days=1), time(0), UTC) if end and end < date.max else None
    )
    return lower, upper


def make_cursor(moment: datetime, pk: int) -> str:
    return f"{moment.isoformat()}_{pk}"


def parse_cursor(cursor: str) -> tuple[datetime, int] | None:
    """Return the (moment, pk) of a cursor made by make_cursor, or None for anything else."""
    moment, _, pk = (cursor or "").partition("_")
    try:
        at, key = datetime.fromisoformat(moment), int(pk)
        if at.tzinfo is None:
            return None
        at = at.astimezone(UTC)  # out of range at the ends of the calendar: OverflowError
    except (ValueError, OverflowError):
        return None
    return (at, key) if 0 < key <= MAX_PK else None
