"""Destinations are matched in E.164 (issue 14, item 18; SPEC U3): however the platform spells
the number, the longest E.164 prefix of the plan prices it; an invalid number is a 400."""

from decimal import Decimal

import pytest
import time_machine

from billing.ledger.drift import ledger_drift
from billing.models import Rate, RateComponent
from billing.plans.example_plans import DESTINATION_SURCHARGES, EXAMPLES_EFFECTIVE_FROM
from tests.usage.api.test_api_endpoints import API_NOW, USD, call_report, send
from tests.usage.api.test_api_errors import assert_error
from tests.usage.metering import everything_written
from usage.models import Call, Reservation

LONDON = "+442079460000"  # a London fixed line: the +4420 surcharge, not the +44 one


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(API_NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def no_ledger_drift(db):
    yield
    assert ledger_drift() == []


@pytest.fixture
def platform(make_key):
    return make_key()


@pytest.fixture
def payg(make_account):
    return make_account("voice-payg")


def surcharge_line(body):
    return [line for line in body["explanation"]["lines"] if line["component"] == "destination"]


@pytest.mark.parametrize(
    "spelled", ["+44 20 7946 0000", "0044 20 7946 0000", "+44 (20) 7946-0000", LONDON]
)
def test_a_london_number_however_spelled_gets_the_london_surcharge(client, payg, platform, spelled):
    body = call_report(payg, 60, llm="gpt-4o", destination=spelled)

    response = send(client, "put", "/api/v1/calls/c-london", platform, body)

    assert response.status_code == 200, response.content
    [line] = surcharge_line(response.json())
    assert line["key"] == "+4420"
    assert Decimal(line["rate"]) == Decimal(DESTINATION_SURCHARGES["+4420"])
    assert Call.objects.get(call_id="c-london").destination == LONDON


def test_a_uk_mobile_number_gets_the_country_surcharge(client, payg, platform):
    body = call_report(payg, 60, llm="gpt-4o", destination="0044 7911 123456")

    response = send(client, "put", "/api/v1/calls/c-mobile", platform, body)

    assert response.status_code == 200, response.content
    [line] = surcharge_line(response.json())
    assert line["key"] == "+44"


def test_the_same_final_call_with_the_number_spelled_differently_is_a_repeat(
    client, payg, platform
):
    first = call_report(payg, 60, llm="gpt-4o", destination="+44 20 7946 0000")
    send(client, "put", "/api/v1/calls/c-again", platform, first)
    before = everything_written()

    again = send(client, "put", "/api/v1/calls/c-again", platform, {**first, "destination": LONDON})

    assert again.status_code == 200, again.content
    assert everything_written() == before


@pytest.mark.parametrize(
    "number", ["+4420", "020 7946 0000", "+44 7700 900123", "call me", "+999 123 4567"]
)
def test_an_invalid_destination_is_a_400_that_changes_nothing(client, payg, platform, number):
    before = everything_written()
    body = call_report(payg, 60, llm="gpt-4o", destination=number)

    response = send(client, "put", "/api/v1/calls/c-bad", platform, body)

    message = assert_error(response, 400, "invalid_request_error")
    assert "destination" in message
    assert everything_written() == before


@pytest.fixture
def prepaid_with_london_surcharge(make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=2 * USD)
    Rate.objects.create(
        account=account,
        component=RateComponent.DESTINATION,
        key="+4420",
        price=Decimal("0.02"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )
    return make_key(account)


def test_authorize_holds_at_the_named_destination_s_price(client, prepaid_with_london_surcharge):
    # 2 USD at 0.08 + 0.02 USD per minute lasts 1,200 s (1,500 s without the surcharge).
    response = send(
        client,
        "post",
        "/api/v1/authorize",
        prepaid_with_london_surcharge,
        {"feature": "call", "call_id": "c1", "destination": "0044 20 7946 0000"},
    )

    assert response.status_code == 200, response.content
    assert response.json()["max_seconds"] == 2 * USD * 60 // (100_000)
    assert Reservation.objects.get().amount_micros == 2 * USD


def test_authorize_with_an_invalid_destination_is_a_400_and_holds_nothing(
    client, prepaid_with_london_surcharge
):
    response = send(
        client,
        "post",
        "/api/v1/authorize",
        prepaid_with_london_surcharge,
        {"feature": "call", "call_id": "c1", "destination": "not a number"},
    )

    assert_error(response, 400, "invalid_request_error")
    assert not Reservation.objects.exists()
