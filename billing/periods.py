"""Monthly billing periods from an anchor day, half-open [start, end) in UTC (SPEC S2)."""

import calendar
from datetime import UTC, date, datetime, timedelta

from billing.models import Subscription


def _anchor_in(year: int, month: int, anchor_day: int) -> datetime:
    # A period anchored on the 31st starts on the last day of shorter months.
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=UTC)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_containing(*, anchor_day: int, moment: datetime) -> tuple[datetime, datetime]:
    """Return the [start, end) period that contains `moment`."""
    if not 1 <= anchor_day <= 31:
        raise ValueError("anchor_day is a day of the month, 1 to 31")
    moment = moment.astimezone(UTC)
    start = _anchor_in(moment.year, moment.month, anchor_day)
    if moment < start:
        year, month = _add_months(moment.year, moment.month, -1)
        start = _anchor_in(year, month, anchor_day)
    year, month = _add_months(start.year, start.month, 1)
    return start, _anchor_in(year, month, anchor_day)


def period_last_day(end: datetime) -> date:
    """Return the last day a period ending (exclusively) at `end` covers, as people read it.

    Every page says "8 Nov to 7 Dec" for the period [8 Nov, 8 Dec): the end itself belongs to
    the next period.
    """
    return (end.astimezone(UTC) - timedelta(microseconds=1)).date()


def period_after(*, anchor_day: int, end: datetime) -> tuple[datetime, datetime]:
    """Return the period that starts where the period ending at `end` ends."""
    return period_containing(anchor_day=anchor_day, moment=end)


def current_period(*, subscription: Subscription, now: datetime) -> tuple[datetime, datetime]:
    """Return the [start, end) billing period that contains `now`.

    The subscription's current period, unless period close has not advanced it yet.
    """
    start, end = subscription.current_period_start, subscription.current_period_end
    if start <= now < end:
        return start, end
    return period_containing(anchor_day=subscription.anchor_day, moment=now)
