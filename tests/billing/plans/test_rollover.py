"""The rollover of unused included minutes into the next period (SPEC U9), as period close and
a period's first usage both compute it (billing.plans.allowances.rollover_seconds)."""

from datetime import UTC, datetime

from billing.models import Allowance
from billing.plans.allowances import (
    allowances_from,
    chain_available_seconds,
    rollover_chain,
    rollover_seconds,
    use_chain,
)

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


# Late usage of a settled period: what it may take back down the chain of rollovers ------------

MAY_15 = datetime(2026, 5, 15, tzinfo=UTC)
JUNE_15 = datetime(2026, 6, 15, tzinfo=UTC)


def stored_chain(account, *rows: tuple[int, int, int]) -> list[Allowance]:
    """Store consecutive periods from 15 March: (included, rollover, used) each."""
    bounds = [MARCH_15, APRIL_15, MAY_15, JUNE_15]
    for (included, rollover, used), start, end in zip(rows, bounds, bounds[1:], strict=False):
        Allowance.objects.create(
            account=account,
            period_start=start,
            period_end=end,
            included_seconds=included,
            rollover_seconds=rollover,
            used_seconds=used,
        )
    return rollover_chain(
        allowances_from(account=account, period_start=MARCH_15), period_start=MARCH_15
    )


def test_a_late_item_gets_only_what_every_later_period_left_of_the_rolled_over_seconds(
    make_account,
):
    # 60 s left in March rolled into April; April left 10 s, rolled into May; May left 5 s.
    chain = stored_chain(make_account("voice-payg"), (100, 0, 40), (100, 60, 150), (100, 10, 105))

    assert chain_available_seconds(chain) == 5
    use_chain(chain, seconds=5)

    stored = [
        (a.rollover_seconds, a.used_seconds, a.remaining_seconds)
        for a in Allowance.objects.order_by("period_start")
    ]
    assert stored == [(0, 45, 55), (55, 150, 5), (5, 105, 0)]
    assert [(a.rollover_seconds, a.used_seconds) for a in chain] == [(0, 45), (55, 150), (5, 105)]


def test_what_a_period_let_expire_is_used_before_anything_is_taken_back(make_account):
    # March left 60 s but only 20 s rolled over (40 s expired); April has used none of them.
    chain = stored_chain(make_account("voice-payg"), (100, 0, 40), (100, 20, 0))

    assert chain_available_seconds(chain) == 60
    use_chain(chain, seconds=50)

    stored = [
        (a.rollover_seconds, a.used_seconds) for a in Allowance.objects.order_by("period_start")
    ]
    assert stored == [(0, 90), (10, 0)]


def test_a_period_that_took_nothing_over_ends_the_chain(make_account):
    chain = stored_chain(make_account("voice-payg"), (100, 0, 40), (100, 0, 100))

    assert [a.period_start for a in chain] == [MARCH_15]
    assert chain_available_seconds(chain) == 60
