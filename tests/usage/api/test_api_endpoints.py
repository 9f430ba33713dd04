"""API v1 operations end to end through the usage services (SPEC section 11, G1, U10)."""

import json
from datetime import timedelta

import pytest
import time_machine

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import EntryKind
from billing.money import micros_to_api, usd_to_micros
from tests.billing.postings import post_entry
from tests.conftest import NOW

API_NOW = NOW + timedelta(hours=1)
USD = 1_000_000


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


def send(client, method, path, key, body=None):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key.token}"}
    if method == "get":
        return client.get(path, **extra)
    return getattr(client, method)(
        path, json.dumps(body if body is not None else {}), "application/json", **extra
    )


def at(minutes_ago: float) -> str:
    return (API_NOW - timedelta(minutes=minutes_ago)).isoformat()


def call_report(account, seconds=83, **fields):
    connected = API_NOW - timedelta(minutes=30)
    body = {
        "account": account.public_id,
        "status": "completed",
        "connected_at": connected.isoformat(),
        "ended_at": (connected + timedelta(seconds=seconds)).isoformat(),
    }
    return {**body, **fields}


# Calls -------------------------------------------------------------------------------------


def test_completed_call_is_rated_and_returned_with_money_as_strings(client, make_account, platform):
    account = make_account("voice-prepaid", credit_micros=20 * USD)

    response = send(client, "put", "/api/v1/calls/call-83", platform, call_report(account))

    assert response.status_code == 200
    body = response.json()
    assert body["call_id"] == "call-83"
    assert body["account"] == account.public_id
    assert body["status"] == "completed"
    assert body["billable_seconds"] == 83
    # 83 s at 0.08 USD/min = 0.110666... USD, rounded half-up once (SPEC L1).
    assert body["cost"] == "0.110667"
    assert body["refunded"] == "0.000000"
    assert isinstance(body["explanation"], dict)
    assert Account.objects.get(pk=account.pk).balance_micros == 20 * USD - 110_667


def test_identical_final_report_is_answered_again_and_a_different_one_is_a_409(
    client, make_account, platform
):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    first = send(client, "put", "/api/v1/calls/call-1", platform, call_report(account))

    repeat = send(client, "put", "/api/v1/calls/call-1", platform, call_report(account))
    different = send(client, "put", "/api/v1/calls/call-1", platform, call_report(account, 90))

    assert repeat.status_code == 200
    assert repeat.json() == first.json()
    assert different.status_code == 409
    assert different.json()["error"]["type"] == "conflict"
    assert Account.objects.get(pk=account.pk).balance_micros == 20 * USD - 110_667


def test_call_in_progress_costs_nothing_yet(client, make_account, platform):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    body = call_report(account, status="in_progress", ended_at=None)

    response = send(client, "put", "/api/v1/calls/live-1", platform, body)

    assert response.status_code == 200
    assert response.json()["status"] == "in_progress"
    assert response.json()["cost"] == "0.000000"


def test_call_for_an_unknown_account_is_a_404(client, db, platform):
    body = {"account": "acc_doesnotexist", "status": "in_progress"}

    response = send(client, "put", "/api/v1/calls/c-404", platform, body)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_refund_credits_the_call_back_once(client, make_account, platform):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    send(client, "put", "/api/v1/calls/call-r", platform, call_report(account))

    first = send(
        client, "post", "/api/v1/calls/call-r/refund", platform, {"reason": "dropped by us"}
    )
    second = send(client, "post", "/api/v1/calls/call-r/refund", platform)

    assert first.status_code == 200
    assert first.json()["refunded"] == "0.110667"
    assert second.status_code == 200
    assert second.json() == first.json()
    assert Account.objects.get(pk=account.pk).balance_micros == 20 * USD


def test_refund_without_a_body_is_accepted(client, make_account, platform):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    send(client, "put", "/api/v1/calls/call-nb", platform, call_report(account))

    # As `curl -X POST` sends it: no body, no content type.
    response = client.generic(
        "POST", "/api/v1/calls/call-nb/refund", HTTP_AUTHORIZATION=f"Bearer {platform.token}"
    )

    assert response.status_code == 200, response.content
    assert response.json()["refunded"] == "0.110667"


def test_refund_of_an_unknown_call_is_a_404(client, db, platform):
    response = send(client, "post", "/api/v1/calls/nope/refund", platform)

    assert response.status_code == 404


# Events ------------------------------------------------------------------------------------


def test_event_batch_answers_each_event_in_order(client, make_account, platform):
    account = make_account("llm-api")
    llm = {
        "id": "req-1",
        "account": account.public_id,
        "type": "llm",
        "occurred_at": at(5),
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 500,
    }
    events = [
        llm,
        {**llm},  # the same id and content again: a duplicate, charged once
        {**llm, "output_tokens": 501},  # the same id, other content: refused
        {**llm, "id": "req-2", "account": "acc_nobody"},
        {**llm, "id": "req-3", "occurred_at": at(60 * 24 * 40)},  # too late to bill
    ]

    response = send(client, "post", "/api/v1/events", platform, {"events": events})

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["req-1", "req-1", "req-1", "req-2", "req-3"]
    assert [r["status"] for r in results] == [
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
    ]
    # 1,000 input tokens at 2.50 USD/M and 500 output tokens at 10.00 USD/M.
    assert results[0] == {"id": "req-1", "status": "accepted", "cost": "0.007500"}
    assert results[1]["cost"] == "0.007500"
    assert [r.get("code") for r in results[2:]] == ["409", "404", "400"]
    assert all(r["reason"] for r in results[2:])
    assert Account.objects.get(pk=account.pk).balance_micros == 10 * USD - 7_500


def test_repeating_a_batch_charges_nothing_more(client, make_account, platform):
    account = make_account("llm-api")
    batch = {
        "events": [
            {
                "id": f"sms-{n}",
                "account": account.public_id,
                "type": "llm",
                "occurred_at": at(1),
                "provider": "openai",
                "model": "gpt-4o-mini",
                "input_tokens": 10_000,
                "output_tokens": 0,
            }
            for n in range(3)
        ]
    }

    first = send(client, "post", "/api/v1/events", platform, batch)
    second = send(client, "post", "/api/v1/events", platform, batch)

    assert {r["status"] for r in first.json()["results"]} == {"accepted"}
    assert {r["status"] for r in second.json()["results"]} == {"duplicate"}
    assert Account.objects.get(pk=account.pk).balance_micros == 10 * USD - 3 * 1_500


@pytest.mark.parametrize(
    ("standard", "flex"),
    [("0.1530", "0.0810"), (0.1530, 0.0810)],
    ids=["strings", "json-numbers"],
)
def test_flex_commission_is_exact_for_string_and_number_prices(
    client, make_account, platform, standard, flex
):
    account = make_account("flex-router")
    event = {
        "id": "flex-1",
        "account": account.public_id,
        "type": "llm",
        "occurred_at": at(1),
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 100,
        "start_within": "00h-00m-30s",
        "standard_price": standard,
        "flex_price": flex,
    }

    response = send(client, "post", "/api/v1/events", platform, {"events": [event]})

    # 20% of (0.1530 - 0.0810) = 0.0144 USD.
    assert response.json()["results"] == [
        {"id": "flex-1", "status": "accepted", "cost": "0.014400"}
    ]


def test_a_thousand_events_are_accepted_in_one_request(client, make_account, platform):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    events = [
        {
            "id": f"bulk-{n}",
            "account": account.public_id,
            "type": "sms",
            "occurred_at": at(1),
            "count": 1,
        }
        for n in range(1000)
    ]

    response = send(client, "post", "/api/v1/events", platform, {"events": events})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1000
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}


# Customer reads and authorization ----------------------------------------------------------


def test_balance_shows_money_as_decimal_strings(client, make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=12_345_678)

    response = send(client, "get", "/api/v1/balance", make_key(account))

    assert response.status_code == 200
    body = response.json()
    assert body["balance"] == "12.345678"
    assert body["held"] == "0.000000"
    assert body["available"] == "12.345678"
    assert body["currency"] == "USD"


def test_usage_shows_the_current_period(client, make_account, make_key, platform):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    send(client, "put", "/api/v1/calls/u-1", platform, call_report(account, 120))

    response = send(client, "get", "/api/v1/usage", make_key(account))

    assert response.status_code == 200
    body = response.json()
    expected = {
        "period_start",
        "period_end",
        "minutes",
        "calls",
        "sms",
        "chat_messages",
        "input_tokens",
        "output_tokens",
        "cost",
        "allowance_used_minutes",
        "allowance_remaining_minutes",
        "balance",
    }
    assert expected <= set(body)
    assert body["calls"] == 1
    assert body["cost"] == "0.160000"
    assert body["balance"] == "19.840000"


def test_usage_shows_the_included_credit_granted_used_and_remaining(
    plans_without_fees, client, make_account, make_key, platform, plans
):
    account = make_account("credits-monthly")
    call = send(client, "put", "/api/v1/calls/u-credit", platform, call_report(account, 120))
    cost_micros = usd_to_micros(call.json()["cost"])
    included_micros = plans["credits-monthly"].included_credit_micros

    response = send(client, "get", "/api/v1/usage", make_key(account))

    assert response.status_code == 200
    body = response.json()
    assert cost_micros > 0 and included_micros > cost_micros
    assert body["included_credit"] == micros_to_api(included_micros)
    assert body["included_credit_used"] == micros_to_api(cost_micros)
    assert body["included_credit_remaining"] == micros_to_api(included_micros - cost_micros)
    assert body["balance"] == micros_to_api(included_micros - cost_micros)


def test_usage_reads_no_included_credit_on_a_plan_without_any(
    client, make_account, make_key, platform
):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    send(client, "put", "/api/v1/calls/u-none", platform, call_report(account, 120))

    body = send(client, "get", "/api/v1/usage", make_key(account)).json()

    assert [body[f] for f in ("included_credit", "included_credit_used")] == ["0.000000"] * 2
    assert body["included_credit_remaining"] == "0.000000"


def test_the_usage_schema_documents_the_included_credit(client, db):
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["UsageOut"]

    for name in ("included_credit", "included_credit_used", "included_credit_remaining"):
        assert name in schema["required"]
        assert schema["properties"][name]["type"] == "string"


def test_an_outbound_call_is_authorized_free_on_credits_monthly_with_no_credit_left(
    plans_without_fees, client, make_account, make_key
):
    # Document 002: outbound calls use no credit; SPEC G1: free usage stays allowed.
    account = make_account("credits-monthly")
    post_entry(
        account=account,
        amount_micros=-account.balance_micros,
        kind=EntryKind.ADJUSTMENT,
        reason="spend the included credit",
        now=API_NOW,
    )
    key = make_key(account)

    outbound = send(
        client, "post", "/api/v1/authorize", key, {"feature": "call", "direction": "outbound"}
    )
    inbound = send(
        client, "post", "/api/v1/authorize", key, {"feature": "call", "direction": "inbound"}
    )

    assert outbound.status_code == 200, outbound.content
    assert outbound.json()["allowed"] is True
    assert outbound.json()["billable"] is False
    assert outbound.json()["balance"] == "0.000000"
    assert inbound.status_code == 402
    assert inbound.json()["error"]["type"] == "insufficient_quota"
    # The free answer holds nothing.
    assert Account.objects.get(pk=account.pk).held_micros == 0


def test_authorize_refuses_an_unknown_direction_with_400(client, make_account, make_key):
    key = make_key(make_account("credits-monthly"))

    response = send(
        client, "post", "/api/v1/authorize", key, {"feature": "call", "direction": "sideways"}
    )

    assert response.status_code == 400
    assert "direction" in response.json()["error"]["message"]


def test_pricing_shows_the_plan_and_its_rates(client, make_account, make_key):
    account = make_account("voice-prepaid")

    response = send(client, "get", "/api/v1/pricing", make_key(account))

    assert response.status_code == 200
    body = response.json()
    assert body["plan"]["code"] == "voice-prepaid"
    assert body["plan"]["rounding"] == "nearest"
    assert {"component": "call", "price": "0.08"}.items() <= body["rates"][0].items()
    assert isinstance(body["model_prices"], list)


def test_authorize_a_call_returns_the_affordable_seconds(client, make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=1 * USD)

    response = send(client, "post", "/api/v1/authorize", make_key(account), {"feature": "call"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["allowed"] is True
    assert body["balance"] == "1.000000"
    # 1 USD at 0.08 USD/min buys 750 seconds.
    assert body["max_seconds"] == 750
    assert body["reservation_id"]
    assert response["x-ratelimit-limit-requests"] == "10"


def test_authorize_without_credit_is_a_402(client, make_account, make_key):
    account = make_account("voice-prepaid")

    response = send(client, "post", "/api/v1/authorize", make_key(account), {"feature": "call"})

    assert response.status_code == 402
    assert response.json()["error"]["type"] == "insufficient_quota"
    assert response.json()["error"]["code"] == "402"
    assert response["x-ratelimit-remaining-requests"] == "9"
