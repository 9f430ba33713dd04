"""Spend and usage read from the daily rollups (usage.reads.rollups): which rows and days count."""

from datetime import UTC, date, datetime

import pytest

from usage.models import UsageRollup
from usage.reads.rollups import (
    ComponentUsage,
    Spend,
    daily_spend,
    period_spend,
    period_spend_by_account,
    period_usage_by_component,
    spend_between,
)

MARCH_15 = datetime(2026, 3, 15, tzinfo=UTC)
APRIL_15 = datetime(2026, 4, 15, tzinfo=UTC)


def add_rollup_row(account, day: date, component: str = "call", *, is_line=False, model="", **sums):
    return UsageRollup.objects.create(
        account=account, day=day, component=component, is_line=is_line, model=model, **sums
    )


@pytest.fixture
def account_with_usage(make_account):
    """An account with usage on the first and last days of the period 15 March - 15 April
    and on the days around it."""
    account = make_account("voice-prepaid")
    add_rollup_row(account, date(2026, 3, 14), items=9, quantity=900, cost_micros=9_000_000)
    add_rollup_row(account, date(2026, 3, 15), items=2, quantity=120, cost_micros=160_000)
    add_rollup_row(account, date(2026, 3, 15), "sms", items=3, quantity=3, cost_micros=30_000)
    add_rollup_row(
        account,
        date(2026, 4, 14),
        model="gpt-4o",
        items=1,
        quantity=60,
        cost_micros=140_000,
        refunded_micros=140_000,
    )
    add_rollup_row(account, date(2026, 4, 15), items=5, quantity=500, cost_micros=5_000_000)
    # A line row prices the same items again: never counted.
    add_rollup_row(
        account, date(2026, 3, 15), is_line=True, items=2, quantity=120, cost_micros=160_000
    )
    return account


def test_the_period_s_spend_is_the_cost_less_refunds_of_its_days_item_rows(account_with_usage):
    spend = period_spend(account=account_with_usage, start=MARCH_15, end=APRIL_15)

    assert spend == Spend(
        cost_micros=160_000 + 30_000 + 140_000,
        refunded_micros=140_000,
        call_seconds=120 + 60,  # SMS count messages, not seconds
        items=2 + 3 + 1,
    )
    assert spend.net_micros == 190_000


def test_days_are_half_open(account_with_usage):
    assert spend_between(
        account=account_with_usage, first_day=date(2026, 3, 14), end_day=date(2026, 3, 15)
    ) == Spend(cost_micros=9_000_000, call_seconds=900, items=9)


def test_an_account_without_usage_spent_nothing(make_account):
    spend = period_spend(account=make_account("llm-api"), start=MARCH_15, end=APRIL_15)

    assert (spend, spend.net_micros) == (Spend(), 0)


def test_each_account_s_spend_is_read_in_its_own_period(account_with_usage, make_account):
    other = make_account("voice-prepaid")
    add_rollup_row(other, date(2026, 4, 15), items=1, quantity=60, cost_micros=80_000)
    idle = make_account("voice-prepaid")
    may = datetime(2026, 5, 15, tzinfo=UTC)

    spends = period_spend_by_account(
        periods={
            account_with_usage.pk: (MARCH_15, APRIL_15),
            other.pk: (APRIL_15, may),
            idle.pk: (MARCH_15, APRIL_15),
        }
    )

    assert {pk: s.net_micros for pk, s in spends.items()} == {
        account_with_usage.pk: 190_000,
        other.pk: 80_000,
        idle.pk: 0,
    }
    assert spends[account_with_usage.pk] == period_spend(
        account=account_with_usage, start=MARCH_15, end=APRIL_15
    )
    assert period_spend_by_account(periods={}) == {}


def test_daily_spend_has_the_days_with_usage(account_with_usage):
    days = daily_spend(
        account=account_with_usage, first_day=date(2026, 3, 15), end_day=date(2026, 4, 15)
    )

    assert days == {
        date(2026, 3, 15): Spend(cost_micros=190_000, call_seconds=120, items=5),
        date(2026, 4, 14): Spend(
            cost_micros=140_000, refunded_micros=140_000, call_seconds=60, items=1
        ),
    }


def test_usage_by_component_keeps_each_component_s_own_quantity(account_with_usage):
    add_rollup_row(
        account_with_usage,
        date(2026, 3, 20),
        "llm",
        model="gpt-4o",
        items=4,
        quantity=4000,
        output_tokens=800,
        cost_micros=20_000,
    )

    usage = period_usage_by_component(account=account_with_usage, start=MARCH_15, end=APRIL_15)

    assert usage == {
        "call": ComponentUsage(items=3, quantity=180, cost_micros=300_000, refunded_micros=140_000),
        "sms": ComponentUsage(items=3, quantity=3, cost_micros=30_000),
        "llm": ComponentUsage(items=4, quantity=4000, output_tokens=800, cost_micros=20_000),
    }


def test_the_budget_and_the_overview_read_the_same_spend(account_with_usage):
    from usage.pages.overview import daily_usage

    days = daily_usage(
        account=account_with_usage, first_day=date(2026, 3, 15), last_day=date(2026, 4, 14)
    )

    assert (
        sum(d.cost_micros for d in days.values())
        == period_spend(account=account_with_usage, start=MARCH_15, end=APRIL_15).net_micros
    )
