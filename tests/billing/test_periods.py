"""Monthly periods from an anchor day, half-open [start, end) (SPEC S2)."""

from calendar import monthrange
from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing.periods import period_after, period_containing, period_last_day


def at(year, month, day, hour=0, minute=0, second=0, microsecond=0):
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def test_anchor_day_1_periods_are_calendar_months():
    start, end = period_containing(anchor_day=1, moment=at(2026, 3, 15, 12))

    assert (start, end) == (at(2026, 3, 1), at(2026, 4, 1))


def test_a_period_includes_its_start_instant():
    start, end = period_containing(anchor_day=1, moment=at(2026, 3, 1))

    assert (start, end) == (at(2026, 3, 1), at(2026, 4, 1))


def test_a_period_excludes_its_end_instant():
    assert period_containing(anchor_day=1, moment=at(2026, 4, 1)) == (
        at(2026, 4, 1),
        at(2026, 5, 1),
    )
    last_microsecond = at(2026, 4, 1) - timedelta(microseconds=1)
    assert period_containing(anchor_day=1, moment=last_microsecond) == (
        at(2026, 3, 1),
        at(2026, 4, 1),
    )


def test_anchor_day_15_before_the_15th_is_in_the_period_that_began_last_month():
    assert period_containing(anchor_day=15, moment=at(2026, 3, 14, 23, 59, 59)) == (
        at(2026, 2, 15),
        at(2026, 3, 15),
    )
    assert period_containing(anchor_day=15, moment=at(2026, 3, 15)) == (
        at(2026, 3, 15),
        at(2026, 4, 15),
    )


def test_anchor_day_15_periods_cross_the_new_year():
    assert period_containing(anchor_day=15, moment=at(2026, 12, 20)) == (
        at(2026, 12, 15),
        at(2027, 1, 15),
    )
    assert period_containing(anchor_day=15, moment=at(2027, 1, 10)) == (
        at(2026, 12, 15),
        at(2027, 1, 15),
    )


def test_anchor_day_31_is_clamped_to_the_28th_in_february():
    assert period_containing(anchor_day=31, moment=at(2026, 2, 15)) == (
        at(2026, 1, 31),
        at(2026, 2, 28),
    )
    assert period_containing(anchor_day=31, moment=at(2026, 2, 28)) == (
        at(2026, 2, 28),
        at(2026, 3, 31),
    )


def test_anchor_day_31_is_clamped_to_the_29th_in_a_leap_february():
    assert period_containing(anchor_day=31, moment=at(2028, 2, 28, 23, 59)) == (
        at(2028, 1, 31),
        at(2028, 2, 29),
    )
    assert period_containing(anchor_day=31, moment=at(2028, 2, 29)) == (
        at(2028, 2, 29),
        at(2028, 3, 31),
    )


def test_anchor_day_31_is_clamped_to_the_30th_in_thirty_day_months():
    assert period_containing(anchor_day=31, moment=at(2026, 4, 29)) == (
        at(2026, 3, 31),
        at(2026, 4, 30),
    )
    assert period_containing(anchor_day=31, moment=at(2026, 4, 30)) == (
        at(2026, 4, 30),
        at(2026, 5, 31),
    )


@pytest.mark.parametrize("anchor_day", [1, 15, 28, 29, 30, 31])
def test_consecutive_periods_tile_two_years_without_gaps_or_overlaps(anchor_day):
    start, end = period_containing(anchor_day=anchor_day, moment=at(2027, 1, 1))
    starts = [start]
    for _ in range(24):
        next_start, next_end = period_after(anchor_day=anchor_day, end=end)
        assert next_start == end
        assert next_end > next_start
        start, end = next_start, next_end
        starts.append(start)

    assert len(starts) == 25
    assert all(s.day == min(anchor_day, monthrange(s.year, s.month)[1]) for s in starts)
    assert end.year == 2029


def test_a_moment_in_another_time_zone_is_placed_by_its_utc_instant():
    # 2026-03-31 23:30 at UTC-02:00 is 2026-04-01 01:30 UTC: already April's period.
    moment = datetime(2026, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))

    assert period_containing(anchor_day=1, moment=moment) == (at(2026, 4, 1), at(2026, 5, 1))


@pytest.mark.parametrize("anchor_day", [0, 32, -1])
def test_an_anchor_day_outside_the_month_is_refused(anchor_day):
    with pytest.raises(ValueError, match="anchor_day"):
        period_containing(anchor_day=anchor_day, moment=at(2026, 3, 15))


def test_a_period_reads_with_the_last_day_it_covers_not_its_exclusive_end():
    start, end = period_containing(anchor_day=8, moment=at(2026, 11, 20))

    assert (start.date(), period_last_day(end)) == (at(2026, 11, 8).date(), at(2026, 12, 7).date())
