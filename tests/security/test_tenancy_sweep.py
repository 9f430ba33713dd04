"""Tenancy sweep: every URL of the site and every API operation, tried by someone else (SPEC A2).

The sweep walks Django's URL resolver and the API's OpenAPI schema, so a new page or operation
fails `test_every_url_route_is_known_to_the_sweep` (or its API twin) until it is added to
ACCOUNT_PAGES (tests/security/pages.py, with the role it needs and the form a member would post
to it), OTHER_ROUTES or API_OPERATIONS below. Each visit is a GET and a POST with a valid CSRF
token, and each is followed by a check that no row of our apps changed. The statuses expected:
404 for another customer's account or object, the same 404 an unknown id gets (nothing tells
the two apart), and 403 where a member's role lacks the action.
"""

import json
import re
import uuid
from dataclasses import dataclass, field

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import Role
from accounts.permissions import ROLE_ACTIONS
from accounts.team import invite_member
from tests.security.db_state import API_BOOKKEEPING, changes, snapshot
from tests.security.pages import (
    ACCOUNT_PAGES,
    A,
    fill,
    form_data,
    post,
    signed_in,
    url_values,
    visit,
)

# Routes that are not about one account, and why each is safe; the test named checks it.
OTHER_ROUTES: dict[str, str] = {
    "": "redirect to the dashboard; no data (test_routes_without_an_account_...)",
    "healthz": "load balancer probe; reads nothing (test_routes_without_an_account_...)",
    "favicon.ico": "redirect to a static file (test_routes_without_an_account_...)",
    "brand.css": "the brand colour from settings; no data (test_routes_without_an_account_...)",
    "readyz": "readiness probe; says which checks pass (tests/operations/test_worker_liveness)",
    "metrics": (
        "Prometheus: 404 without METRICS_TOKEN, 401 without the bearer token; aggregates only "
        "(tests/operations/test_metrics.py)"
    ),
    "app/": "sends a user to their own first account (test_routes_without_an_account_...)",
    "app/switch/": "account switcher; 404 for another's account (test_routes_without_...)",
    "app/invitations/<public_id:token>/": (
        "addressed by a secret token, accepted only by the invited address "
        "(test_an_invitation_link_cannot_be_accepted_by_someone_else)"
    ),
    "admin/login/": "our redirect to allauth's throttled login (tests/accounts/test_auth.py)",
    "stripe/webhook/<uuid:uuid>/": (
        "Stripe's webhook: authenticated by signature, not by user; listed twice because ours "
        "shadows dj-stripe's (test_an_unsigned_webhook_is_refused_and_writes_nothing)"
    ),
    "api/v1/openapi.json": "the published API schema, public by design",
    "api/v1/docs": "the API docs page, public by design",
    "api/v1/": "ninja's API root: a JSON 404",
    "api/v1/^.*$": "our catch-all: a JSON 404 for unknown API paths",
    # The API's operations: swept from the OpenAPI schema (API_OPERATIONS below).
    "api/v1/authorize": "API operation",
    "api/v1/usage": "API operation",
    "api/v1/balance": "API operation",
    "api/v1/pricing": "API operation",
    "api/v1/invoices": "API operation",
    "api/v1/events": "API operation",
    "api/v1/calls/<call_id>": "API operation",
    "api/v1/calls/<call_id>/refund": "API operation",
    "api/v1/customers": "API operation",
    "api/v1/customers/<external_id>": "API operation",
    "api/v1/customers/<external_id>/authorize": "API operation",
    "api/v1/customers/<external_id>/balance": "API operation",
    "api/v1/customers/<external_id>/usage": "API operation",
    "api/v1/customers/<external_id>/invoices": "API operation",
    "api/v1/customers/<external_id>/credit_grants": "API operation",
    "api/v1/customers/<external_id>/portal_sessions": "API operation",
    "api/v1/webhook_endpoints": "API operation",
    "api/v1/webhook_endpoints/<endpoint_id>": "API operation",
    "api/v1/webhook_endpoints/<endpoint_id>/rotate_secret": "API operation",
    "portal/<str:token>/": (
        "a one-time link named by a secret token (only its hash is stored), used once, valid "
        "five minutes (tests/accounts/test_portal_links.py)"
    ),
}

# Whole subtrees left out of the per-route tables, with the reason.
ALLOWED_PREFIXES: dict[str, str] = {
    # Hundreds of generated routes, all behind AdminSite.admin_view, which turns away anyone
    # who is not staff: test_the_admin_refuses_a_customer_everywhere visits every one.
    "admin/": "Django admin: staff only",
    # allauth's pages act on the signed-in user's own login, email and password, or on a secret
    # key in the URL; none names an account of ours. Login throttling is tested separately.
    "accounts/": "django-allauth: the user's own credentials",
}


def url_routes():
    """Yield (route, namespace-qualified name, pattern) for every URL pattern of the site."""

    def walk(resolver, prefix, namespace):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                space = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern, prefix + str(pattern.pattern), space)
            else:
                assert isinstance(pattern, URLPattern)
                name = f"{namespace}{pattern.name}" if pattern.name else None
                yield prefix + str(pattern.pattern), name, pattern

    yield from walk(get_resolver(), "", "")


def leaks(world, response, *sent) -> list[str]:
    """Return the victim's identifiers the answer shows, apart from those the request sent
    (an error that repeats the caller's own input reveals nothing)."""
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    body = raw.decode(errors="replace")
    return [s for s in world.victim_secrets() if s in body and not any(s in x for x in sent)]


def assert_no_failures(failures: list[str]) -> None:
    assert not failures, "\n".join(failures)


# The sweep knows every route -----------------------------------------------------------------


def test_every_url_route_is_known_to_the_sweep(db):
    routes = {route for route, _, _ in url_routes()}
    swept = {r for r in routes if not r.startswith(tuple(ALLOWED_PREFIXES))}

    unknown = swept - ACCOUNT_PAGES.keys() - OTHER_ROUTES.keys()
    gone = (ACCOUNT_PAGES.keys() | OTHER_ROUTES.keys()) - routes

    assert not unknown, f"New URL routes: add them to ACCOUNT_PAGES or OTHER_ROUTES: {unknown}"
    assert not gone, f"Routes the sweep knows that no longer exist: {gone}"


def test_every_api_operation_is_known_to_the_sweep(client, db):
    schema = client.get("/api/v1/openapi.json").json()
    operations = {(m.upper(), p) for p, methods in schema["paths"].items() for m in methods}

    assert operations == set(API_OPERATIONS), "New or removed API operations: update API_OPERATIONS"


# Another customer's account ------------------------------------------------------------------


def test_a_stranger_gets_404_on_every_page_of_another_account(world):
    client = signed_in(world.stranger)
    failures = []
    for route, page in ACCOUNT_PAGES.items():
        values = url_values(world, world.victim)
        url = fill(route, values)
        unknown_url = fill(route, {**values, "public_id": "acc_doesnotexist"})
        data = form_data(page, values)
        before = snapshot()
        for (method, response), (_, unknown) in zip(
            visit(client, url, data), visit(client, unknown_url, data), strict=True
        ):
            # A GET of a POST-only payments URL is a 405 before any lookup, for every account.
            if response.status_code != 404 and not (
                response.status_code == 405 and method == "GET" and page.action != A.VIEW
            ):
                failures.append(f"{method} {url}: {response.status_code}, expected 404")
            if response.status_code != unknown.status_code:
                failures.append(
                    f"{method} {url}: {response.status_code}, but {unknown.status_code} for an "
                    "unknown account: the two must look alike"
                )
            if leak := leaks(world, response, url, repr(data)):
                failures.append(f"{method} {url}: the answer shows {leak}")
        if diff := changes(before, snapshot()):
            failures.append(f"{route}: wrote {diff}")
    assert_no_failures(failures)


def test_a_stranger_cannot_reach_another_accounts_objects_through_their_own(world):
    """The stranger's own account in the URL, the victim's key, card, invoice... in the rest."""
    client = signed_in(world.stranger)
    failures = []
    for route, page in ACCOUNT_PAGES.items():
        if route.count("<") == 1 and not page.body_names_objects:
            continue  # names nothing but the account
        values = url_values(world, world.stranger_account)
        url = fill(route, values)
        data = form_data(page, values)
        before = snapshot()
        for method, response in visit(client, url, data):
            # 404 for an object that is not the account's; the pages that report a refused
            # action as a message (team, cards) redirect back to themselves, and forms show
            # the error (400), having written nothing.
            allowed = {404, 302, 400} | ({405} if method == "GET" else set())
            if response.status_code not in allowed:
                failures.append(f"{method} {url}: {response.status_code}, expected 404")
            if leak := leaks(world, response, url, repr(data)):
                failures.append(f"{method} {url}: the answer shows {leak}")
        if diff := changes(before, snapshot()):
            failures.append(f"{route}: wrote {diff}")
    assert_no_failures(failures)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER, Role.BILLING])
def test_a_member_gets_403_on_every_page_their_role_does_not_allow(
    world, make_user, add_member, role
):
    user = make_user(f"{role}@example.test")
    add_member(user, world.victim, role)
    client = signed_in(user)
    refused = {r: p for r, p in ACCOUNT_PAGES.items() if p.action not in ROLE_ACTIONS[role]}
    assert refused, "every role but owner and admin lacks some action"
    failures = []
    for route, page in refused.items():
        values = url_values(world, world.victim)
        url = fill(route, values)
        before = snapshot()
        for method, response in visit(client, url, form_data(page, values)):
            allowed = {403} | ({405} if method == "GET" else set())
            if response.status_code not in allowed:
                failures.append(f"{role} {method} {url}: {response.status_code}, expected 403")
        if diff := changes(before, snapshot()):
            failures.append(f"{role} {route}: wrote {diff}")
    assert_no_failures(failures)


def test_the_sweeps_forms_would_write_for_the_accounts_owner(world):
    """The control: the same posts by the victim's owner change something, so the refusals
    above are the checks at work and not forms that could never succeed."""
    client = signed_in(world.victim_owner)
    silent = []
    for route, page in ACCOUNT_PAGES.items():
        if page.action == A.VIEW or page.redirects_only or page.write_proven_in:
            continue
        values = url_values(world, world.victim)
        before = snapshot()
        # Each post is undone afterwards, so that one (revoking the key) cannot spoil the
        # next (a budget on that key).
        with transaction.atomic():
            response = post(client, fill(route, values), form_data(page, values))
            written = changes(before, snapshot())
            transaction.set_rollback(True)
        if response.status_code >= 400 or not written:
            silent.append(f"{route}: {response.status_code}, nothing written")
    assert_no_failures(silent)


# Routes without an account -------------------------------------------------------------------


def test_routes_without_an_account_show_a_stranger_nothing_of_the_victim(world):
    client = signed_in(world.stranger)
    before = snapshot()

    home = client.get("/app/")
    switch = client.get("/app/switch/", {"account": world.victim.public_id})
    public = [client.get(path) for path in ("/", "/healthz", "/favicon.ico", "/brand.css")]

    assert home.status_code == 302
    assert home.url.endswith(f"/app/a/{world.stranger_account.public_id}/")
    assert switch.status_code == 404
    assert all(r.status_code in (200, 301, 302) for r in public)
    for response in [home, *public]:
        assert not leaks(world, response)
    assert not leaks(world, switch, world.victim.public_id)
    assert changes(before, snapshot()) == {}


def test_an_invitation_link_cannot_be_accepted_by_someone_else(world):
    issued = invite_member(
        account=world.victim,
        email="second-invitee@example.test",
        role=Role.OWNER,
        invited_by=world.victim_owner,
        actor_role=Role.OWNER,
        now=timezone.now(),  # the page checks expiry against the real clock
    )
    client = signed_in(world.stranger)
    before = snapshot()

    response = post(client, f"/app/invitations/{issued.token}/", {})

    assert response.status_code == 200
    assert "This invitation is for second-invitee@example.test" in response.content.decode()
    assert changes(before, snapshot()) == {}
    assert client.get("/app/invitations/not-a-token/").status_code == 404


def test_an_unsigned_webhook_is_refused_and_writes_nothing(world):
    apps_with_stripe = ("accounts", "billing", "usage", "djstripe")
    before = snapshot(app_labels=apps_with_stripe)
    body = json.dumps({"id": "evt_forged", "type": "checkout.session.completed", "data": {}})

    response = Client().post(
        f"/stripe/webhook/{uuid.uuid4()}/", body, content_type="application/json"
    )

    assert 400 <= response.status_code < 500
    assert changes(before, snapshot(app_labels=apps_with_stripe)) == {}


def test_the_admin_refuses_a_customer_everywhere(world):
    """Every admin route, named with the victim's objects, turns a customer away.

    Every route is fetched; the ones that change something (add, change, delete and the
    admin's own forms) are posted to as well, with a valid CSRF token.
    """
    client = signed_in(world.victim_owner)  # a customer, even of the victim: not staff
    kwargs_for = {"object_id": str(world.victim.pk), "app_label": "accounts"}
    writes = ("_add", "_change", "_delete", "password_change", "autocomplete")
    failures = []
    before = snapshot()
    routes = [(r, n, p) for r, n, p in url_routes() if r.startswith("admin/") and n]
    assert len(routes) > 100
    for _route, name, pattern in routes:
        if name == "admin_login_redirect":
            continue  # ours, tested in tests/accounts/test_auth.py
        names = list(pattern.pattern.regex.groupindex)
        url = reverse(name, kwargs={k: kwargs_for.get(k, "1") for k in names})
        # admin_view sends logout to the admin index (which then asks for the login); the
        # admin's login page is shadowed by ours, which refuses a signed-in customer (403).
        turned_away = {"admin:logout": "/admin/"}.get(name, "/admin/login/")
        answers = [("GET", client.get(url))]
        if name.endswith(writes):
            answers.append(("POST", post(client, url, {"name": "intruder"})))
        for method, response in answers:
            if name == "admin:login":
                if response.status_code != 403:
                    failures.append(f"{method} {url}: {response.status_code}, expected 403")
            elif response.status_code != 302 or not response.url.startswith(turned_away):
                failures.append(f"{method} {url}: {response.status_code}, expected a redirect")
    assert changes(before, snapshot()) == {}
    assert_no_failures(failures)


# The JSON API --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    key: str  # "customer" or "platform": the kind of key the operation takes
    body: dict | None = None
    query: dict = field(default_factory=dict)


# Every operation, with input naming the victim's objects wherever the operation takes any.
API_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/api/v1/authorize"): Operation(
        "customer", {"feature": "call", "call_id": "{call_id}"}
    ),
    ("GET", "/api/v1/usage"): Operation("customer"),
    ("GET", "/api/v1/balance"): Operation("customer"),
    ("GET", "/api/v1/pricing"): Operation("customer"),
    ("GET", "/api/v1/invoices"): Operation("customer", query={"starting_after": "{number}"}),
    ("PUT", "/api/v1/calls/{call_id}"): Operation(
        "platform",
        {
            "account": "{public_id}",
            "status": "completed",
            "connected_at": "2026-03-15T11:00:00Z",
            "ended_at": "2026-03-15T11:10:00Z",
        },
    ),
    ("POST", "/api/v1/calls/{call_id}/refund"): Operation("platform", {"reason": "intruder"}),
    # The platform's customers and webhook endpoints: platform key only (a customer key: 403).
    ("POST", "/api/v1/customers"): Operation(
        "platform", {"external_id": "intruder", "name": "Intruder", "email": "i@example.test"}
    ),
    ("GET", "/api/v1/customers"): Operation("platform"),
    ("GET", "/api/v1/customers/{external_id}"): Operation("platform"),
    ("PATCH", "/api/v1/customers/{external_id}"): Operation("platform", {"name": "intruder"}),
    ("POST", "/api/v1/customers/{external_id}/authorize"): Operation(
        "platform", {"feature": "call", "call_id": "{call_id}"}
    ),
    ("GET", "/api/v1/customers/{external_id}/balance"): Operation("platform"),
    ("GET", "/api/v1/customers/{external_id}/usage"): Operation("platform"),
    ("GET", "/api/v1/customers/{external_id}/invoices"): Operation("platform"),
    ("POST", "/api/v1/customers/{external_id}/credit_grants"): Operation(
        "platform", {"amount": "5.00", "reason": "intruder"}
    ),
    ("POST", "/api/v1/customers/{external_id}/portal_sessions"): Operation(
        "platform", {"email": "intruder@example.test"}
    ),
    ("POST", "/api/v1/webhook_endpoints"): Operation(
        "platform", {"url": "https://intruder.example.test/hooks"}
    ),
    ("GET", "/api/v1/webhook_endpoints"): Operation("platform"),
    ("GET", "/api/v1/webhook_endpoints/{endpoint_id}"): Operation("platform"),
    ("PATCH", "/api/v1/webhook_endpoints/{endpoint_id}"): Operation("platform", {"enabled": False}),
    ("DELETE", "/api/v1/webhook_endpoints/{endpoint_id}"): Operation("platform"),
    ("POST", "/api/v1/webhook_endpoints/{endpoint_id}/rotate_secret"): Operation("platform"),
    ("POST", "/api/v1/events"): Operation(
        "platform",
        {
            "events": [
                {
                    "id": "intruder-1",
                    "account": "{public_id}",
                    "type": "sms",
                    "occurred_at": "2026-03-15T11:00:00Z",
                    "count": 1,
                }
            ]
        },
    ),
}


def _fill_json(value, values):
    if isinstance(value, dict):
        return {k: _fill_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_json(v, values) for v in value]
    return fill(value, values) if isinstance(value, str) else value


def test_every_api_operation_with_another_accounts_key_shows_and_changes_nothing(
    world, client, make_key
):
    """A customer key acts for its own account only: the platform's operations answer it 403,
    its own operations answer about its account, and nothing of the victim shows or changes.
    (Customer operations take no account in their input, so there is nothing to 404.)"""
    values = {
        "public_id": world.victim.public_id,
        "call_id": world.call.call_id,
        "number": world.invoice.number,
        "external_id": world.victim.external_id or "victim-external-id",
        "endpoint_id": "we_1",
    }
    # A paid-tier key of the stranger's: the sweep sends more requests than a free tier's minute.
    key = make_key(world.stranger_key.api_key.account, tier="paid")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key.token}"}
    failures = []
    for (method, path), operation in API_OPERATIONS.items():
        url = fill(path, values)
        query = _fill_json(operation.query, values)
        body = _fill_json(operation.body or {}, values)
        before = snapshot(ignore=API_BOOKKEEPING)
        if method == "GET":
            response = client.get(url, query, **auth)
        else:
            response = getattr(client, method.lower())(
                url, json.dumps(body), content_type="application/json", **auth
            )
        expected = {403} if operation.key == "platform" else {200, 400, 402}
        if response.status_code not in expected:
            failures.append(f"{method} {url}: {response.status_code}, expected {expected}")
        if leak := leaks(world, response, url, repr(query), repr(body)):
            failures.append(f"{method} {url}: the answer shows {leak}")
        if diff := changes(before, snapshot(ignore=API_BOOKKEEPING)):
            failures.append(f"{method} {url}: wrote {diff}")
    assert_no_failures(failures)


# Ids that name nothing --------------------------------------------------------------------------


def test_a_nul_byte_in_any_id_of_a_dashboard_url_answers_404_and_writes_nothing(world):
    # The account's own owner: only the NUL byte stands between the request and the page.
    client = signed_in(world.victim_owner)
    values = url_values(world, world.victim)
    before = snapshot()
    failures = []
    for route, page in ACCOUNT_PAGES.items():
        for name in re.findall(r"<public_id:(\w+)>", route):
            for bad_id in (values[name] + "\x00", "\x00" + values[name]):
                bad = {**values, name: bad_id}
                for method, response in visit(client, fill(route, bad), form_data(page, bad)):
                    if response.status_code != 404:
                        failures.append(f"{method} {route} ({name}): {response.status_code}")
    switch = client.get("/app/switch/", {"account": world.victim.public_id + "\x00"})
    invitation = client.get(f"/app/invitations/{world.invitation.token}%00/")

    assert_no_failures(failures)
    assert (switch.status_code, invitation.status_code) == (404, 404)
    assert changes(before, snapshot()) == {}
