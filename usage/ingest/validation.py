"""When reported usage can still be billed (SPEC U10): the checks of every reported moment."""

from datetime import datetime, timedelta

# Usage may be reported up to 35 days late (U10); clocks may disagree by a few minutes.
LATE_LIMIT = timedelta(days=35)
CLOCK_SKEW = timedelta(minutes=5)


def moment_problem(*, name: str, moment: datetime, now: datetime) -> str | None:
    """Return why the reported moment `name` cannot be billed at `now`, or None if it can.

    A moment without a time zone is refused rather than guessed: periods and rollup days are
    UTC, and a guess would put the usage on the wrong day or in the wrong period.
    """
    if moment.tzinfo is None:
        return f"{name} needs a time zone"
    if moment > now + CLOCK_SKEW:
        return f"{name} is in the future"
    if moment < now - LATE_LIMIT:
        return f"{name} is more than {LATE_LIMIT.days} days ago; too late to bill"
    return None
