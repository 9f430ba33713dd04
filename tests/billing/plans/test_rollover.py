"""The rollover of unused included minutes into the next period (SPEC U9), as period close and
a period's first usage both compute it (billing.plans.allowances.rollover_seconds)."""

from datetime import UTC, datetime

from billing.models import Allowance
from billing.plans.allowances import rollover_seconds

MARCH_15 = datetime(2026, 3, 15, tzinfo=UTC)
APRIL_15 = datetime(2026, 4, 15, tzinfo=UTC)


def row(*, included: int, rollover: int = 0, used: int) -> Allowance:
    return Allowance(
        period_start=MARCH_15,
        period_end=APRIL_15,
        included_seconds=included,
        rollover_seconds=rollover,
        used_seconds=used,
    )


def test_what_the_period_before_left_rolls_over_with_its_own_rollover():
    previous = row(included=6000 * 60, rollover=500 * 60, used=1500 * 60)

    assert rollover_seconds(
        rollover_enabled=True, previous=previous, unused_without_row_seconds=0
    ) == (5000 * 60)


def test_an_allowance_used_beyond_its_minutes_rolls_over_nothing():
    previous = row(included=60, used=90)

    assert (
        rollover_seconds(rollover_enabled=True, previous=previous, unused_without_row_seconds=0)
        == 0
    )


def test_a_period_without_a_row_leaves_what_the_caller_says():
    assert (
        rollover_seconds(rollover_enabled=True, previous=None, unused_without_row_seconds=360_000)
        == 360_000
    )


def test_without_rollover_nothing_carries_over():
    previous = row(included=6000 * 60, used=0)

    assert (
        rollover_seconds(
            rollover_enabled=False, previous=previous, unused_without_row_seconds=360_000
        )
        == 0
    )
    assert (
        rollover_seconds(rollover_enabled=False, previous=None, unused_without_row_seconds=360_000)
        == 0
    )
