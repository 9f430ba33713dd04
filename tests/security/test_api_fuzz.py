"""API v1 against its own published OpenAPI schema, with schemathesis (SPEC section 11, G1).

Schemathesis reads /api/v1/openapi.json and sends each operation a few hundred generated
requests, valid and invalid, through the Django app in-process (WSGI, no network). Every answer
must match the schema (status, headers, body), none may be a 5xx, and an answer that refuses
the request (4xx) must leave every row of our apps as it was.

Derandomized, so a run is repeatable and CI does not turn red by chance; a failure prints the
request that reproduces it.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from accounts.models import RateTier
from billing.models import Subscription
from tests.security.db_state import recorded_writes
from tests.usage.metering import USD

EXAMPLES_PER_OPERATION = 200
# The operations that take the operator's platform key; the rest take a customer's key.
PLATFORM_OPERATIONS = {
    "/api/v1/calls/{call_id}",
    "/api/v1/calls/{call_id}/refund",
    "/api/v1/events",
    "/api/v1/customers",
    "/api/v1/customers/{external_id}",
    "/api/v1/customers/{external_id}/authorize",
    "/api/v1/customers/{external_id}/balance",
    "/api/v1/customers/{external_id}/usage",
    "/api/v1/customers/{external_id}/invoices",
    "/api/v1/customers/{external_id}/credit_grants",
    "/api/v1/customers/{external_id}/portal_sessions",
    "/api/v1/webhook_endpoints",
    "/api/v1/webhook_endpoints/{endpoint_id}",
    "/api/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
}

EXCLUDED_CHECKS = [
    # Expects a 2xx for every schema-valid input, but business rules the schema cannot state
    # answer 400: a call older than 35 days (U10), an invoice cursor that is not the account's,
    # a JSON number with more than 12 decimals.
    positive_data_acceptance,
    # Repeats every request without its key (doubling the run time) to see a 401; the key is
    # checked before any input is read, and tests/usage/test_api_auth.py and the tenancy
    # sweep cover authentication.
    ignored_auth,
]

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
# Unknown query parameters are ignored, as most HTTP APIs do (the documented ones are strictly
# validated, and JSON bodies refuse unknown fields): do not expect a 400 for them.
schema.config.generation.update(allow_extra_parameters=False)


@pytest.fixture
def wsgi_in_test_transaction(db):
    """Let the WSGI app run inside the test's transaction, as Django's test client does: at
    the start and end of each request Django would close the connection, and the transaction
    with it."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def keys(wsgi_in_test_transaction, make_account, make_key):
    """A prepaid account with credit and a key at a limit the fuzzer cannot reach (a 429 would
    only hide the operation from it), and the platform key."""
    account = make_account("llm-api", credit_micros=100 * USD)
    plan = Subscription.objects.get(account=account).plan
    plan.rate_limits = {RateTier.PAID: 1_000_000}
    plan.save(update_fields=["rate_limits"])
    return {"customer": make_key(account, tier=RateTier.PAID).token, "platform": make_key().token}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    # The fixtures make one account per operation, not per example, on purpose; and generated
    # bodies of up to 1,000 events are slow to build but are what the API must survive.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_answers_every_request_as_its_schema_says(case, keys):
    kind = "platform" if case.operation.path in PLATFORM_OPERATIONS else "customer"
    # A real key where schemathesis put its made-up one; a case that leaves the header out on
    # purpose (to see a 401) keeps it out.
    if case.headers and "Authorization" in case.headers:
        case.headers["Authorization"] = f"Bearer {keys[kind]}"
    with recorded_writes() as written:
        response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)

    if 400 <= response.status_code < 500:
        assert not written, f"a {response.status_code} answer wrote: {written}"


# Found by the fuzzer ---------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["\x00", "2026-\x00001", "\x1f"])
def test_an_invoice_cursor_with_control_characters_is_a_400_not_a_500(client, keys, cursor):
    """PostgreSQL refuses a NUL in text: the cursor was passed to a query and failed there."""
    response = client.get(
        "/api/v1/invoices",
        {"starting_after": cursor},
        HTTP_AUTHORIZATION=f"Bearer {keys['customer']}",
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
