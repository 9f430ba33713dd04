"""Every error of API v1 has one shape, bad input is a 400 and never a 500 (SPEC G1, 11)."""

import json
import logging
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from usage.api import app as api_module
from usage.reports import Conflict, NotFound, PaymentRequired, UsageError

OPERATIONS = {
    ("post", "/api/v1/authorize"),
    ("put", "/api/v1/calls/{call_id}"),
    ("post", "/api/v1/calls/{call_id}/refund"),
    ("post", "/api/v1/events"),
    ("get", "/api/v1/usage"),
    ("get", "/api/v1/balance"),
    ("get", "/api/v1/pricing"),
    ("get", "/api/v1/invoices"),
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
