"""Plan changes by staff, and new rates, never rewrite past charges (SPEC S2)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import staff
from billing.invoicing.period_close import close_periods
from billing.models import Allowance, Rate, RateComponent, Subscription
from billing.staff import StaffActionError
from tests.billing.staff.scenery import ledger_rows
from tests.billing.staff_data import USD, balance, new_key
from tests.conftest import NOW
from tests.usage.metering import call
from usage.ingest.calls import report_call
from usage.models import Call


def test_a_plan_change_for_the_next_period_waits_for_the_period_to_end(
    finance, make_account, dearer_plan
):
    account = make_account(credit_micros=10 * USD)

    outcome = staff.change_plan(
        account=account,
        plan=dearer_plan,
        when="next_period",
        reason="Customer upgrade",
        actor=finance,
        key=new_key(),
        now=NOW,
    )
    this_period, _ = report_call(report=call(account, 60), now=NOW)

    subscription = Subscription.objects.get(account=account)
    assert (subscription.plan.code, subscription.pending_plan) == ("voice-prepaid", dearer_plan)
    assert this_period.cost_micros == 80_000
    assert (outcome.record.before, outcome.record.after) == (
        {"plan": "voice-prepaid", "pending_plan": None},
        {"plan": "voice-prepaid", "pending_plan": "voice-prepaid-plus", "when": "next_period"},
    )
    period_end = subscription.current_period_end
    close_periods(now=period_end)
    next_period, _ = report_call(
        report=call(account, 60, connected_at=period_end + timedelta(hours=1)),
        now=period_end + timedelta(hours=2),
    )
    subscription.refresh_from_db()
    assert (subscription.plan, subscription.pending_plan) == (dearer_plan, None)
    assert next_period.cost_micros == 120_000
    assert Call.objects.get(pk=this_period.pk).cost_micros == 80_000


def test_a_plan_change_now_prices_later_usage_at_the_new_plan_and_keeps_past_costs(
    finance, make_account, dearer_plan
):
    account = make_account(credit_micros=10 * USD)
    before_change, _ = report_call(report=call(account, 60), now=NOW)
    ledger_before = ledger_rows(account)

    outcome = staff.change_plan(
        account=account,
        plan=dearer_plan,
        when="now",
        reason="Customer upgrade",
        actor=finance,
        key=new_key(),
        now=NOW,
    )
    after_change, _ = report_call(
        report=call(account, 60, connected_at=NOW + timedelta(minutes=1)),
        now=NOW + timedelta(minutes=5),
    )

    subscription = Subscription.objects.get(account=account)
    assert (subscription.plan, subscription.pending_plan) == (dearer_plan, None)
    assert after_change.cost_micros == 120_000
    assert Call.objects.get(pk=before_change.pk).cost_micros == 80_000
    assert ledger_rows(account)[: len(ledger_before)] == ledger_before
    assert balance(account) == 10 * USD - 80_000 - 120_000
    assert outcome.record.after == {
        "plan": "voice-prepaid-plus",
        "pending_plan": None,
        "when": "now",
    }


def test_a_plan_change_now_to_the_same_plan_is_refused(finance, make_account, plans):
    account = make_account()

    with pytest.raises(StaffActionError, match="already"):
        staff.change_plan(
            account=account,
            plan=plans["voice-prepaid"],
            when="now",
            reason="r",
            actor=finance,
            key=new_key(),
            now=NOW,
        )


def test_a_new_rate_from_a_later_date_leaves_past_charges_alone_and_prices_later_calls(
    make_account, plans
):
    account = make_account(credit_micros=10 * USD)
    earlier, _ = report_call(report=call(account, 60), now=NOW)
    ledger_before = ledger_rows(account)

    Rate.objects.create(
        plan=plans["voice-prepaid"],
        component=RateComponent.CALL,
        price=Decimal("0.10"),
        effective_from=NOW,
    )
    later, _ = report_call(
        report=call(account, 60, connected_at=NOW + timedelta(hours=1)),
        now=NOW + timedelta(hours=2),
    )

    assert Call.objects.get(pk=earlier.pk).cost_micros == 80_000
    assert later.cost_micros == 100_000
    assert ledger_rows(account)[: len(ledger_before)] == ledger_before


# Included minutes and rollover across a plan change (S2, U9) -------------------------------------
# voice-payg has no included minutes and no rollover; voice-enterprise has 6,000 minutes a period
# and rollover. Their rates are the same: a 600 s gpt-4o call is 10 minutes at 0.05 + 0.09.
# The account opens on 15 March, so its periods start on the 15th.

TEN_MINUTES_MICROS = 10 * (50_000 + 90_000)
SECOND_PERIOD = datetime(2026, 4, 15, tzinfo=UTC)
THIRD_PERIOD = datetime(2026, 5, 15, tzinfo=UTC)


def move(account, plan, when, actor, now=NOW):
    staff.change_plan(
        account=account, plan=plan, when=when, reason="r", actor=actor, key=new_key(), now=now
    )


def ten_minute_call(account, at):
    result, _ = report_call(
        report=call(account, 600, llm="gpt-4o", connected_at=at), now=at + timedelta(hours=1)
    )
    return result.cost_micros


def allowance_row(account, start):
    row = Allowance.objects.get(account=account, period_start=start)
    return (row.included_seconds, row.rollover_seconds, row.used_seconds)


def test_a_move_now_to_included_minutes_gives_them_from_the_next_period_with_rollover(
    finance, make_account, plans
):
    account = make_account("voice-payg")

    move(account, plans["voice-enterprise"], "now", finance)
    this_period = ten_minute_call(account, NOW + timedelta(hours=1))
    close_periods(now=SECOND_PERIOD)
    second_period = ten_minute_call(account, SECOND_PERIOD + timedelta(hours=1))
    close_periods(now=THIRD_PERIOD)

    # The period began without included minutes and keeps none: the call is paid.
    assert this_period == TEN_MINUTES_MICROS
    assert allowance_row(account, datetime(2026, 3, 15, tzinfo=UTC)) == (0, 0, 0)
    assert second_period == 0
    assert allowance_row(account, SECOND_PERIOD) == (360_000, 0, 600)
    assert Subscription.objects.get(account=account).rollover_enabled
    assert allowance_row(account, THIRD_PERIOD) == (360_000, 359_400, 0)


def test_a_move_now_away_from_included_minutes_keeps_them_until_the_period_ends(
    finance, make_account, plans
):
    account = make_account("voice-enterprise")
    before = ten_minute_call(account, NOW - timedelta(hours=2))

    move(account, plans["voice-payg"], "now", finance)
    this_period = ten_minute_call(account, NOW + timedelta(hours=1))
    close_periods(now=SECOND_PERIOD)
    second_period = ten_minute_call(account, SECOND_PERIOD + timedelta(hours=1))

    assert (before, this_period) == (0, 0)
    assert allowance_row(account, datetime(2026, 3, 15, tzinfo=UTC)) == (360_000, 0, 1200)
    # The new plan's allowance (none) and its rollover setting (off) from the next period.
    assert second_period == TEN_MINUTES_MICROS
    assert not Allowance.objects.filter(account=account, period_start=SECOND_PERIOD).exists()
    assert not Subscription.objects.get(account=account).rollover_enabled


def test_a_move_now_away_from_included_minutes_pays_only_past_what_is_left_of_them(
    finance, make_account, plans
):
    account = make_account("voice-enterprise")
    Allowance.objects.filter(account=account).update(used_seconds=360_000 - 50)

    move(account, plans["voice-payg"], "now", finance)
    result, _ = report_call(
        report=call(account, 125, llm="gpt-4o", connected_at=NOW + timedelta(hours=1)),
        now=NOW + timedelta(hours=2),
    )

    assert result.allowance_seconds == 50
    # 75 paid seconds: one aggregated minute at 0.05 + 0.09, 15 s carried.
    assert result.cost_micros == 140_000


def test_a_move_to_included_minutes_next_period_gives_them_and_rollover_from_then(
    finance, make_account, plans
):
    account = make_account("voice-payg")

    move(account, plans["voice-enterprise"], "next_period", finance)
    this_period = ten_minute_call(account, NOW + timedelta(hours=1))
    close_periods(now=SECOND_PERIOD)
    second_period = ten_minute_call(account, SECOND_PERIOD + timedelta(hours=1))
    close_periods(now=THIRD_PERIOD)

    assert this_period == TEN_MINUTES_MICROS
    assert second_period == 0
    assert allowance_row(account, SECOND_PERIOD) == (360_000, 0, 600)
    assert Subscription.objects.get(account=account).rollover_enabled
    assert allowance_row(account, THIRD_PERIOD) == (360_000, 359_400, 0)


def test_a_move_away_from_included_minutes_next_period_ends_them_and_rollover_then(
    finance, make_account, plans
):
    account = make_account("voice-enterprise")

    move(account, plans["voice-payg"], "next_period", finance)
    this_period = ten_minute_call(account, NOW + timedelta(hours=1))
    close_periods(now=SECOND_PERIOD)
    second_period = ten_minute_call(account, SECOND_PERIOD + timedelta(hours=1))

    assert this_period == 0
    assert second_period == TEN_MINUTES_MICROS
    assert not Allowance.objects.filter(account=account, period_start=SECOND_PERIOD).exists()
    assert not Subscription.objects.get(account=account).rollover_enabled


def test_a_move_now_to_a_plan_rated_before_the_lock_still_uses_the_minutes_left(
    finance, make_account, plans
):
    account = make_account("voice-enterprise")  # postpaid, nothing unbilled yet

    move(account, plans["voice-prepaid"], "now", finance)
    result, _ = report_call(
        report=call(account, 60, connected_at=NOW + timedelta(hours=1)),
        now=NOW + timedelta(hours=2),
    )

    assert (result.allowance_seconds, result.cost_micros) == (60, 0)
    assert allowance_row(account, datetime(2026, 3, 15, tzinfo=UTC)) == (360_000, 0, 60)
