"""The operator's customers by their own ids, with the platform key (SPEC X1, issue 15)."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models import Min
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.ledger.drift import ledger_drift
from billing.models import AuditRecord, CreditGrant, EntryKind, LedgerEntry, StaffAction
from billing.money import micros_to_api, usd_to_micros
from tests.billing.postings import post_entry
from usage.models import Call
from usage.reads.keys import load_customer, load_key

USD = 1_000_000


@pytest.fixture(autouse=True)
def no_ledger_drift(db):
    yield
    assert ledger_drift() == []


@pytest.fixture
def platform(make_key):
    return make_key()


def send(client, method, path, key, body=None, **headers):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {key.token}", **headers}
    if method == "get":
        return client.get(path, **extra)
    content = body if isinstance(body, str) else json.dumps(body if body is not None else {})
    return getattr(client, method)(path, content, "application/json", **extra)


def new_customer(client, platform, external_id="ws_1", **fields):
    body = {
        "external_id": external_id,
        "name": "Acme Voice",
        "email": "billing@acme.example",
        "plan": "voice-prepaid",
        **fields,
    }
    return send(client, "post", "/api/v1/customers", platform, body)


def assert_error(response, status, type_):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (type_, str(status))
    return error["message"]


def everything():
    return (
        Account.objects.count(),
        LedgerEntry.objects.count(),
        AuditRecord.objects.count(),
        CreditGrant.objects.count(),
    )


# Create ------------------------------------------------------------------------------------


def test_a_customer_is_created_by_external_id_with_its_emails_metadata_and_credit(
    client, plans, platform
):
    response = new_customer(
        client,
        platform,
        email=["Billing@Acme.example", "cfo@acme.example"],
        metadata={"crm": "0015g"},
        credit="25.50",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    account = Account.objects.get(external_id="ws_1")
    assert body["id"] == account.public_id and body["external_id"] == "ws_1"
    assert body["email"] == ["billing@acme.example", "cfo@acme.example"]
    assert account.extra_billing_emails == "cfo@acme.example"
    assert body["metadata"] == account.metadata == {"crm": "0015g"}
    assert (body["plan"], body["billing_mode"]) == ("voice-prepaid", "prepaid")
    assert body["balance"] == micros_to_api(usd_to_micros("25.50")) == "25.500000"
    assert account.balance_micros == usd_to_micros("25.50")
    assert body["period_start"] and body["period_end"] and body["parent"] is None


def test_a_customer_created_by_the_platform_gets_no_signup_credit(client, plans, platform):
    assert plans["llm-api"].signup_credit_micros > 0

    response = new_customer(client, platform, plan="llm-api")

    account = Account.objects.get(external_id="ws_1")
    assert response.json()["balance"] == "0.000000"
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.SIGNUP_CREDIT).exists()
    assert account.memberships.count() == 0


def test_a_subaccount_names_its_parent_by_external_id(client, plans, platform):
    new_customer(client, platform, external_id="agency")

    response = new_customer(client, platform, external_id="client-1", parent="agency")

    assert response.status_code == 201, response.content
    assert response.json()["parent"] == "agency"
    child = Account.objects.get(external_id="client-1")
    assert child.parent.external_id == "agency"


def test_the_same_external_id_again_is_a_409_naming_the_existing_customer(client, plans, platform):
    first = new_customer(client, platform).json()
    before = everything()

    response = new_customer(client, platform, name="Someone else", credit="5")

    message = assert_error(response, 409, "conflict")
    assert first["id"] in message
    assert everything() == before


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"external_id": "a\x00b"}, "external_id"),
        ({"external_id": "a/b"}, "external_id"),
        ({"external_id": "x" * 256}, "external_id"),
        ({"plan": "no-such-plan"}, "No plan"),
        ({"email": "not an email"}, "not an email"),
        ({"email": []}, "at least one"),
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": {"k": "v" * 501}}, "metadata"),
        ({"credit": "1.0000001"}, "credit"),
        ({"parent": "nobody"}, "parent"),
    ],
)
def test_bad_customer_input_is_a_400_and_writes_nothing(client, plans, platform, fields, words):
    before = everything()

    response = new_customer(client, platform, **fields)

    assert words in assert_error(response, 400, "invalid_request_error")
    assert everything() == before


# Read, update, list ------------------------------------------------------------------------


def test_a_customer_is_read_by_external_id(client, plans, platform):
    created = new_customer(client, platform).json()

    response = send(client, "get", "/api/v1/customers/ws_1", platform)

    assert response.status_code == 200
    assert response.json() == created


def test_an_unknown_external_id_is_a_404_in_the_error_shape(client, plans, platform):
    for method, path in [
        ("get", "/api/v1/customers/nobody"),
        ("patch", "/api/v1/customers/nobody"),
        ("post", "/api/v1/customers/nobody/authorize"),
        ("get", "/api/v1/customers/nobody/balance"),
        ("get", "/api/v1/customers/nobody/usage"),
        ("get", "/api/v1/customers/nobody/invoices"),
        ("post", "/api/v1/customers/nobody/credit_grants"),
        ("post", "/api/v1/customers/nobody/portal_sessions"),
    ]:
        body = {
            "post": {"feature": "chat"}
            if path.endswith("authorize")
            else {"amount": "1", "reason": "r"}
            if path.endswith("grants")
            else {"email": "a@b.example"},
            "patch": {"name": "New"},
        }.get(method)
        response = send(client, method, path, platform, body)
        assert "nobody" in assert_error(response, 404, "not_found"), path


def test_patch_changes_name_emails_and_metadata_all_at_once(client, plans, platform):
    new_customer(client, platform, metadata={"a": "1"})

    response = send(
        client,
        "patch",
        "/api/v1/customers/ws_1",
        platform,
        {"name": "Acme Ltd", "email": ["new@acme.example", "x@acme.example"], "metadata": {}},
    )

    assert response.status_code == 200, response.content
    account = Account.objects.get(external_id="ws_1")
    assert (account.name, account.email, account.metadata) == ("Acme Ltd", "new@acme.example", {})
    assert response.json()["email"] == ["new@acme.example", "x@acme.example"]


def test_patch_moves_the_plan_now_by_the_staff_rule_audited_as_the_platform_key(
    client, plans, platform
):
    new_customer(client, platform)

    response = send(client, "patch", "/api/v1/customers/ws_1", platform, {"plan": "voice-payg"})

    assert response.status_code == 200, response.content
    assert (response.json()["plan"], response.json()["billing_mode"]) == ("voice-payg", "postpaid")
    record = AuditRecord.objects.get(action=StaffAction.CHANGE_PLAN)
    assert (record.actor_id, record.actor_key_id) == (None, platform.api_key.pk)


def test_patch_with_next_period_leaves_the_plan_pending(client, plans, platform):
    new_customer(client, platform)

    response = send(
        client,
        "patch",
        "/api/v1/customers/ws_1",
        platform,
        {"plan": "llm-api", "effective": "next_period"},
    )

    assert (response.json()["plan"], response.json()["pending_plan"]) == (
        "voice-prepaid",
        "llm-api",
    )


def test_a_refused_plan_change_leaves_the_other_fields_unchanged(client, plans, platform):
    new_customer(client, platform)

    response = send(
        client,
        "patch",
        "/api/v1/customers/ws_1",
        platform,
        {"name": "Renamed", "plan": "voice-prepaid"},
    )

    assert "already on that plan" in assert_error(response, 400, "invalid_request_error")
    assert Account.objects.get(external_id="ws_1").name == "Acme Voice"


def test_customers_are_listed_newest_first_a_page_at_a_time(client, plans, platform, make_account):
    make_account()  # no external id: not one of the platform's customers
    for n in range(5):
        new_customer(client, platform, external_id=f"ws_{n}")

    first = send(client, "get", "/api/v1/customers?limit=2", platform).json()
    second = send(client, "get", "/api/v1/customers?limit=2&starting_after=ws_3", platform).json()
    last = send(client, "get", "/api/v1/customers?limit=2&starting_after=ws_1", platform).json()

    assert [c["external_id"] for c in first["customers"]] == ["ws_4", "ws_3"]
    assert first["has_more"] is True
    assert [c["external_id"] for c in second["customers"]] == ["ws_2", "ws_1"]
    assert ([c["external_id"] for c in last["customers"]], last["has_more"]) == (["ws_0"], False)
    bad = send(client, "get", "/api/v1/customers?starting_after=nobody", platform)
    assert_error(bad, 400, "invalid_request_error")


# Tenancy -----------------------------------------------------------------------------------


def test_a_customer_key_gets_403_on_every_customer_operation(
    client, plans, platform, make_account, make_key
):
    new_customer(client, platform)
    other = make_key(make_account(), tier="paid")
    for method, path in [
        ("post", "/api/v1/customers"),
        ("get", "/api/v1/customers"),
        ("get", "/api/v1/customers/ws_1"),
        ("patch", "/api/v1/customers/ws_1"),
        ("post", "/api/v1/customers/ws_1/authorize"),
        ("get", "/api/v1/customers/ws_1/balance"),
        ("get", "/api/v1/customers/ws_1/usage"),
        ("get", "/api/v1/customers/ws_1/invoices"),
        ("post", "/api/v1/customers/ws_1/credit_grants"),
        ("post", "/api/v1/customers/ws_1/portal_sessions"),
    ]:
        response = send(client, method, path, other, {})
        message = assert_error(response, 403, "permission_error")
        assert "ws_1" not in response.content.decode() and "platform" in message, path


def test_a_customer_key_cannot_report_usage_for_a_customer(client, plans, platform, make_key):
    new_customer(client, platform)
    own = make_key(Account.objects.get(external_id="ws_1"))
    now = timezone.now()
    call = {"customer": "ws_1", "status": "completed", "connected_at": now.isoformat()}
    event = {"id": "e1", "customer": "ws_1", "type": "chat", "occurred_at": now.isoformat()}

    assert_error(send(client, "put", "/api/v1/calls/c1", own, call), 403, "permission_error")
    response = send(client, "post", "/api/v1/events", own, {"events": [{**event, "messages": 1}]})
    assert_error(response, 403, "permission_error")
    assert not Call.objects.exists()


# Usage reports by customer -------------------------------------------------------------------


def call_body(**fields):
    connected = timezone.now() - timedelta(minutes=30)
    return {
        "status": "completed",
        "connected_at": connected.isoformat(),
        "ended_at": (connected + timedelta(seconds=83)).isoformat(),
        **fields,
    }


def test_a_call_reported_by_customer_is_charged_like_one_by_account_and_names_both(
    client, plans, platform
):
    new_customer(client, platform, credit="10")
    account = Account.objects.get(external_id="ws_1")

    report = call_body()
    by_customer = send(client, "put", "/api/v1/calls/c1", platform, {**report, "customer": "ws_1"})
    by_account = send(
        client, "put", "/api/v1/calls/c2", platform, {**report, "account": account.public_id}
    )
    repeat = send(
        client, "put", "/api/v1/calls/c1", platform, {**report, "account": account.public_id}
    )

    assert by_customer.status_code == by_account.status_code == 200, by_customer.content
    for body in (by_customer.json(), by_account.json()):
        assert (body["account"], body["customer"]) == (account.public_id, "ws_1")
    assert by_customer.json()["cost"] == by_account.json()["cost"] != "0.000000"
    # Named either way it is the same report: a repeat, not a conflict.
    assert repeat.status_code == 200
    account.refresh_from_db()
    charged = usd_to_micros(by_customer.json()["cost"]) * 2
    assert account.balance_micros == 10 * USD - charged


@pytest.mark.parametrize(
    "names", [{}, {"account": "acc_x", "customer": "ws_1"}], ids=["neither", "both"]
)
def test_a_report_needs_exactly_one_of_account_and_customer(client, plans, platform, names):
    new_customer(client, platform)
    now = timezone.now().isoformat()
    event = {"id": "e1", "type": "chat", "occurred_at": now, "messages": 1, **names}

    call = send(client, "put", "/api/v1/calls/c1", platform, call_body(**names))
    events = send(client, "post", "/api/v1/events", platform, {"events": [event]})

    for response in (call, events):
        assert "exactly one of account and customer" in assert_error(
            response, 400, "invalid_request_error"
        )


def test_a_call_of_an_unknown_customer_is_a_404(client, plans, platform):
    response = send(client, "put", "/api/v1/calls/c1", platform, call_body(customer="nobody"))

    assert "nobody" in assert_error(response, 404, "not_found")


def test_events_by_customer_are_charged_and_an_unknown_customer_is_rejected_alone(
    client, plans, platform
):
    new_customer(client, platform, plan="llm-api", credit="10")
    account = Account.objects.get(external_id="ws_1")
    now = timezone.now().isoformat()

    def event(id_, **names):
        return {
            "id": id_,
            "type": "llm",
            "occurred_at": now,
            "model": "gpt-4o",
            "provider": "openai",
            "input_tokens": 1000,
            "output_tokens": 500,
            **names,
        }

    response = send(
        client,
        "post",
        "/api/v1/events",
        platform,
        {
            "events": [
                event("e1", customer="ws_1"),
                event("e2", customer="nobody"),
                event("e3", account=account.public_id),
                event("e1", account=account.public_id),
            ]
        },
    )

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted", "duplicate"]
    assert (results[1]["code"], results[1]["reason"]) == ("404", "no customer 'nobody'")
    account.refresh_from_db()
    cost = usd_to_micros(results[0]["cost"])
    assert cost > 0 and account.balance_micros == 10 * USD - 2 * cost


# Acting for a customer -----------------------------------------------------------------------


def test_the_platform_authorizes_for_a_customer_without_its_key_or_its_rate_limit(
    client, plans, platform
):
    new_customer(client, platform, credit="10")

    responses = [
        send(client, "post", "/api/v1/customers/ws_1/authorize", platform, {"feature": "chat"})
        for _ in range(11)  # more than the free tier's 10 a minute
    ]
    responses.append(
        send(
            client,
            "post",
            "/api/v1/customers/ws_1/authorize",
            platform,
            {"feature": "call", "call_id": "c1"},
        )
    )

    assert {r.status_code for r in responses} == {200}
    body = responses[-1].json()
    assert body["allowed"] is True and body["max_seconds"] > 0 and body["reservation_id"]
    assert "x-ratelimit-limit-requests" not in responses[0]
    account = Account.objects.get(external_id="ws_1")
    assert account.held_micros > 0


def test_the_platform_authorize_answers_402_when_the_customer_cannot_pay(client, plans, platform):
    new_customer(client, platform)

    response = send(
        client, "post", "/api/v1/customers/ws_1/authorize", platform, {"feature": "call"}
    )

    assert_error(response, 402, "insufficient_quota")


def test_balance_usage_and_invoices_have_the_customer_key_shapes(client, plans, platform, make_key):
    new_customer(client, platform, credit="10")
    account = Account.objects.get(external_id="ws_1")
    own = make_key(account, tier="paid")

    for name in ("balance", "usage", "invoices"):
        theirs = send(client, "get", f"/api/v1/customers/ws_1/{name}", platform)
        mine = send(client, "get", f"/api/v1/{name}", own)
        assert theirs.status_code == mine.status_code == 200, theirs.content
        assert theirs.json() == mine.json(), name
    balance = send(client, "get", "/api/v1/customers/ws_1/balance", platform).json()
    assert (balance["account"], balance["customer"]) == (account.public_id, "ws_1")
    assert balance["balance"] == "10.000000"


def test_the_customer_read_for_the_platform_equals_the_orm(client, plans, platform, make_account):
    new_customer(client, platform, credit="3")
    account = Account.objects.select_related("subscription__plan").get(external_id="ws_1")
    post_entry(
        account=account,
        amount_micros=1 * USD,
        kind=EntryKind.PROMOTIONAL,
        now=timezone.now(),
        grant_expires_at=timezone.now() + timedelta(days=3),
    )
    platform_key = load_key(platform.api_key.key_id)

    with CaptureQueriesContext(connection) as queries:
        loaded = load_customer(platform_key=platform_key, external_id="ws_1")

    assert len(queries) == 1
    account = Account.objects.get(pk=account.pk)
    fields = [f.attname for f in Account._meta.concrete_fields]
    assert [getattr(loaded.account, f) for f in fields] == [getattr(account, f) for f in fields]
    assert loaded.subscription.pk == account.subscription.pk
    assert loaded.subscription.plan.code == "voice-prepaid"
    assert (
        loaded.credit_expires_at
        == (
            CreditGrant.objects.filter(account=account, remaining_micros__gt=0).aggregate(
                first=Min("expires_at")
            )["first"]
        )
    )
    assert loaded.last_hard_budget_period is None
    assert load_customer(platform_key=platform_key, external_id="nobody") is None


def test_a_credit_grant_posts_an_entry_and_a_grant_audited_as_the_platform_key(
    client, plans, platform
):
    new_customer(client, platform)
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    response = send(
        client,
        "post",
        "/api/v1/customers/ws_1/credit_grants",
        platform,
        {
            "amount": "12.5",
            "reason": "Sorry for the outage",
            "expires_at": expires.isoformat(),
            "priority": 5,
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    account = Account.objects.get(external_id="ws_1")
    assert (body["account"], body["customer"], body["amount"]) == (
        account.public_id,
        "ws_1",
        "12.500000",
    )
    assert body["balance"] == "12.500000" and account.balance_micros == 12_500_000
    entry = LedgerEntry.objects.get(account=account, kind=EntryKind.PROMOTIONAL)
    assert (entry.amount_micros, entry.reason, entry.actor_id) == (
        12_500_000,
        "Sorry for the outage",
        None,
    )
    grant = CreditGrant.objects.get(account=account)
    assert (grant.expires_at, grant.priority) == (expires, 5)
    record = AuditRecord.objects.get(action=StaffAction.GRANT_CREDIT)
    assert record.actor_key == ApiKey.objects.get(pk=platform.api_key.pk)
    assert record.actor is None and record.account == account


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "0", "reason": "r"},
        {"amount": "5", "reason": ""},
        {"amount": "5", "reason": "r", "expires_at": "2020-01-01T00:00:00Z"},
        {"amount": "5", "reason": "r", "priority": 101},
    ],
)
def test_a_bad_credit_grant_is_a_400_and_writes_nothing(client, plans, platform, body):
    new_customer(client, platform)
    before = everything()

    response = send(client, "post", "/api/v1/customers/ws_1/credit_grants", platform, body)

    assert_error(response, 400, "invalid_request_error")
    assert everything() == before


def test_every_customer_operation_is_documented_with_examples_and_its_errors(client, db):
    schema = client.get("/api/v1/openapi.json").json()

    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/v1/customers")
        for method, operation in methods.items()
    ]

    assert len(operations) == 10
    for path, method, operation in operations:
        responses = operation["responses"]
        ok = next(status for status in responses if status.startswith("2"))
        assert responses[ok]["content"]["application/json"]["example"], (method, path)
        assert {"400", "401", "403", "404"} <= set(responses), (method, path)
        if method in ("post", "patch"):
            assert operation["requestBody"]["content"]["application/json"]["example"], path


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_external_id_open_one_account_and_409_the_rest(plans, make_key):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency needs PostgreSQL")
    platform = make_key()
    barrier = threading.Barrier(10)
    statuses, lock = [], threading.Lock()

    def worker():
        try:
            barrier.wait()
            response = new_customer(Client(), platform)
            with lock:
                statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The unique constraint, not the look-up before it, decides between simultaneous requests.
    assert sorted(statuses) == [201] + [409] * 9
    assert Account.objects.filter(external_id="ws_1").count() == 1
