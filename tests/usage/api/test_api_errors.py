"""Every error of API v1 has one shape, bad input is a 400 and never a 500 (SPEC G1, 11)."""

import json
import logging
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Account
from billing.models import EntryKind, Rate, RateComponent
from billing.money import usd_to_micros
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM
from tests.billing.postings import post_entry
from usage.api import app as api_module
from usage.models import UsageEvent
from usage.reports import (
    MAX_EVENT_QUANTITIES,
    MAX_FLEX_PRICE_USD,
    MAX_USAGE_DEBT_MICROS,
    Conflict,
    NotFound,
    PaymentRequired,
    UsageError,
)

OPERATIONS = {
    ("post", "/api/v1/authorize"),
    ("put", "/api/v1/calls/{call_id}"),
    ("post", "/api/v1/calls/{call_id}/refund"),
    ("post", "/api/v1/events"),
    ("get", "/api/v1/usage"),
    ("get", "/api/v1/balance"),
    ("get", "/api/v1/pricing"),
    ("get", "/api/v1/invoices"),
    ("post", "/api/v1/customers"),
    ("get", "/api/v1/customers"),
    ("get", "/api/v1/customers/{external_id}"),
    ("patch", "/api/v1/customers/{external_id}"),
    ("post", "/api/v1/customers/{external_id}/authorize"),
    ("get", "/api/v1/customers/{external_id}/balance"),
    ("get", "/api/v1/customers/{external_id}/usage"),
    ("get", "/api/v1/customers/{external_id}/invoices"),
    ("post", "/api/v1/customers/{external_id}/credit_grants"),
    ("post", "/api/v1/customers/{external_id}/portal_sessions"),
    ("post", "/api/v1/webhook_endpoints"),
    ("get", "/api/v1/webhook_endpoints"),
    ("get", "/api/v1/webhook_endpoints/{endpoint_id}"),
    ("patch", "/api/v1/webhook_endpoints/{endpoint_id}"),
    ("delete", "/api/v1/webhook_endpoints/{endpoint_id}"),
    ("post", "/api/v1/webhook_endpoints/{endpoint_id}/rotate_secret"),
}


def assert_error(response, status, type_):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "request_id"}
    # The id that finds the request's log lines (docs/operations.md, Logs).
    assert body["error"]["request_id"] == response["X-Request-ID"]
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == str(status)
    assert body["error"]["message"]
    return body["error"]["message"]


@pytest.fixture
def account(make_account):
    return make_account("llm-api")


@pytest.fixture
def customer(account, make_key):
    return make_key(account, tier="paid")


@pytest.fixture
def platform(make_key):
    return make_key()


def send(client, method, path, token, body):
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(client, method)(
        path, content, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def event(owner, **fields):
    moment = (timezone.now() - timedelta(minutes=5)).isoformat()
    base = {"id": "evt-1", "account": owner.public_id, "type": "sms", "occurred_at": moment}
    return {**base, **fields}


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"type": "fax"}, "type"),
        ({"count": -1}, "count"),
        ({"messages": -5, "type": "chat"}, "messages"),
        ({"type": "llm", "input_tokens": -1}, "input_tokens"),
        ({"type": "llm", "output_tokens": 1.5}, "output_tokens"),
        ({"type": "llm", "output_tokens": "12"}, "output_tokens"),
        ({"count": True}, "count"),
        ({"id": ""}, "id"),
        ({"id": "x" * 101}, "id"),
        ({"id": "evt\u0000nul"}, "id"),
        ({"id": "\ud800"}, "id"),  # a lone surrogate is not text PostgreSQL can store
        ({"account": ""}, "account"),
        ({"occurred_at": "2026-03-15T12:00:00"}, "occurred_at"),  # no time zone
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": 1773576000}, "occurred_at"),  # Unix time is not ISO 8601
        ({"occurred_at": "2026-02-30T12:00:00Z"}, "occurred_at"),
        ({"standard_price": "-0.01"}, "standard_price"),
        ({"standard_price": "1e3"}, "standard_price"),
        ({"standard_price": "NaN"}, "standard_price"),
        ({"flex_price": "0.0000000000001"}, "flex_price"),  # 13 decimals
        ({"flex_price": [1]}, "flex_price"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_event_is_refused_with_400(client, platform, account, fields, mentions):
    response = send(
        client, "post", "/api/v1/events", platform.token, {"events": [event(account, **fields)]}
    )

    message = assert_error(response, 400, "invalid_request_error")
    assert mentions in message


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        {"events": None},
        {},
        [],
        {"events": {"id": "x"}},
    ],
)
def test_malformed_event_batch_is_refused_with_400(client, platform, body):
    response = send(client, "post", "/api/v1/events", platform.token, body)

    assert_error(response, 400, "invalid_request_error")


def test_more_than_1000_events_are_refused_with_400(client, platform, account):
    events = [event(account, id=f"evt-{i}") for i in range(1001)]

    response = send(client, "post", "/api/v1/events", platform.token, {"events": events})

    assert "events" in assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize("body", ["{not json", "", "\u00ff", b"\xff\xfe"])
def test_unparseable_body_is_refused_with_400(client, platform, body):
    response = send(client, "post", "/api/v1/events", platform.token, body)

    assert_error(response, 400, "invalid_request_error")


def test_oversized_body_is_a_413(client, platform, account, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    events = [event(account, id=f"evt-{i}") for i in range(20)]

    response = send(client, "post", "/api/v1/events", platform.token, {"events": events})

    assert_error(response, 413, "invalid_request_error")


def test_deeply_nested_json_is_a_400(client, platform):
    response = send(client, "post", "/api/v1/events", platform.token, "[" * 100_000)

    assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "ringing"},
        {"direction": "sideways"},
        {"hold_seconds": -1},
        {"hold_seconds": "1.2345"},
        {"hold_seconds": "abc"},
        {"connected_at": "2026-03-15 12:00"},
        {"ended_at": 0},
        {"account": None},
        {"destination": "+44" * 20},
    ],
)
def test_invalid_call_report_is_refused_with_400(client, platform, account, fields):
    body = {"account": account.public_id, "status": "in_progress", **fields}

    response = send(client, "put", "/api/v1/calls/call-1", platform.token, body)

    assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize("call_id", ["a%00b", "a%0Ab", "x" * 101])
def test_invalid_call_id_is_refused_with_400(client, platform, account, call_id):
    body = {"account": account.public_id, "status": "in_progress"}

    response = send(client, "put", f"/api/v1/calls/{call_id}", platform.token, body)

    assert_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    "body",
    [
        {"feature": "teleport"},
        {},
        {"feature": "llm", "model": 5},
        {"feature": "call", "extra": True},
        {"feature": "llm", "start_within": "x" * 33},
    ],
)
def test_invalid_authorize_request_is_refused_with_400(client, customer, body):
    response = send(client, "post", "/api/v1/authorize", customer.token, body)

    assert_error(response, 400, "invalid_request_error")
    assert response["x-ratelimit-limit-requests"] == "100"


def test_unknown_path_under_the_api_is_a_json_404(client, db):
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(client.get("/api/v1/"), 404, "not_found")
    assert_error(client.post("/api/v1/calls/x/y/z"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/api/v1/calls/c-1", "PUT"),
        ("delete", "/api/v1/balance", "GET"),
        ("get", "/api/v1/events", "POST"),
        ("put", "/api/v1/authorize", "POST"),
    ],
)
def test_wrong_method_is_a_json_405(client, db, method, path, allowed):
    response = getattr(client, method)(path)

    assert_error(response, 405, "invalid_request_error")
    assert response["Allow"] == allowed


@pytest.mark.parametrize(
    ("error", "status", "type_"),
    [
        (UsageError("Bad content."), 400, "invalid_request_error"),
        (NotFound("No account."), 404, "not_found"),
        (Conflict("Reported differently."), 409, "conflict"),
    ],
)
def test_service_errors_keep_their_status_and_type(
    client, platform, account, monkeypatch, error, status, type_
):
    def refuse(**kwargs):
        raise error

    monkeypatch.setattr(api_module.calls, "report_call", refuse)
    body = {"account": account.public_id, "status": "completed"}

    response = send(client, "put", "/api/v1/calls/call-1", platform.token, body)

    assert assert_error(response, status, type_) == error.message


def test_payment_required_is_a_402_insufficient_quota_with_rate_limit_headers(
    client, customer, monkeypatch
):
    def refuse(**kwargs):
        raise PaymentRequired("Insufficient credit.")

    monkeypatch.setattr(api_module.gateway, "authorize", refuse)

    response = send(client, "post", "/api/v1/authorize", customer.token, {"feature": "call"})

    assert assert_error(response, 402, "insufficient_quota") == "Insufficient credit."
    assert response["x-ratelimit-remaining-requests"] == "99"


def test_unexpected_exception_is_a_generic_500_and_is_logged(client, customer, monkeypatch, caplog):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api_module.selectors, "balance_summary", explode)

    with caplog.at_level(logging.ERROR, logger="usage.api.errors"):
        response = client.get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {customer.token}")

    message = assert_error(response, 500, "api_error")
    assert "secret" not in message and "Traceback" not in response.content.decode()
    assert "secret internals" in caplog.text
    assert response["x-ratelimit-limit-requests"] == "100"


def test_openapi_schema_is_served_and_lists_every_operation(client, db):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    operations = {(m, p) for p, methods in schema["paths"].items() for m in methods}
    assert operations == OPERATIONS
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "400" in responses and "401" in responses and "403" in responses, path
            assert "422" not in responses, path
            error_ref = responses["400"]["content"]["application/json"]["schema"]["$ref"]
            assert error_ref.endswith("/ErrorOut")
            assert operation["security"], (method, path)
    assert "402" in schema["paths"]["/api/v1/authorize"]["post"]["responses"]
    assert "429" in schema["paths"]["/api/v1/balance"]["get"]["responses"]
    assert "409" in schema["paths"]["/api/v1/calls/{call_id}"]["put"]["responses"]
    assert set(schema["components"]["securitySchemes"]) == {"CustomerKey", "PlatformKey"}


def test_docs_page_loads_nothing_from_another_host(client, db):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/v1/openapi.json" in html
    assert "cdn" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


# Bounds of one event (issue 14, item 9) ----------------------------------------------------


def test_600_chat_events_of_10_12_messages_are_rejected_alone_and_the_rest_is_charged(
    client, platform, account, make_account
):
    # 600 x 10^12 messages once overflowed BIGINT: the whole batch answered 500 on every retry
    # and the valid event of another account in it was never charged.
    postpaid = make_account("voice-payg")
    moment = (timezone.now() - timedelta(minutes=5)).isoformat()
    huge = [
        {
            "id": f"chat-{n}",
            "account": postpaid.public_id,
            "type": "chat",
            "occurred_at": moment,
            "messages": 10**12,
        }
        for n in range(600)
    ]
    valid = event(
        account, id="llm-ok", type="llm", model="gpt-4o", provider="openai", input_tokens=1000
    )
    balance_before = Account.objects.get(pk=account.pk).balance_micros

    response = send(client, "post", "/api/v1/events", platform.token, {"events": [*huge, valid]})

    assert response.status_code == 200, response.content[:300]
    *rejected, accepted = response.json()["results"]
    assert {(r["status"], r["code"]) for r in rejected} == {("rejected", "400")}
    assert all("messages is at most 1,000,000" in r["reason"] for r in rejected)
    assert accepted["status"] == "accepted"
    cost = usd_to_micros(accepted["cost"])
    assert cost > 0
    assert Account.objects.get(pk=account.pk).balance_micros == balance_before - cost
    assert not UsageEvent.objects.filter(account=postpaid).exists()
    assert Account.objects.get(pk=postpaid.pk).balance_micros == 0


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"type": "chat", "messages": 1_000_001}, "messages"),
        ({"count": 1_000_001}, "count"),
        ({"type": "llm", "model": "gpt-4o", "input_tokens": 10**9 + 1}, "input_tokens"),
        (
            {"type": "llm", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 10**30},
            "output_tokens",
        ),
        (
            {
                "type": "llm",
                "model": "gpt-4o",
                "start_within": "00h-00m-30s",
                "standard_price": "1000000.01",
                "flex_price": "1",
            },
            "standard_price",
        ),
    ],
)
def test_an_event_over_a_documented_maximum_is_rejected_alone(
    client, platform, account, fields, mentions
):
    over = event(account, id="over", **fields)
    fine = event(account, id="fine", count=1)

    response = send(client, "post", "/api/v1/events", platform.token, {"events": [over, fine]})

    assert response.status_code == 200, response.content[:300]
    first, second = response.json()["results"]
    assert (first["status"], first["code"]) == ("rejected", "400")
    assert first["reason"].startswith(f"{mentions} is at most ")
    assert second["status"] == "accepted"
    assert not UsageEvent.objects.filter(event_id="over").exists()


def test_an_event_that_would_cost_more_than_one_item_may_is_rejected_alone(
    client, platform, make_account
):
    # Within every field's maximum, but at a staff rate of 100 USD a chat minute: 200,000 min.
    postpaid = make_account("voice-payg")
    Rate.objects.create(
        account=postpaid,
        component=RateComponent.CHAT,
        price=Decimal(100),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )
    big = event(postpaid, id="big", type="chat", messages=MAX_EVENT_QUANTITIES["messages"])
    small = event(postpaid, id="small", type="chat", messages=5)

    response = send(client, "post", "/api/v1/events", platform.token, {"events": [big, small]})

    assert response.status_code == 200, response.content[:300]
    first, second = response.json()["results"]
    assert (first["status"], first["code"]) == ("rejected", "400")
    assert "more than the maximum of one item" in first["reason"]
    assert second["status"] == "accepted"
    assert usd_to_micros(second["cost"]) == 100 * 1_000_000  # 5 messages: one minute at 100 USD
    assert Account.objects.get(pk=postpaid.pk).balance_micros == -usd_to_micros(second["cost"])


def test_a_postpaid_account_at_its_usage_debt_limit_has_further_events_rejected_alone(
    client, platform, make_account
):
    postpaid = make_account("voice-payg")
    post_entry(
        account=postpaid,
        amount_micros=-(MAX_USAGE_DEBT_MICROS - 1_000_000),
        kind=EntryKind.ADJUSTMENT,
        reason="owes almost the most it may",
        now=timezone.now(),
        allow_overdraft=True,
    )
    # 5 messages are one chat minute: more than the 1 USD left below the limit?
    Rate.objects.create(
        account=postpaid,
        component=RateComponent.CHAT,
        price=Decimal(2),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )
    over = event(postpaid, id="over", type="chat", messages=5)

    response = send(client, "post", "/api/v1/events", platform.token, {"events": [over]})

    assert response.status_code == 200, response.content[:300]
    [result] = response.json()["results"]
    assert (result["status"], result["code"]) == ("rejected", "402")
    assert Account.objects.get(pk=postpaid.pk).balance_micros == -(
        MAX_USAGE_DEBT_MICROS - 1_000_000
    )


def test_the_event_schema_documents_every_maximum(client, db):
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["EventIn"]

    for name, maximum in MAX_EVENT_QUANTITIES.items():
        assert f"At most {maximum:,}" in schema["properties"][name]["description"]
    for name in ("standard_price", "flex_price"):
        assert f"At most {MAX_FLEX_PRICE_USD:,} USD" in schema["properties"][name]["description"]
