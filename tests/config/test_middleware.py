"""Browser middleware is kept off the JSON API; security headers are not (config/middleware.py)."""

import pytest
from django.test import Client

from config.middleware import POLICY

BROWSER_ATTRIBUTES = ("session", "user", "_messages", "htmx")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": POLICY,
}


@pytest.fixture
def customer_token(make_account, make_key):
    return make_key(make_account("llm-api", credit_micros=1_000_000), tier="paid").token


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/api/v1/authorize", 200),
        ("get", "/api/v1/balance", 200),
        ("get", "/api/v1/no-such-operation", 404),
    ],
)
def test_api_requests_skip_the_browser_middleware_and_keep_the_security_headers(
    client, customer_token, method, path, status
):
    response = getattr(client, method)(
        path,
        *([{"feature": "llm"}, "application/json"] if method == "post" else []),
        HTTP_AUTHORIZATION=f"Bearer {customer_token}",
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == status
    for attribute in BROWSER_ATTRIBUTES:
        assert not hasattr(response.wsgi_request, attribute), attribute
    for name, value in SECURITY_HEADERS.items():
        assert response[name] == value, name
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")


def test_the_api_docs_page_still_renders(client, db):
    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"


def test_site_pages_still_get_sessions_logins_messages_and_htmx(db):
    client = Client(enforce_csrf_checks=True)

    response = client.get("/accounts/login/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    request = response.wsgi_request
    for attribute in BROWSER_ATTRIBUTES:
        assert hasattr(request, attribute), attribute
    assert request.user.is_anonymous
    assert request.htmx
    assert "csrftoken" in response.cookies
    for name, value in SECURITY_HEADERS.items():
        assert response[name] == value, name
