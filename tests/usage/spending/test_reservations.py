"""Holding credit for authorized calls, settling and releasing it (SPEC G3, L4)."""

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import Rate, RateComponent
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    call,
    concurrent,
    held,
    in_processes,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.ingest.calls import report_call
from usage.models import Call, Reservation, ReservationStatus
from usage.reads.keys import load_key
from usage.reports import PaymentRequired
from usage.spending.authorize import MAX_CALL_SECONDS, authorize
from usage.spending.holds import HOLD_GRACE, release_expired_holds

# A hold covers every second it allows: the longest call, MAX_CALL_SECONDS (4 h), at 0.08 USD
# per minute on voice-prepaid is 14,400 s x 0.08 / 60 = 19.20 USD.
HOLD_MICROS = 19_200_000


def authorize_call(key, call_id, now=NOW):
    return authorize(
        key=load_key(key.key_id),
        feature="call",
        model="",
        provider="",
        start_within="",
        call_id=call_id,
        now=now,
    )


@pytest.fixture
def prepaid_key(make_account, make_key):
    """A voice-prepaid account whose balance pays for exactly five holds of the longest call."""
    return make_key(make_account("voice-prepaid", credit_micros=5 * HOLD_MICROS)).api_key


def test_a_call_hold_covers_every_second_the_authorization_allows(prepaid_key):
    answer = authorize_call(prepaid_key, "c1")

    assert answer.max_seconds == MAX_CALL_SECONDS == 14_400
    hold = Reservation.objects.get(public_id=answer.reservation_id)
    assert (hold.amount_micros, hold.max_seconds, hold.status) == (HOLD_MICROS, 14_400, "held")
    assert hold.call_id == "c1"
    assert hold.expires_at == NOW + timedelta(seconds=14_400) + HOLD_GRACE
    assert held(prepaid_key.account) == HOLD_MICROS
    assert balance(prepaid_key.account) == 96 * USD  # a hold is not a charge


def test_a_call_the_balance_limits_holds_the_whole_balance(make_account, make_key):
    # 2 USD at 0.08 USD per minute is 1,500 s: that call may use all of it, so a second call
    # in parallel is refused rather than promised seconds nobody can pay for.
    key = make_key(make_account("voice-prepaid", credit_micros=2 * USD)).api_key

    answer = authorize_call(key, "c1")

    hold = Reservation.objects.get(public_id=answer.reservation_id)
    assert (answer.max_seconds, hold.max_seconds, hold.amount_micros) == (1500, 1500, 2 * USD)
    assert hold.expires_at == NOW + timedelta(seconds=1500) + HOLD_GRACE
    with pytest.raises(PaymentRequired):
        authorize_call(key, "c2")


def test_holds_are_exact_when_the_per_second_price_is_not_a_whole_number_of_micros(
    make_account, make_key
):
    # 0.07 USD per minute is 1166.66... micros per second: as a Decimal, 0.35 USD would buy
    # 299.99... s and 300 s would cost 350,001 micros.
    account = make_account("voice-prepaid", credit_micros=350_000)
    Rate.objects.create(
        account=account,
        component=RateComponent.CALL,
        price=Decimal("0.07"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )

    answer = authorize_call(make_key(account).api_key, "c1")

    assert answer.max_seconds == 300
    assert Reservation.objects.get(public_id=answer.reservation_id).amount_micros == 350_000
    assert held(account) == balance(account)


def test_a_hold_rounds_a_fraction_of_a_micro_up_and_never_past_the_balance(make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=2 * USD)
    Rate.objects.create(
        account=account,
        component=RateComponent.CALL,
        price=Decimal("0.07"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )

    answer = authorize_call(make_key(account).api_key, "c1")

    # 2 USD buys 1714.28... s; 1714 s cost 1,999,666.66... micros, held as 1,999,667.
    assert answer.max_seconds == 1714
    assert Reservation.objects.get(public_id=answer.reservation_id).amount_micros == 1_999_667
    charged, _ = report_call(report=call(account, 1714, call_id="c1"), now=NOW)
    assert (charged.cost_micros, charged.uncollected_micros) == (1_999_667, 0)


def test_authorizing_the_same_call_twice_holds_once(prepaid_key):
    first = authorize_call(prepaid_key, "c1")
    again = authorize_call(prepaid_key, "c1")

    assert again.reservation_id == first.reservation_id
    assert held(prepaid_key.account) == HOLD_MICROS


def test_authorizing_the_same_call_again_repeats_its_promise_when_its_hold_took_all_credit(
    make_account, make_key
):
    key = make_key(make_account("voice-prepaid", credit_micros=2 * USD)).api_key
    first = authorize_call(key, "c1")

    again = authorize_call(key, "c1")

    assert (again.reservation_id, again.max_seconds) == (first.reservation_id, 1500)
    assert held(key.account) == 2 * USD


def test_holds_stop_authorizations_once_the_balance_is_reserved(prepaid_key):
    for number in range(5):
        authorize_call(prepaid_key, f"c{number}")

    with pytest.raises(PaymentRequired):
        authorize_call(prepaid_key, "c5")
    assert held(prepaid_key.account) == 96 * USD


def _authorize_in_child(key, call_id):
    try:
        answer = authorize_call(key, call_id)
    except Exception as exc:
        return type(exc).__name__
    return answer.reservation_id


@concurrent
def test_twenty_parallel_call_authorizations_on_five_holds_of_credit_allow_exactly_five(
    transactional_db, prepaid_key
):
    outcomes = in_processes(_authorize_in_child, [(prepaid_key, f"c{n}") for n in range(20)])

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    answers = [outcome[1] for outcome in outcomes]
    allowed = [a for a in answers if a.startswith("hold_")]
    assert len(allowed) == 5
    assert answers.count("PaymentRequired") == 15
    # The same state as five sequential authorizations: five holds of 19.20 USD, nothing spent.
    holds = Reservation.objects.filter(account=prepaid_key.account)
    assert sorted(holds.values_list("public_id", flat=True)) == sorted(allowed)
    assert set(holds.values_list("status", "amount_micros")) == {("held", HOLD_MICROS)}
    assert held(prepaid_key.account) == 96 * USD
    assert balance(prepaid_key.account) == 96 * USD


def test_a_final_call_report_settles_the_calls_hold(prepaid_key):
    account = prepaid_key.account
    authorize_call(prepaid_key, "c1")
    authorize_call(prepaid_key, "c2")

    charged, _ = report_call(report=call(account, 83, call_id="c1"), now=NOW)

    assert charged.cost_micros == 110_667
    assert held(account) == HOLD_MICROS
    assert Reservation.objects.get(call_id="c1").status == ReservationStatus.SETTLED
    assert Reservation.objects.get(call_id="c2").status == ReservationStatus.HELD
    assert balance(account) == 96 * USD - 110_667


def test_a_final_call_report_settles_the_hold_named_by_its_reservation_id(prepaid_key):
    account = prepaid_key.account
    answer = authorize_call(prepaid_key, "")

    report_call(
        report=call(account, 83, call_id="c1", reservation_id=answer.reservation_id), now=NOW
    )

    assert held(account) == 0
    assert Reservation.objects.get(public_id=answer.reservation_id).status == "settled"


def test_an_in_progress_report_keeps_the_hold(prepaid_key):
    account = prepaid_key.account
    authorize_call(prepaid_key, "c1")

    report_call(report=call(account, call_id="c1", status="in_progress", ended_at=None), now=NOW)

    assert held(account) == HOLD_MICROS


def test_release_expired_holds_releases_only_expired_holds_and_is_idempotent(prepaid_key):
    account = prepaid_key.account
    authorize_call(prepaid_key, "old")
    authorize_call(prepaid_key, "new", now=NOW + timedelta(minutes=10))
    expiry = NOW + timedelta(seconds=MAX_CALL_SECONDS) + HOLD_GRACE

    assert release_expired_holds(now=expiry - timedelta(seconds=1)) == 0
    assert release_expired_holds(now=expiry) == 1
    assert release_expired_holds(now=expiry) == 0

    old = Reservation.objects.get(call_id="old")
    assert (old.status, old.closed_at) == (ReservationStatus.RELEASED, expiry)
    assert Reservation.objects.get(call_id="new").status == ReservationStatus.HELD
    assert held(account) == HOLD_MICROS
    assert balance(account) == 96 * USD


def test_a_late_final_report_after_the_release_charges_without_touching_holds(prepaid_key):
    account = prepaid_key.account
    authorize_call(prepaid_key, "c1")
    later = NOW + timedelta(hours=5)
    release_expired_holds(now=later)

    charged, _ = report_call(report=call(account, 83, call_id="c1"), now=later)

    assert charged.charged_micros == 110_667
    assert held(account) == 0
    assert Reservation.objects.get(call_id="c1").status == ReservationStatus.RELEASED


def _run_parallel_calls(key, count):
    """Authorize `count` calls before any reports, then run each allowed one for its full
    max_seconds and report it; return the promised seconds and the calls."""
    promised = {}
    for number in range(count):
        with contextlib.suppress(PaymentRequired):  # refused: nothing promised, nothing run
            promised[f"p{number}"] = authorize_call(key, f"p{number}").max_seconds
    for call_id, seconds in promised.items():
        report = call(key.account, seconds, call_id=call_id, connected_at=NOW - timedelta(hours=5))
        report_call(report=report, now=NOW)
    return promised, Call.objects.filter(account=key.account)


@pytest.mark.parametrize(
    ("credit_micros", "promised_seconds"),
    [
        # The auditor's case: five calls on 2 USD were promised 4,500 s (6 USD) before.
        (2 * USD, [1500]),
        # 45 USD: two calls of the longest length (19.20 USD each), the rest, 6.60 USD, is
        # 4,950 s for a third; the fourth and fifth are refused.
        (45 * USD, [14_400, 14_400, 4950]),
    ],
)
def test_parallel_calls_that_each_run_their_full_max_seconds_are_all_paid_for(
    make_account, make_key, credit_micros, promised_seconds
):
    key = make_key(make_account("voice-prepaid", credit_micros=credit_micros)).api_key

    promised, calls = _run_parallel_calls(key, 5)

    assert list(promised.values()) == promised_seconds
    # What was promised costs no more than the balance: 0.08 USD per minute.
    assert sum(promised_seconds) * 80_000 // 60 == credit_micros
    assert [c.uncollected_micros for c in calls] == [0] * len(promised)
    assert sum(c.cost_micros for c in calls) == credit_micros
    assert (balance(key.account), held(key.account)) == (0, 0)


def test_included_seconds_are_promised_to_one_call_at_a_time(plans, make_account, make_key):
    # A prepaid plan with 10 included minutes and 0.40 USD: one call may use both (900 s);
    # a second call in parallel must not be promised the same 600 included seconds again.
    plans["voice-prepaid"].included_minutes = 10
    plans["voice-prepaid"].save()
    key = make_key(make_account("voice-prepaid", credit_micros=400_000)).api_key

    promised, calls = _run_parallel_calls(key, 3)

    assert list(promised.values()) == [900]
    hold = Reservation.objects.get(call_id="p0")
    assert (hold.amount_micros, hold.allowance_seconds) == (400_000, 600)
    [charged] = calls
    assert (charged.allowance_seconds, charged.cost_micros, charged.uncollected_micros) == (
        600,
        400_000,
        0,
    )
    assert balance(key.account) == 0


def test_included_seconds_a_hold_promised_are_free_again_once_it_settles(
    plans, make_account, make_key
):
    plans["voice-prepaid"].included_minutes = 10
    plans["voice-prepaid"].save()
    key = make_key(make_account("voice-prepaid")).api_key
    first = authorize_call(key, "c1")
    assert first.max_seconds == 600
    with pytest.raises(PaymentRequired):
        authorize_call(key, "c2")

    report_call(report=call(key.account, 200, call_id="c1"), now=NOW)

    assert authorize_call(key, "c2").max_seconds == 400
