"""Rating and charging calls: seconds, rounding, outcomes, transfers, rates (SPEC U1-U4, S1)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import CreditGrant, EntryKind, Plan, Rate, RateComponent, UnbilledLine
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM
from tests.billing.postings import post_entry
from tests.conftest import NOW
from tests.usage.metering import (
    CONNECTED_AT,
    USD,
    balance,
    call,
    carries,
    entries,
    everything_written,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.ingest.calls import report_call
from usage.models import Call
from usage.rating.rules import call_seconds
from usage.reports import CallReport, Conflict, UsageError
from usage.selectors import pricing_for


@pytest.fixture
def prepaid(make_account):
    return make_account("voice-prepaid", credit_micros=20 * USD)


@pytest.fixture
def payg(make_account):
    return make_account("voice-payg")


def report(report_, now=NOW):
    call_, _ = report_call(report=report_, now=now)
    return call_


# Per-second billing and rounding (U1) ---------------------------------------------------------


def test_83_seconds_at_8_cents_a_minute_on_voice_prepaid_cost_110667_micros(prepaid):
    result = report(call(prepaid, 83))

    assert result.billable_seconds == 83
    assert result.cost_micros == 110_667  # 83 x 0.08 / 60 = 0.110666... USD, half-up
    assert result.charged_micros == 110_667
    assert result.uncollected_micros == 0
    assert balance(prepaid) == 20 * USD - 110_667
    [usage] = entries(prepaid, EntryKind.USAGE)
    assert usage.amount_micros == -110_667
    assert usage.cause == result
    assert result.ledger_entry == usage
    [line] = result.explanation["lines"]
    assert line == {
        "component": "call",
        "key": "",
        "quantity": 83,
        "unit": "second",
        "rate": "0.0800000000",
        "exact": line["exact"],
        "amount": "0.110667",
    }
    assert Decimal(line["exact"]) == Decimal(83) * Decimal("0.08") / 60
    assert result.explanation["raw"]["rounding"] == "rounded to the nearest second"
    assert result.explanation["cost"] == "0.110667"


@pytest.mark.parametrize(
    ("seconds", "billed", "cost_micros"),
    [
        ("83.4", 83, 110_667),
        ("83.499", 83, 110_667),
        ("83.5", 84, 112_000),
        ("82.5", 83, 110_667),  # half a second goes up, not to the even second
    ],
)
def test_voice_prepaid_rounds_to_the_nearest_second(prepaid, seconds, billed, cost_micros):
    result = report(call(prepaid, seconds))

    assert result.billable_seconds == billed
    assert result.cost_micros == cost_micros


@pytest.mark.parametrize(("seconds", "billed"), [("83.001", 84), ("83.000", 83), ("83.999", 84)])
def test_voice_payg_rounds_milliseconds_up(payg, seconds, billed):
    result = report(call(payg, seconds, llm="gpt-4o"))

    assert result.billable_seconds == billed
    assert result.explanation["raw"]["rounding"] == "milliseconds rounded up to the second"


def test_every_millisecond_duration_is_rounded_exactly_on_both_rounding_plans(plans):
    # Integer arithmetic, not floats: 1.001 s is 1001 ms, and rounding up makes it 2 s.
    for milliseconds in range(0, 130_000, 7):
        report_ = CallReport(
            call_id="c",
            account="a",
            status="completed",
            connected_at=CONNECTED_AT,
            ended_at=CONNECTED_AT + timedelta(milliseconds=milliseconds),
        )
        up, _ = call_seconds(report=report_, plan=plans["voice-payg"])
        nearest, _ = call_seconds(report=report_, plan=plans["voice-prepaid"])
        assert up == -(-milliseconds // 1000), milliseconds
        assert nearest == (milliseconds + 500) // 1000, milliseconds


# Minute aggregation (U4) ----------------------------------------------------------------------


def test_four_calls_of_125_seconds_in_total_on_voice_payg_give_two_billing_events_per_component(
    payg,
):
    calls = [report(call(payg, s, llm="gpt-4o")) for s in (30, 30, 30, 35)]

    events = [c.explanation["billing_events"] for c in calls]
    assert events == [
        {"llm:gpt-4o": 0, "voice_engine": 0},
        {"llm:gpt-4o": 1, "voice_engine": 1},
        {"llm:gpt-4o": 0, "voice_engine": 0},
        {"llm:gpt-4o": 1, "voice_engine": 1},
    ]
    minutes = {}
    for c in calls:
        for line in c.explanation["lines"]:
            assert line["unit"] == "minute"
            minutes[line["component"]] = minutes.get(line["component"], 0) + line["quantity"]
    assert minutes == {"llm": 2, "voice_engine": 2}
    assert sum(c.billable_seconds for c in calls) == 125
    # Two minutes of gpt-4o (0.05) and of the voice engine (0.09), postpaid: owed, not paid.
    assert sum(c.cost_micros for c in calls) == 2 * (50_000 + 90_000)
    assert balance(payg) == -280_000


def test_four_calls_of_125_seconds_on_voice_payg_carry_5_seconds_per_component(payg):
    calls = [report(call(payg, s, llm="gpt-4o")) for s in (30, 30, 30, 35)]

    assert carries(payg) == {("llm", "gpt-4o"): 5, ("voice_engine", ""): 5}
    assert calls[-1].explanation["carried_seconds"] == {"llm:gpt-4o": 5, "voice_engine": 5}


def test_the_next_call_uses_the_carried_seconds(payg):
    for s in (30, 30, 30, 35):
        report(call(payg, s, llm="gpt-4o"))

    following = report(call(payg, 55, llm="gpt-4o"))

    assert following.explanation["billing_events"] == {"llm:gpt-4o": 1, "voice_engine": 1}
    assert following.cost_micros == 140_000
    assert carries(payg) == {("llm", "gpt-4o"): 0, ("voice_engine", ""): 0}


# Outcomes (U2) --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["no_answer", "hangup_on_voicemail"])
def test_unanswered_calls_bill_a_flat_5_seconds_on_voice_payg(payg, status):
    result = report(call(payg, 40, status=status, llm="gpt-4o"))

    assert result.billable_seconds == 5
    assert result.explanation["raw"]["rule"] == f"{status} calls are billed a flat 5 s"
    # Minute aggregation: the 5 s wait in the carry for the next whole minute.
    assert carries(payg) == {("llm", "gpt-4o"): 5, ("voice_engine", ""): 5}


@pytest.mark.parametrize("status", ["no_answer", "hangup_on_voicemail"])
def test_unanswered_outbound_calls_are_free_on_credits_monthly(make_account, status):
    # The example plan bills unanswered calls 0 s; with 5 s (as the voice plans) an outbound
    # one would cost 8,333 micros if the flat seconds came before the outbound rule.
    Plan.objects.filter(code="credits-monthly").update(unanswered_flat_seconds=5)
    account = make_account("credits-monthly", credit_micros=10 * USD)
    before = balance(account)

    result = report(call(account, 40, status=status, direction="outbound"))

    assert result.billable_seconds == 0
    assert result.cost_micros == 0
    assert result.explanation["raw"]["rule"] == "outbound calls are free on this plan"
    assert entries(account, EntryKind.USAGE) == []
    assert balance(account) == before


@pytest.mark.parametrize("status", ["no_answer", "hangup_on_voicemail"])
def test_unanswered_outbound_calls_bill_a_flat_5_seconds_where_outbound_is_not_free(payg, status):
    result = report(call(payg, 40, status=status, direction="outbound", llm="gpt-4o"))

    assert result.billable_seconds == 5
    assert result.explanation["raw"]["rule"] == f"{status} calls are billed a flat 5 s"
    assert carries(payg) == {("llm", "gpt-4o"): 5, ("voice_engine", ""): 5}


def test_twelve_unanswered_calls_on_voice_payg_make_one_billed_minute(payg):
    calls = [report(call(payg, 0, status="no_answer", llm="gpt-4o")) for _ in range(12)]

    assert sum(c.billable_seconds for c in calls) == 60
    assert sum(c.cost_micros for c in calls) == 140_000
    assert calls[-1].cost_micros == 140_000


@pytest.mark.parametrize("status", ["failed", "spam"])
def test_failed_and_spam_calls_are_free(payg, prepaid, status):
    for account in (payg, prepaid):
        result = report(call(account, 300, status=status, llm="gpt-4o"))

        assert result.billable_seconds == 0
        assert result.cost_micros == 0
        assert result.charged_at == NOW
        assert entries(account, EntryKind.USAGE) == []
    assert carries(payg) == {}


@pytest.mark.parametrize("status", ["in_progress", "paused"])
def test_in_progress_and_paused_calls_are_recorded_but_not_charged(prepaid, status):
    _, changed = report_call(
        report=call(prepaid, call_id="live-1", status=status, ended_at=None), now=NOW
    )

    assert changed
    stored = Call.objects.get(call_id="live-1")
    assert stored.status == status
    assert stored.cost_micros == 0
    assert stored.charged_at is None
    assert entries(prepaid, EntryKind.USAGE) == []
    assert balance(prepaid) == 20 * USD


def test_a_call_is_charged_once_at_its_first_final_state(prepaid):
    report_call(report=call(prepaid, call_id="c1", status="in_progress", ended_at=None), now=NOW)
    report_call(report=call(prepaid, call_id="c1", status="paused", ended_at=None), now=NOW)
    report_call(report=call(prepaid, call_id="c1", status="in_progress", ended_at=None), now=NOW)

    final, changed = report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)

    assert changed
    assert final.status == "completed"
    assert final.cost_micros == 110_667
    assert [e.amount_micros for e in entries(prepaid, EntryKind.USAGE)] == [-110_667]


def test_an_identical_repeat_of_a_final_report_returns_unchanged_with_no_second_charge(prepaid):
    first, _ = report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)
    before = everything_written()

    again, changed = report_call(
        report=call(prepaid, 83, call_id="c1"), now=NOW + timedelta(minutes=5)
    )

    assert not changed
    assert again.pk == first.pk
    assert again.cost_micros == 110_667
    assert again.charged_at == NOW
    assert everything_written() == before
    assert len(entries(prepaid, EntryKind.USAGE)) == 1


@pytest.mark.parametrize(
    "difference",
    [
        {"status": "failed"},
        {"ended_at": CONNECTED_AT + timedelta(seconds=84)},
        {"hold_seconds": Decimal(3)},
        {"destination": "+442079460000"},
        {"direction": "outbound"},
        {"status": "in_progress", "ended_at": None},
    ],
    ids=["status", "ended_at", "hold", "destination", "direction", "back-to-in-progress"],
)
def test_a_different_final_report_raises_conflict_and_writes_nothing(prepaid, difference):
    report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)
    before = everything_written()

    with pytest.raises(Conflict) as raised:
        report_call(report=call(prepaid, 83, call_id="c1", **difference), now=NOW)

    assert raised.value.status == 409
    assert everything_written() == before
    assert balance(prepaid) == 20 * USD - 110_667


def test_the_same_call_id_for_another_account_is_a_conflict(prepaid, make_account):
    other = make_account("voice-prepaid", credit_micros=20 * USD)
    report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)
    before = everything_written()

    with pytest.raises(Conflict):
        report_call(report=call(other, 83, call_id="c1"), now=NOW)

    assert everything_written() == before


# Transfers, hold, direction, destinations (U1, U3) -------------------------------------------


def test_a_transferred_call_stops_billing_at_transferred_at(prepaid):
    result = report(
        call(
            prepaid,
            600,
            status="transferred",
            transferred_at=CONNECTED_AT + timedelta(seconds=83),
        )
    )

    assert result.billable_seconds == 83
    assert result.cost_micros == 110_667
    assert "transfer" in result.explanation["raw"]["rule"]


def test_a_completed_call_with_a_transfer_stops_billing_at_transferred_at(prepaid):
    # The platform may report the call's final status as completed after a transfer: the
    # time after the transfer is free whatever the status says.
    result = report(call(prepaid, 600, transferred_at=CONNECTED_AT + timedelta(seconds=83)))

    assert result.billable_seconds == 83
    assert result.cost_micros == 110_667
    assert result.explanation["raw"]["rule"] == (
        "connect to transfer (time after a transfer is free)"
    )
    assert [e.amount_micros for e in entries(prepaid, EntryKind.USAGE)] == [-110_667]


def test_a_transfer_at_the_moment_the_call_ends_bills_to_the_end(prepaid):
    result = report(call(prepaid, 83, transferred_at=CONNECTED_AT + timedelta(seconds=83)))

    assert result.billable_seconds == 83
    assert result.cost_micros == 110_667


def test_hold_seconds_are_subtracted_from_the_billed_time(prepaid):
    result = report(call(prepaid, 120, hold_seconds=Decimal("37.000")))

    assert result.billable_seconds == 83
    assert result.cost_micros == 110_667
    assert "37" in result.explanation["raw"]["rule"]


def test_outbound_calls_are_free_on_credits_monthly(make_account):
    account = make_account("credits-monthly", credit_micros=10 * USD)
    before = balance(account)

    outbound = report(call(account, 600, direction="outbound"))
    inbound = report(call(account, 60, direction="inbound"))

    assert outbound.billable_seconds == 0
    assert outbound.cost_micros == 0
    assert outbound.explanation["raw"]["rule"] == "outbound calls are free on this plan"
    assert inbound.cost_micros == 100_000  # 0.10 USD per minute
    assert balance(account) == before - 100_000


@pytest.mark.parametrize(
    ("destination", "prefix", "surcharge_micros"),
    [
        ("+442071234567", "+4420", 20_000),
        ("+44 20 7946 0000", "+4420", 20_000),
        ("0044 20 7946 0000", "+4420", 20_000),
        ("+447911123456", "+44", 30_000),
        ("+14155550100", None, 0),
    ],
)
def test_the_destination_surcharge_uses_the_longest_matching_prefix(
    payg, destination, prefix, surcharge_micros
):
    result = report(call(payg, 60, llm="gpt-4o", destination=destination))

    destination_lines = [
        line for line in result.explanation["lines"] if line["component"] == "destination"
    ]
    if prefix is None:
        assert destination_lines == []
    else:
        [line] = destination_lines
        assert line["key"] == prefix
    assert result.cost_micros == 50_000 + 90_000 + surcharge_micros


def test_a_custom_account_rate_wins_over_the_plans_rate(prepaid, make_account):
    Rate.objects.create(
        account=prepaid,
        component=RateComponent.CALL,
        price=Decimal("0.06"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )
    other = make_account("voice-prepaid", credit_micros=20 * USD)

    custom = report(call(prepaid, 83))
    standard = report(call(other, 83))

    assert custom.cost_micros == 83_000  # 83 x 0.06 / 60
    assert standard.cost_micros == 110_667
    [rate] = [r for r in pricing_for(account=prepaid, now=NOW)["rates"] if r["component"] == "call"]
    assert (rate["price"], rate["custom"]) == ("0.06", True)


def test_a_rate_with_a_later_effective_from_does_not_change_earlier_calls(prepaid):
    changed_at = NOW - timedelta(hours=2)
    early = report(call(prepaid, 83, connected_at=changed_at - timedelta(hours=1)))
    early_entry = early.ledger_entry

    Rate.objects.create(
        plan=prepaid.subscription.plan,
        component=RateComponent.CALL,
        price=Decimal("0.12"),
        effective_from=changed_at,
    )
    after = report(call(prepaid, 83, connected_at=changed_at + timedelta(minutes=1)))
    # Reported after the change, but it happened before it: the old price (S1).
    late = report(call(prepaid, 83, connected_at=changed_at - timedelta(minutes=30)))

    early.refresh_from_db()
    assert early.cost_micros == 110_667
    assert early.ledger_entry == early_entry
    assert early_entry.amount_micros == -110_667
    assert after.cost_micros == 166_000  # 83 x 0.12 / 60
    assert late.cost_micros == 110_667
    [rate] = [r for r in pricing_for(account=prepaid, now=NOW)["rates"] if r["component"] == "call"]
    assert rate["price"] == "0.12"


# Pay-as-you-go rates (U3) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("llm", "llm_micros"),
    [("gpt-4o", 50_000), ("gpt-4o-mini", 20_000), ("claude-sonnet-4", 60_000)],
)
def test_voice_payg_bills_the_llms_minute_rate_plus_the_voice_engine_at_9_cents(
    payg, llm, llm_micros
):
    result = report(call(payg, 60, llm=llm))

    lines = {line["component"]: line for line in result.explanation["lines"]}
    assert lines["llm"]["key"] == llm
    assert lines["llm"]["amount"] == f"0.{llm_micros:06d}"
    assert lines["voice_engine"]["rate"] == "0.0900000000"
    assert lines["voice_engine"]["amount"] == "0.090000"
    assert result.cost_micros == llm_micros + 90_000


@pytest.mark.parametrize("llm", ["gpt-9-imaginary", ""])
def test_an_unknown_or_missing_llm_on_voice_payg_is_refused_and_writes_nothing(payg, llm):
    before = everything_written()

    with pytest.raises(UsageError) as raised:
        report_call(report=call(payg, 60, llm=llm), now=NOW)

    assert raised.value.param == "llm"
    assert raised.value.status == 400
    assert everything_written() == before


# Prepaid shortfall (L4) -----------------------------------------------------------------------


def test_a_call_costing_more_than_the_balance_charges_it_to_exactly_zero(make_account):
    account = make_account("voice-prepaid", credit_micros=50_000)

    first = report(call(account, 83))
    second = report(call(account, 60))

    assert (first.cost_micros, first.charged_micros, first.uncollected_micros) == (
        110_667,
        50_000,
        60_667,
    )
    assert first.explanation["uncollected"] == 60_667
    assert (second.charged_micros, second.uncollected_micros) == (0, 80_000)
    assert second.ledger_entry is None
    assert balance(account) == 0
    assert [e.balance_after_micros for e in entries(account)] == [50_000, 0]


def test_a_shortfall_does_not_count_credit_that_has_expired_but_is_not_yet_written_off(
    make_account,
):
    account = make_account("voice-prepaid", credit_micros=50_000)
    post_entry(
        account=account,
        amount_micros=USD,
        kind=EntryKind.PROMOTIONAL,
        now=NOW - timedelta(days=2),
        grant_expires_at=NOW - timedelta(minutes=10),
    )

    result = report(call(account, 83))

    assert (result.charged_micros, result.uncollected_micros) == (50_000, 60_667)
    assert balance(account) == 0
    assert [e.kind for e in entries(account)][-2:] == [EntryKind.EXPIRY, EntryKind.USAGE]
    assert not CreditGrant.objects.filter(account=account, remaining_micros__gt=0).exists()


# Postpaid usage paid by credit (L5, L6, I1) ---------------------------------------------------
# Ten minutes with gpt-4o on voice-payg: 10 x (0.05 + 0.09) = 1.40 USD.


def grant_promotional_credit(account, amount_micros, *, expires_at):
    post_entry(
        account=account,
        amount_micros=amount_micros,
        kind=EntryKind.PROMOTIONAL,
        now=NOW - timedelta(days=2),
        grant_expires_at=expires_at,
    )


def unbilled(account) -> tuple[int, dict[str, int]]:
    """Return the cached unbilled total and the unbilled lines by component."""
    account.refresh_from_db(fields=["unbilled_micros"])
    lines = UnbilledLine.objects.filter(account=account).values_list("component", "amount_micros")
    return account.unbilled_micros, dict(lines)


def test_postpaid_usage_is_owed_in_full_when_the_only_credit_expired_but_is_not_yet_written_off(
    payg,
):
    grant_promotional_credit(payg, 1_400_000, expires_at=NOW - timedelta(minutes=10))

    result = report(call(payg, 600, llm="gpt-4o"))

    assert result.cost_micros == 1_400_000
    assert balance(payg) == -1_400_000
    assert unbilled(payg) == (1_400_000, {"llm": 500_000, "voice_engine": 900_000})
    assert [e.kind for e in entries(payg)][-2:] == [EntryKind.EXPIRY, EntryKind.USAGE]


def test_postpaid_usage_is_paid_only_by_the_credit_that_is_still_valid(payg):
    grant_promotional_credit(payg, 500_000, expires_at=NOW - timedelta(minutes=10))
    grant_promotional_credit(payg, USD, expires_at=NOW + timedelta(days=30))

    report(call(payg, 600, llm="gpt-4o"))

    assert balance(payg) == -400_000
    assert unbilled(payg) == (
        400_000,
        {"llm": 500_000, "voice_engine": 900_000, "credits_applied": -USD},
    )
