"""Deployment hardening: production settings, CSP, CSRF, login throttling, key secrets, errors.

Production settings are loaded in a subprocess with the environment a production host has
(DEBUG off), because the test settings force DEBUG on at import time.
"""

import hashlib
import json
import logging
import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from accounts.models import ApiKey
from config.middleware import POLICY
from tests.security.db_state import snapshot
from tests.security.pages import ACCOUNT_PAGES, fill, signed_in, url_values
from tests.settings_probe import run_settings_probe

PASSWORD = "correct horse battery staple"

# Read the settings the way a production host would, and fetch /healthz over HTTPS through
# the real middleware (it touches no database and renders no template).
_PRODUCTION_PROBE = """
import json, django
django.setup()
from django.conf import settings as s
from django.test import Client
response = Client().get("/healthz", secure=True, headers={"host": "example.com"})
names = [
    "DEBUG", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS", "SECURE_PROXY_SSL_HEADER",
]
print(json.dumps({
    "settings": {name: getattr(s, name) for name in names},
    "status": response.status_code,
    "headers": dict(response.headers),
}))
"""


@pytest.fixture(scope="module")
def production():
    result = run_settings_probe(
        _PRODUCTION_PROBE,
        DEBUG="false",
        PAYMENTS_TEST_MODE="true",
        SECRET_KEY="production-probe-" + "x" * 40,
        ALLOWED_HOSTS="example.com",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_cookies_are_secure_and_http_only(production):
    values = production["settings"]

    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["CSRF_COOKIE_SECURE"] is True


def test_production_forces_https_with_a_year_of_hsts(production):
    values = production["settings"]

    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert production["status"] == 200
    hsts = production["headers"]["Strict-Transport-Security"]
    assert re.fullmatch(r"max-age=(\d+); includeSubDomains; preload", hsts)
    assert int(hsts.split(";")[0].split("=")[1]) >= 365 * 24 * 3600
    assert production["headers"]["X-Content-Type-Options"] == "nosniff"
    assert production["headers"]["X-Frame-Options"] == "DENY"


# Content-Security-Policy -----------------------------------------------------------------------


def test_the_policy_allows_nothing_inline_and_nothing_from_elsewhere():
    directives = dict(d.strip().split(" ", 1) for d in POLICY.split(";"))

    assert "unsafe-inline" not in POLICY and "unsafe-eval" not in POLICY
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


class _InlineCode(HTMLParser):
    """Find what a strict policy would block: inline scripts, styles and event handlers."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        # A JSON data block (json_script) is data, not code: CSP does not apply to it.
        data_block = dict(attrs).get("type") == "application/json"
        if tag == "script" and "src" not in names and not data_block:
            self._in_script = True
        if tag == "style":
            self.found.append("<style>")
        if "style" in names:
            self.found.append(f"<{tag} style=...>")
        self.found += [f"<{tag} {n}=...>" for n in names if n.startswith("on")]

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"<script>{data.strip()[:40]}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def _pages(world):
    """Every page a member reads: the account's pages (GET) and the sign-in pages."""
    values = url_values(world, world.victim)
    urls = [fill(route, values) for route, page in ACCOUNT_PAGES.items()]
    return [*urls, "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]


def test_every_page_carries_the_strict_policy_and_needs_nothing_inline(world):
    owner = signed_in(world.victim_owner)
    anonymous = Client()
    failures = []
    for url in _pages(world):
        client = anonymous if url.startswith("/accounts/") else owner
        response = client.get(url)
        if response.status_code != 200 or "html" not in response["Content-Type"]:
            continue  # redirects, CSV, PDF and POST-only URLs
        if response.get("Content-Security-Policy") != POLICY:
            failures.append(f"{url}: policy {response.get('Content-Security-Policy')!r}")
        parser = _InlineCode()
        parser.feed(response.content.decode())
        if parser.found:
            failures.append(f"{url}: inline code the policy blocks: {parser.found}")
    assert not failures, "\n".join(failures)


# CSRF ------------------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Collect the POST targets of a page: <form method=post> and htmx hx-post attributes."""

    def __init__(self):
        super().__init__()
        self.targets: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form" and (attributes.get("method") or "").lower() == "post":
            self.targets.append(("form", attributes.get("action") or ""))
        if attributes.get("hx-post"):
            self.targets.append(("htmx", attributes["hx-post"]))


def test_every_post_form_and_htmx_request_is_refused_without_the_csrf_token(world):
    owner = signed_in(world.victim_owner)
    targets: set[tuple[str, str]] = set()
    for url in _pages(world):
        response = (Client() if url.startswith("/accounts/") else owner).get(url)
        if response.status_code == 200 and "html" in response["Content-Type"]:
            parser = _Forms()
            parser.feed(response.content.decode())
            targets |= {(kind, action or url) for kind, action in parser.targets}
    assert len(targets) >= 15, targets  # keys, team, billing, payments, sign-in forms...

    # The owner's session cookie, but no token: what a forged cross-site post carries.
    forged = Client(enforce_csrf_checks=True)
    forged.cookies = owner.cookies
    failures = []
    before = snapshot()
    for kind, action in sorted(targets):
        headers = {"HX-Request": "true"} if kind == "htmx" else {}
        response = forged.post(action, {"name": "forged"}, headers=headers)
        if response.status_code != 403:
            failures.append(f"{kind} POST {action}: {response.status_code}, expected 403")
    assert not failures, "\n".join(failures)
    assert snapshot() == before


# Login throttling ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["/accounts/login/", "/admin/login/?next=/admin/"])
def test_failed_logins_are_throttled_on_the_site_and_the_admin(make_user, clear_cache, entry):
    make_user("staff@example.test", password=PASSWORD, is_staff=True, is_superuser=True)
    client = Client()
    login = client.get(entry, follow=True)
    form_url = login.redirect_chain[-1][0] if login.redirect_chain else entry
    for _ in range(5):
        client.post(form_url, {"login": "staff@example.test", "password": "guess"})

    response = client.post(form_url, {"login": "staff@example.test", "password": PASSWORD})

    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_the_throttle_counts_failures_per_address_across_accounts(make_user, clear_cache):
    """Guessing one password on many accounts from one address is throttled too."""
    victim = make_user("last@example.test", password=PASSWORD)
    client = Client()
    for n in range(5):
        client.post("/accounts/login/", {"login": f"user{n}@example.test", "password": "guess"})

    client.post("/accounts/login/", {"login": victim.email, "password": PASSWORD})

    assert "_auth_user_id" not in client.session


# API key secrets -------------------------------------------------------------------------------


def test_a_key_secret_is_stored_only_as_a_hash_and_never_logged(world, client, caplog):
    owner = signed_in(world.victim_owner)
    caplog.set_level(logging.DEBUG)  # every logger, SQL included (DEBUG is on in tests)

    page = owner.post(
        f"/app/a/{world.victim.public_id}/keys/new/",
        {"name": "logged?", "csrfmiddlewaretoken": owner.cookies["csrftoken"].value},
        follow=True,  # post/redirect/get: the secret is shown once on the keys page
    )
    token = re.search(r"(mlk_\w+):([\w-]{40,})", page.content.decode())
    key_id, secret = token.groups()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key_id}:{secret}"}
    client.get("/api/v1/balance", **auth)
    client.post("/api/v1/authorize", {"feature": "sms"}, content_type="application/json", **auth)
    client.get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {key_id}:{secret}x")  # 401

    stored = ApiKey.objects.get(key_id=key_id)
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(snapshot())  # in no column of any table of ours
    assert caplog.records, "the capture saw nothing: it would prove nothing"
    assert secret not in caplog.text
    assert page["Cache-Control"] == "private, no-store"


# Errors ----------------------------------------------------------------------------------------


@pytest.fixture
def production_errors(settings):
    """DEBUG off, as in production; the test client hands back the 500 instead of raising."""
    settings.DEBUG = False
    return Client(raise_request_exception=False)


def test_a_crashing_page_shows_the_generic_500_without_a_traceback(
    world, production_errors, monkeypatch
):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals of the overview")

    monkeypatch.setattr("accounts.web.views.overview", explode)
    production_errors.force_login(world.victim_owner)

    response = production_errors.get(f"/app/a/{world.victim.public_id}/")

    body = response.content.decode()
    assert response.status_code == 500
    assert "Server Error" in body
    for detail in ("Traceback", "RuntimeError", "secret internals", "accounts/views.py"):
        assert detail not in body


@pytest.mark.parametrize(
    "where", ["usage.api.auth.load_key", "usage.api.app.selectors.balance_summary"]
)
def test_a_crashing_api_call_answers_the_error_shape_without_a_traceback(
    world, production_errors, monkeypatch, where
):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals of the API")

    monkeypatch.setattr(where, explode)

    response = production_errors.get(
        "/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {world.victim_key.token}"
    )

    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "The server could not complete the request.",
            "type": "api_error",
            "request_id": response["X-Request-ID"],
            "code": "500",
        }
    }
