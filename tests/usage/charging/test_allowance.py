"""Included allowance on voice-enterprise: 6,000 minutes a period, overage, rollover (SPEC U9)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from billing.invoicing.period_close import close_periods
from billing.models import Allowance, EntryKind, Invoice, Subscription, UnbilledLine
from billing.plans.allowances import current_allowance
from tests.conftest import NOW
from tests.usage.metering import (
    balance,
    call,
    carries,
    chat,
    concurrent,
    entries,
    in_processes,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.models import UsageRollup
from usage.selectors import usage_summary

INCLUDED_SECONDS = 6000 * 60
# The account opens on 15 March (NOW), so its periods run from the 15th to the 15th.
NEXT_PERIOD = datetime(2026, 4, 15, tzinfo=UTC)


@pytest.fixture
def enterprise(make_account):
    return make_account("voice-enterprise")


def allowance_of(account, now=NOW) -> Allowance:
    subscription = Subscription.objects.select_related("plan").get(account=account)
    return current_allowance(account=account, subscription=subscription, now=now)


def use_allowance(account, seconds, now=NOW):
    allowance = allowance_of(account, now)
    Allowance.objects.filter(pk=allowance.pk).update(used_seconds=seconds)


def test_usage_within_the_allowance_costs_nothing_and_is_recorded_as_allowance_seconds(
    enterprise,
):
    result, _ = report_call(report=call(enterprise, 125, llm="gpt-4o"), now=NOW)

    assert result.billable_seconds == 125
    assert result.allowance_seconds == 125
    assert result.cost_micros == 0
    assert result.explanation["paid_seconds"] == 0
    assert entries(enterprise) == []
    assert allowance_of(enterprise).used_seconds == 125
    row = UsageRollup.objects.get(account=enterprise, is_line=False, component="call")
    assert (row.quantity, row.allowance_seconds, row.cost_micros) == (125, 125, 0)
    summary = usage_summary(account=enterprise, now=NOW)
    assert summary["allowance_minutes"] == "6000.00"
    assert summary["allowance_used_minutes"] == "2.08"


def test_the_call_crossing_the_allowance_pays_only_the_overage(enterprise):
    use_allowance(enterprise, INCLUDED_SECONDS - 50)

    result, _ = report_call(report=call(enterprise, 125, llm="gpt-4o"), now=NOW)

    assert result.allowance_seconds == 50
    assert result.explanation["paid_seconds"] == 75
    # Minute aggregation: 75 paid seconds are one billed minute and 15 carried seconds.
    assert result.explanation["billing_events"] == {"llm:gpt-4o": 1, "voice_engine": 1}
    assert carries(enterprise) == {("llm", "gpt-4o"): 15, ("voice_engine", ""): 15}
    assert result.cost_micros == 50_000 + 90_000
    assert allowance_of(enterprise).used_seconds == INCLUDED_SECONDS
    assert [e.amount_micros for e in entries(enterprise, EntryKind.USAGE)] == [-140_000]


def test_once_the_allowance_is_used_up_every_second_is_paid(enterprise):
    use_allowance(enterprise, INCLUDED_SECONDS)

    result, _ = report_call(report=call(enterprise, 120, llm="gpt-4o"), now=NOW)

    assert result.allowance_seconds == 0
    assert result.cost_micros == 2 * 140_000
    assert balance(enterprise) == -280_000


def test_chat_minutes_are_taken_from_the_allowance_too(enterprise):
    [result] = ingest_events(reports=[chat(enterprise, 12)], now=NOW)

    assert result.cost_micros == 0
    assert allowance_of(enterprise).used_seconds == 2 * 60
    assert carries(enterprise) == {("chat", ""): 2}


def test_with_rollover_the_next_period_gets_the_unused_allowance(enterprise):
    use_allowance(enterprise, 1000 * 60)  # 5,000 of the 6,000 minutes left unused
    later = NEXT_PERIOD + timedelta(days=1)

    result, _ = report_call(
        report=call(enterprise, 60, llm="gpt-4o", connected_at=later - timedelta(hours=1)),
        now=later,
    )

    assert result.cost_micros == 0
    allowance = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    assert allowance.included_seconds == INCLUDED_SECONDS
    assert allowance.rollover_seconds == 5000 * 60
    assert allowance.used_seconds == 60
    summary = usage_summary(account=enterprise, now=later)
    assert summary["allowance_minutes"] == "11000.00"
    assert summary["allowance_remaining_minutes"] == "10999.00"


def test_without_rollover_unused_allowance_expires_at_period_end(enterprise):
    Subscription.objects.filter(account=enterprise).update(rollover_enabled=False)
    use_allowance(enterprise, 60)
    later = NEXT_PERIOD + timedelta(days=1)

    allowance = allowance_of(enterprise, later)

    assert allowance.period_start == NEXT_PERIOD
    assert (allowance.included_seconds, allowance.rollover_seconds) == (INCLUDED_SECONDS, 0)


def test_an_allowance_row_is_created_once_per_period(enterprise):
    first = allowance_of(enterprise)
    again = allowance_of(enterprise, NOW + timedelta(days=5))

    assert first.pk == again.pk
    assert (first.period_start, first.period_end) == (
        datetime(2026, 3, 15, tzinfo=UTC),
        NEXT_PERIOD,
    )


# Late usage (U9, U10): the allowance of the period the item happened in -------------------------

LATE = NEXT_PERIOD - timedelta(hours=1)  # the last hour of the first period
REPORTED = NEXT_PERIOD + timedelta(days=1)  # in the next period


def test_a_late_call_uses_what_is_left_of_the_allowance_of_its_own_period(enterprise):
    use_allowance(enterprise, INCLUDED_SECONDS - 50)

    result, _ = report_call(
        report=call(enterprise, 125, llm="gpt-4o", connected_at=LATE), now=REPORTED
    )

    assert result.allowance_seconds == 50
    assert result.explanation["paid_seconds"] == 75
    assert result.cost_micros == 140_000  # one aggregated minute at 0.05 + 0.09, 15 s carried
    assert allowance_of(enterprise).used_seconds == INCLUDED_SECONDS
    # The period it was reported in keeps all of its minutes.
    assert not Allowance.objects.filter(account=enterprise, period_start=NEXT_PERIOD).exists()


def test_a_late_call_of_a_closed_period_uses_its_minutes_and_takes_them_from_the_rollover(
    enterprise,
):
    # Issue 14 item 15: 10 of 6,000 minutes used, the period closed, a 60 s call of that period
    # reported the next day.
    use_allowance(enterprise, 10 * 60)
    close_periods(now=NEXT_PERIOD + timedelta(hours=1))  # 5,990 minutes roll over
    following = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    rolled_over = following.rollover_seconds

    result, _ = report_call(
        report=call(enterprise, 60, llm="gpt-4o", connected_at=LATE), now=REPORTED
    )

    assert result.allowance_seconds == 60
    assert result.cost_micros == 0
    assert allowance_of(enterprise).used_seconds == 10 * 60 + 60
    # The minute it used had rolled over: the next period no longer has it.
    following.refresh_from_db()
    assert (following.rollover_seconds, following.used_seconds) == (rolled_over - 60, 0)
    assert entries(enterprise, EntryKind.USAGE) == []
    # The next invoice states the included part, naming the period whose minutes it used.
    [line] = UnbilledLine.objects.filter(account=enterprise)
    assert (line.component, line.model, line.quantity, line.amount_micros) == (
        "allowance",
        "2026-03-15",
        60,
        0,
    )


def test_a_late_call_takes_back_only_rolled_over_minutes_the_next_period_has_not_used(
    enterprise,
):
    use_allowance(enterprise, INCLUDED_SECONDS - 120)  # 120 s left, all rolled over
    close_periods(now=NEXT_PERIOD + timedelta(hours=1))
    following = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    # The next period has used all but 45 s of its own and the rolled-over minutes.
    Allowance.objects.filter(pk=following.pk).update(used_seconds=following.total_seconds - 45)

    result, _ = report_call(
        report=call(enterprise, 120, llm="gpt-4o", connected_at=LATE), now=REPORTED
    )

    assert result.allowance_seconds == 45
    assert result.explanation["paid_seconds"] == 75
    following.refresh_from_db()
    assert following.remaining_seconds == 0
    assert following.rollover_seconds == 120 - 45
    assert allowance_of(enterprise).used_seconds == INCLUDED_SECONDS - 120 + 45


def test_without_rollover_a_late_call_uses_what_expired_and_leaves_the_next_period_alone(
    enterprise,
):
    Subscription.objects.filter(account=enterprise).update(rollover_enabled=False)
    use_allowance(enterprise, 10 * 60)
    close_periods(now=NEXT_PERIOD + timedelta(hours=1))

    result, _ = report_call(
        report=call(enterprise, 60, llm="gpt-4o", connected_at=LATE), now=REPORTED
    )

    assert (result.allowance_seconds, result.cost_micros) == (60, 0)
    following = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    assert (following.rollover_seconds, following.used_seconds) == (0, 0)
    assert allowance_of(enterprise).used_seconds == 10 * 60 + 60


def test_a_late_call_after_the_next_period_s_allowance_started_uses_its_own_period_s_minutes(
    enterprise,
):
    use_allowance(enterprise, 1000 * 60)
    # Before period close: the next period's first call makes its row, rolling over 5,000 min.
    report_call(report=call(enterprise, 60, llm="gpt-4o", connected_at=REPORTED), now=REPORTED)

    result, _ = report_call(
        report=call(enterprise, 120, llm="gpt-4o", connected_at=LATE), now=REPORTED
    )

    assert (result.allowance_seconds, result.cost_micros) == (120, 0)
    assert allowance_of(enterprise).used_seconds == 1000 * 60 + 120
    following = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    assert (following.rollover_seconds, following.used_seconds) == (5000 * 60 - 120, 60)


def test_the_invoice_after_a_late_call_states_its_included_minutes_with_their_period(enterprise):
    use_allowance(enterprise, 10 * 60)
    close_periods(now=NEXT_PERIOD + timedelta(hours=1))
    report_call(report=call(enterprise, 60, llm="gpt-4o", connected_at=LATE), now=REPORTED)
    report_call(report=call(enterprise, 30, llm="gpt-4o", connected_at=REPORTED), now=REPORTED)

    close_periods(now=datetime(2026, 5, 15, 1, tzinfo=UTC))

    invoice = Invoice.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    lines = {
        line.description: line.quantity for line in invoice.lines.filter(component="allowance")
    }
    assert lines == {
        "Included minutes used": 30,
        "Included minutes used, of the period from 2026-03-15": 60,
    }
    assert invoice.total_micros == 0


def test_chat_in_one_batch_uses_the_allowance_of_each_message_s_period(enterprise):
    use_allowance(enterprise, INCLUDED_SECONDS)  # the first period's minutes are used up

    late, current = ingest_events(
        reports=[chat(enterprise, 5, occurred_at=LATE), chat(enterprise, 5, occurred_at=REPORTED)],
        now=REPORTED,
    )

    assert late.cost_micros == 90_000  # one chat minute at 0.09, paid
    assert current.cost_micros == 0
    assert allowance_of(enterprise).used_seconds == INCLUDED_SECONDS
    assert allowance_of(enterprise, REPORTED).used_seconds == 60


def test_a_late_call_of_a_period_without_a_row_that_the_next_row_follows_is_paid(enterprise):
    # The first period has no row (it used none of its minutes), and the next period's first
    # call made that period's row, which took all of them over: none are left to use again.
    Allowance.objects.filter(account=enterprise).delete()
    report_call(report=call(enterprise, 60, llm="gpt-4o", connected_at=REPORTED), now=REPORTED)

    result, _ = report_call(
        report=call(enterprise, 60, llm="gpt-4o", connected_at=LATE), now=REPORTED
    )

    assert result.allowance_seconds == 0
    assert not Allowance.objects.filter(account=enterprise, period_start__lt=NEXT_PERIOD).exists()
    following = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    assert (following.rollover_seconds, following.used_seconds) == (INCLUDED_SECONDS, 60)


# The next period's row made before period close is the one period close would make -------------


def next_period_row(account) -> tuple[int, int]:
    row = Allowance.objects.get(account=account, period_start=NEXT_PERIOD)
    return row.included_seconds, row.rollover_seconds


def test_usage_of_the_next_period_before_close_gets_the_scheduled_plan_s_minutes(
    make_account, plans
):
    early, closed = make_account("voice-payg"), make_account("voice-payg")
    Subscription.objects.filter(account__in=[early, closed]).update(
        pending_plan=plans["voice-enterprise"]
    )

    result, _ = report_call(
        report=call(early, 60, llm="gpt-4o", connected_at=REPORTED), now=REPORTED
    )
    close_periods(now=REPORTED)

    assert (result.allowance_seconds, result.cost_micros) == (60, 0)
    assert next_period_row(early) == next_period_row(closed) == (INCLUDED_SECONDS, 0)


def test_a_period_without_a_row_rolls_over_the_same_before_and_at_period_close(make_account):
    early, closed = make_account("voice-enterprise"), make_account("voice-enterprise")
    # A period with included minutes but no row used none of them.
    Allowance.objects.filter(account__in=[early, closed]).delete()

    report_call(report=call(early, 60, llm="gpt-4o", connected_at=REPORTED), now=REPORTED)
    close_periods(now=REPORTED)

    assert next_period_row(early) == next_period_row(closed) == (INCLUDED_SECONDS,) * 2


# A late and a current item racing for the same minutes (PostgreSQL row lock) ---------------------


def _report_in_child(report):
    result, _ = report_call(report=report, now=REPORTED)
    return result.allowance_seconds, result.explanation["paid_seconds"]


@concurrent
def test_a_late_and_a_current_call_at_once_never_use_the_same_included_minutes(
    transactional_db, make_account
):
    if connection.vendor != "postgresql":
        pytest.skip("Row locks: PostgreSQL only (SQLite serializes every writer).")
    enterprise = make_account("voice-enterprise")
    use_allowance(enterprise, INCLUDED_SECONDS - 90)  # 90 s left, all rolled over
    close_periods(now=NEXT_PERIOD + timedelta(hours=1))
    following = Allowance.objects.get(account=enterprise, period_start=NEXT_PERIOD)
    Allowance.objects.filter(pk=following.pk).update(used_seconds=following.included_seconds)
    reports = [
        call(enterprise, 60, llm="gpt-4o", connected_at=LATE),
        call(enterprise, 60, llm="gpt-4o", connected_at=REPORTED),
    ]

    outcomes = in_processes(_report_in_child, [(report,) for report in reports])

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    covered = [outcome[1][0] for outcome in outcomes]
    # Either order gives one call 60 s and the other the last 30 s of the 90 s left.
    assert sorted(covered) == [30, 60]
    following.refresh_from_db()
    assert following.remaining_seconds == 0
    assert following.rollover_seconds == 90 - covered[0]
    assert allowance_of(enterprise).used_seconds == INCLUDED_SECONDS - 90 + covered[0]
