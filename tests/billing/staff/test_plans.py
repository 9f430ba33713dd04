"""Plan changes by staff, and new rates, never rewrite past charges (SPEC S2)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import staff
from billing.models import Rate, RateComponent, Subscription
from billing.period_close import close_periods
from billing.staff import StaffActionError
from tests.billing.staff.scenery import ledger_rows
from tests.billing.staff_data import USD, balance, new_key
from tests.conftest import NOW
from tests.usage.metering import call
from usage.calls import report_call
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
