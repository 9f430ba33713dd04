"""API key authentication of API v1: 401 for bad keys, 403 for the wrong kind (SPEC A4, 11)."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.keys import revoke_api_key
from accounts.models import ApiKey
from usage.api.auth import touch_last_used

CUSTOMER_PATHS = [("get", "/api/v1/balance"), ("get", "/api/v1/usage"), ("get", "/api/v1/pricing")]
PLATFORM_BODY = {"events": [{"id": "e", "account": "acc_x", "type": "sms", "occurred_at": "x"}]}


def call(client, method, path, token=None, body=None, header=None):
    extra = {}
    if header is not None:
        extra["HTTP_AUTHORIZATION"] = header
    elif token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if method == "get":
        return client.get(path, **extra)
    return getattr(client, method)(path, body or {}, content_type="application/json", **extra)


def assert_error(response, status, type_):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": type_,
            "code": str(status),
            "request_id": response["X-Request-ID"],
        }
    }
    assert response.json()["error"]["message"]


@pytest.fixture
def customer(make_account, make_key):
    return make_key(make_account("llm-api"), tier="paid")


@pytest.fixture
def platform(make_key):
    return make_key()


@pytest.mark.parametrize(("method", "path"), CUSTOMER_PATHS)
def test_request_without_a_key_is_refused_with_401(client, db, method, path):
    response = call(client, method, path)

    assert_error(response, 401, "authentication_error")
    assert "x-ratelimit-limit-requests" not in response


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer no-colon-here",
        "Bearer :secret",
        "Bearer mlk_0000000000000000:",
        "Bearer " + "x" * 300 + ":y",
        "mlk_1:secret",
    ],
)
def test_malformed_authorization_header_is_refused_with_401(client, db, header):
    response = call(client, "get", "/api/v1/balance", header=header)

    assert_error(response, 401, "authentication_error")


def test_unknown_key_id_is_refused_with_401(client, db):
    response = call(client, "get", "/api/v1/balance", token="mlk_0123456789abcdef:secret")

    assert_error(response, 401, "authentication_error")


def test_wrong_secret_is_refused_with_401(client, customer):
    key_id = customer.api_key.key_id

    response = call(client, "get", "/api/v1/balance", token=f"{key_id}:not-the-secret")

    assert_error(response, 401, "authentication_error")


def test_revoked_key_is_refused_with_401(client, customer, platform):
    revoke_api_key(api_key=customer.api_key, now=timezone.now())
    revoke_api_key(api_key=platform.api_key, now=timezone.now())

    customer_answer = call(client, "get", "/api/v1/balance", token=customer.token)
    platform_answer = call(client, "post", "/api/v1/events", platform.token, PLATFORM_BODY)

    assert_error(customer_answer, 401, "authentication_error")
    assert "revoked" in customer_answer.json()["error"]["message"]
    assert_error(platform_answer, 401, "authentication_error")


@pytest.mark.parametrize(("method", "path"), [*CUSTOMER_PATHS, ("post", "/api/v1/authorize")])
def test_platform_key_on_a_customer_operation_is_refused_with_403(client, platform, method, path):
    response = call(client, method, path, platform.token, {"feature": "llm"})

    assert_error(response, 403, "permission_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/calls/c-1"),
        ("post", "/api/v1/calls/c-1/refund"),
        ("post", "/api/v1/events"),
    ],
)
def test_customer_key_on_a_platform_operation_is_refused_with_403(client, customer, method, path):
    response = call(client, method, path, customer.token, PLATFORM_BODY)

    assert_error(response, 403, "permission_error")
    # Still an answer to a customer key: it is counted and says so.
    assert response["x-ratelimit-limit-requests"] == "100"


def test_authentication_comes_before_validation(client, db):
    response = call(client, "post", "/api/v1/events", "mlp_0123456789abcdef:x", {"events": []})

    assert_error(response, 401, "authentication_error")


def test_last_used_at_is_written_at_most_once_a_minute(client, customer, platform):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        call(client, "get", "/api/v1/balance", token=customer.token)
        call(client, "post", "/api/v1/events", platform.token, PLATFORM_BODY)
    assert ApiKey.objects.get(pk=customer.api_key.pk).last_used_at == start
    assert ApiKey.objects.get(pk=platform.api_key.pk).last_used_at == start

    with time_machine.travel(start + timedelta(seconds=59), tick=False):
        call(client, "get", "/api/v1/balance", token=customer.token)
    assert ApiKey.objects.get(pk=customer.api_key.pk).last_used_at == start

    later = start + timedelta(seconds=61)
    with time_machine.travel(later, tick=False):
        call(client, "get", "/api/v1/balance", token=customer.token)
    assert ApiKey.objects.get(pk=customer.api_key.pk).last_used_at == later


def test_last_used_at_update_does_not_repeat_within_a_minute(customer, django_assert_num_queries):
    now = timezone.now()
    api_key = ApiKey.objects.get(pk=customer.api_key.pk)
    touch_last_used(api_key, now)
    stale_copy = ApiKey.objects.get(pk=customer.api_key.pk)
    stale_copy.last_used_at = now - timedelta(minutes=5)  # another process's older view

    with django_assert_num_queries(1):
        touch_last_used(stale_copy, now + timedelta(seconds=10))
    with django_assert_num_queries(0):
        touch_last_used(api_key, now + timedelta(seconds=10))
    assert ApiKey.objects.get(pk=customer.api_key.pk).last_used_at == now
