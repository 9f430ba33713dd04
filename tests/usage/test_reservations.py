"""Holding credit for authorized calls, settling and releasing it (SPEC G3, L4)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.example_plans import EXAMPLES_EFFECTIVE_FROM
from billing.models import Rate, RateComponent
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
from usage.calls import report_call
from usage.gateway import CALL_HOLD_SECONDS, authorize
from usage.models import Reservation, ReservationStatus
from usage.reports import PaymentRequired
from usage.reservations import HOLD_GRACE, release_expired_holds

# One hold covers CALL_HOLD_SECONDS (300 s) at 0.08 USD per minute on voice-prepaid.
HOLD_MICROS = 400_000


def authorize_call(key, call_id, now=NOW):
    return authorize(
        api_key=key,
        feature="call",
        model="",
        provider="",
        start_within="",
        call_id=call_id,
        now=now,
    )


@pytest.fixture
def prepaid_key(make_account, make_key):
    """A voice-prepaid account whose balance pays for exactly five holds."""
    return make_key(make_account("voice-prepaid", credit_micros=5 * HOLD_MICROS)).api_key


def test_a_call_hold_covers_300_seconds_at_the_plan_rate(prepaid_key):
    assert CALL_HOLD_SECONDS == 300

    answer = authorize_call(prepaid_key, "c1")

    hold = Reservation.objects.get(public_id=answer.reservation_id)
    assert (hold.amount_micros, hold.max_seconds, hold.status) == (HOLD_MICROS, 300, "held")
    assert hold.call_id == "c1"
    assert hold.expires_at == NOW + timedelta(seconds=300) + HOLD_GRACE
    assert held(prepaid_key.account) == HOLD_MICROS
    assert balance(prepaid_key.account) == 2 * USD  # a hold is not a charge


def test_holds_are_exact_when_the_per_second_price_is_not_a_whole_number_of_micros(
    make_account, make_key
):
    # 0.07 USD per minute is 1166.66... micros per second.
    account = make_account("voice-prepaid", credit_micros=2 * USD)
    Rate.objects.create(
        account=account,
        component=RateComponent.CALL,
        price=Decimal("0.07"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )

    answer = authorize_call(make_key(account).api_key, "c1")

    assert Reservation.objects.get(public_id=answer.reservation_id).amount_micros == 350_000
    assert answer.max_seconds == 1714  # 2 USD buys 1714.28... s


def test_authorizing_the_same_call_twice_holds_once(prepaid_key):
    first = authorize_call(prepaid_key, "c1")
    again = authorize_call(prepaid_key, "c1")

    assert again.reservation_id == first.reservation_id
    assert held(prepaid_key.account) == HOLD_MICROS


def test_holds_stop_authorizations_once_the_balance_is_reserved(prepaid_key):
    for number in range(5):
        authorize_call(prepaid_key, f"c{number}")

    with pytest.raises(PaymentRequired):
        authorize_call(prepaid_key, "c5")
    assert held(prepaid_key.account) == 2 * USD


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
    # The same state as five sequential authorizations: five holds of 0.40 USD, nothing spent.
    holds = Reservation.objects.filter(account=prepaid_key.account)
    assert sorted(holds.values_list("public_id", flat=True)) == sorted(allowed)
    assert set(holds.values_list("status", "amount_micros")) == {("held", HOLD_MICROS)}
    assert held(prepaid_key.account) == 2 * USD
    assert balance(prepaid_key.account) == 2 * USD


def test_a_final_call_report_settles_the_calls_hold(prepaid_key):
    account = prepaid_key.account
    authorize_call(prepaid_key, "c1")
    authorize_call(prepaid_key, "c2")

    charged, _ = report_call(report=call(account, 83, call_id="c1"), now=NOW)

    assert charged.cost_micros == 110_667
    assert held(account) == HOLD_MICROS
    assert Reservation.objects.get(call_id="c1").status == ReservationStatus.SETTLED
    assert Reservation.objects.get(call_id="c2").status == ReservationStatus.HELD
    assert balance(account) == 2 * USD - 110_667


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
    expiry = NOW + timedelta(seconds=CALL_HOLD_SECONDS) + HOLD_GRACE

    assert release_expired_holds(now=expiry - timedelta(seconds=1)) == 0
    assert release_expired_holds(now=expiry) == 1
    assert release_expired_holds(now=expiry) == 0

    old = Reservation.objects.get(call_id="old")
    assert (old.status, old.closed_at) == (ReservationStatus.RELEASED, expiry)
    assert Reservation.objects.get(call_id="new").status == ReservationStatus.HELD
    assert held(account) == HOLD_MICROS
    assert balance(account) == 2 * USD


def test_a_late_final_report_after_the_release_charges_without_touching_holds(prepaid_key):
    account = prepaid_key.account
    authorize_call(prepaid_key, "c1")
    later = NOW + timedelta(hours=1)
    release_expired_holds(now=later)

    charged, _ = report_call(report=call(account, 83, call_id="c1"), now=later)

    assert charged.charged_micros == 110_667
    assert held(account) == 0
    assert Reservation.objects.get(call_id="c1").status == ReservationStatus.RELEASED
