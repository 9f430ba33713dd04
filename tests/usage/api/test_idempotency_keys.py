"""`Idempotency-Key` on every POST of the API, with Stripe's semantics (SPEC X2)."""

import hashlib
import json
import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import AuditRecord, CreditGrant, LedgerEntry
from usage.api.idempotency import IDEMPOTENCY_RETENTION
from usage.jobs import purge_idempotency_keys
from usage.models import IdempotentRequest

CUSTOMER = {
    "external_id": "ws_1",
    "name": "Acme Voice",
    "email": "billing@acme.example",
    "plan": "voice-prepaid",
}
GRANT = {"amount": "5", "reason": "Welcome"}


@pytest.fixture
def platform(make_key):
    return make_key()


def post(client, path, key, body, idempotency_key=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key.token}"}
    if idempotency_key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content, "application/json", **headers)


def everything():
    return (
        Account.objects.count(),
        LedgerEntry.objects.count(),
        CreditGrant.objects.count(),
        AuditRecord.objects.count(),
    )


def test_a_retry_with_the_same_key_gets_the_stored_answer_and_does_nothing_again(
    client, plans, platform
):
    first = post(client, "/api/v1/customers", platform, CUSTOMER, "k1")
    grant = post(client, "/api/v1/customers/ws_1/credit_grants", platform, GRANT, "k2")
    before = everything()

    again = post(client, "/api/v1/customers", platform, CUSTOMER, "k1")
    grant_again = post(client, "/api/v1/customers/ws_1/credit_grants", platform, GRANT, "k2")

    assert (first.status_code, grant.status_code) == (201, 201)
    assert (again.status_code, again.content) == (201, first.content)
    assert (grant_again.status_code, grant_again.content) == (201, grant.content)
    assert again["Idempotent-Replayed"] == "true"
    assert everything() == before


def test_without_the_key_a_second_post_is_done_again(client, plans, platform):
    post(client, "/api/v1/customers", platform, CUSTOMER)
    post(client, "/api/v1/customers/ws_1/credit_grants", platform, GRANT)

    post(client, "/api/v1/customers/ws_1/credit_grants", platform, GRANT)

    assert CreditGrant.objects.count() == 2
    assert not IdempotentRequest.objects.exists()


def test_without_the_header_no_query_touches_the_stored_answers(client, plans, platform):
    post(client, "/api/v1/customers", platform, CUSTOMER)

    with CaptureQueriesContext(connection) as queries:
        post(client, "/api/v1/customers/ws_1/credit_grants", platform, GRANT)

    table = IdempotentRequest._meta.db_table
    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if table in q["sql"]]


def test_the_same_key_with_another_body_is_a_409_and_does_nothing(client, plans, platform):
    post(client, "/api/v1/customers", platform, CUSTOMER, "k1")
    before = everything()

    response = post(
        client, "/api/v1/customers", platform, {**CUSTOMER, "external_id": "ws_2"}, "k1"
    )

    assert response.status_code == 409
    assert "another request" in response.json()["error"]["message"]
    assert everything() == before


def test_the_same_key_on_another_path_is_a_409(client, plans, platform):
    post(client, "/api/v1/customers", platform, CUSTOMER, "k1")

    response = post(client, "/api/v1/customers/ws_1/credit_grants", platform, GRANT, "k1")

    assert response.status_code == 409
    assert CreditGrant.objects.count() == 0


def test_keys_are_scoped_by_the_api_key_so_two_callers_never_share_one(
    client, plans, platform, make_key
):
    other = make_key()

    mine = post(client, "/api/v1/customers", platform, CUSTOMER, "same")
    theirs = post(client, "/api/v1/customers", other, {**CUSTOMER, "external_id": "ws_2"}, "same")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert theirs.json()["external_id"] == "ws_2"


def test_a_request_in_flight_makes_its_twin_wait_with_a_409(client, plans, platform):
    IdempotentRequest.objects.create(
        scope=platform.api_key.key_id,
        key="k1",
        request_hash=_hash_of("/api/v1/customers", CUSTOMER),
        created_at=timezone.now(),
    )

    response = post(client, "/api/v1/customers", platform, CUSTOMER, "k1")

    assert response.status_code == 409
    assert "in progress" in response.json()["error"]["message"]
    assert not Account.objects.exists()


def _hash_of(path, body):
    digest = hashlib.sha256(f"POST {path}\n".encode())
    digest.update(json.dumps(body).encode())
    return digest.hexdigest()


def test_an_answer_without_a_valid_key_is_not_kept(client, plans, platform):
    response = client.post(
        "/api/v1/customers",
        json.dumps(CUSTOMER),
        "application/json",
        HTTP_AUTHORIZATION="Bearer mlk_nope:wrong",
        HTTP_IDEMPOTENCY_KEY="k1",
    )

    assert response.status_code == 401
    assert not IdempotentRequest.objects.exists()
    assert post(client, "/api/v1/customers", platform, CUSTOMER, "k1").status_code == 201


def test_a_refusal_is_kept_like_any_answer(client, plans, platform):
    first = post(client, "/api/v1/customers", platform, {**CUSTOMER, "plan": "nope"}, "k1")

    again = post(client, "/api/v1/customers", platform, {**CUSTOMER, "plan": "nope"}, "k1")

    assert (first.status_code, again.status_code) == (400, 400)
    assert again["Idempotent-Replayed"] == "true"
    # The same error; its request_id is this request's (the middleware's, for support).
    assert again.json()["error"]["message"] == first.json()["error"]["message"]


@pytest.mark.parametrize("value", ["", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_400(client, plans, platform, value):
    response = post(client, "/api/v1/customers", platform, CUSTOMER, value)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert not Account.objects.exists()


def test_customer_key_posts_honour_the_key_too(client, make_account, make_key):
    key = make_key(make_account(credit_micros=10_000_000), tier="paid")
    body = {"feature": "call", "call_id": "c1"}

    first = post(client, "/api/v1/authorize", key, body, "a1")
    again = post(client, "/api/v1/authorize", key, body, "a1")

    assert first.status_code == 200 and again.content == first.content
    assert again["x-ratelimit-limit-requests"] == "100"


def test_the_purge_job_deletes_answers_past_the_retention_only(db):
    now = timezone.now()
    for key, age in (("old", IDEMPOTENCY_RETENTION + timedelta(minutes=1)), ("new", timedelta())):
        IdempotentRequest.objects.create(
            scope="mlk_x", key=key, request_hash="0" * 64, status=201, created_at=now - age
        )

    message = purge_idempotency_keys(unknown_argument=True)

    assert message.startswith("1 ")
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["new"]


# Concurrency (PostgreSQL: each thread has its own connection) ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_posts_make_one_customer_and_one_grant(plans, make_key):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency needs PostgreSQL")
    platform = make_key()

    def at_once(path, body, key):
        barrier = threading.Barrier(20)
        answers = []
        lock = threading.Lock()

        def worker():
            try:
                barrier.wait()
                response = post(Client(), path, platform, body, key)
                with lock:
                    answers.append((response.status_code, response.content))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    customers = at_once("/api/v1/customers", CUSTOMER, "create-1")
    grants = at_once("/api/v1/customers/ws_1/credit_grants", GRANT, "grant-1")

    for answers, done in ((customers, 201), (grants, 201)):
        assert len(answers) == 20
        assert {status for status, _ in answers} <= {done, 409}
        # Every request that was answered with the work's result got the same one.
        assert len({content for status, content in answers if status == done}) == 1
    assert Account.objects.filter(external_id="ws_1").count() == 1
    assert CreditGrant.objects.count() == 1 and LedgerEntry.objects.count() == 1
    assert Account.objects.get(external_id="ws_1").balance_micros == 5_000_000
    # Once the first is done, a retry gets its answer.
    retry = post(Client(), "/api/v1/customers/ws_1/credit_grants", platform, GRANT, "grant-1")
    assert retry.status_code == 201
    assert ledger_drift() == []


def test_a_claim_that_cannot_be_written_is_a_503_and_nothing_is_done(
    client, plans, platform, monkeypatch
):
    def database_out(**fields):
        raise OperationalError("connection refused")

    monkeypatch.setattr(IdempotentRequest.objects, "create", database_out)

    response = post(client, "/api/v1/customers", platform, CUSTOMER, "k1")

    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert not Account.objects.exists()
