"""A Python client generated from /api/v1/openapi.json by openapi-python-client drives the platform
integration end to end against a live server (issue 15, "For the operator's engineers"), down to a
`balance.low` webhook at a real receiver on 127.0.0.1, verified with the `standardwebhooks` package.

The client is generated once per session into a temporary folder; a schema the generator cannot
turn into working calls fails here, as it would for the operator's engineers.
"""

import importlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import Account
from billing.models import AuditRecord, CreditGrant, Plan
from billing.money import micros_to_api, usd_to_micros
from tests.webhooks.conftest import receiver  # noqa: F401 - fixture: a real HTTP receiver
from usage.api.app import api

PACKAGE = "meterline_client"


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """Generate the client package from the schema and import it."""
    import json

    folder = tmp_path_factory.mktemp("openapi_client")
    schema = folder / "openapi.json"
    schema.write_text(json.dumps(api.get_openapi_schema()))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


@pytest.mark.django_db(transaction=True)
def test_the_generated_client_creates_a_customer_reports_usage_authorizes_and_grants(
    generated,
    live_server,
    plans,
    make_key,
    receiver,  # noqa: F811 - the imported fixture
):
    from meterline_client import AuthenticatedClient
    from meterline_client.api.customers import (
        authorize_customer,
        create_customer,
        customer_balance,
        grant_credit,
    )
    from meterline_client.api.usage import usage_api_app_report_call as report_call
    from meterline_client.api.usage import usage_api_app_report_events as report_events
    from meterline_client.api.webhooks import create_webhook_endpoint
    from meterline_client.models import (
        AuthorizeIn,
        AuthorizeInFeature,
        CallIn,
        CallStatus,
        CreditGrantIn,
        CustomerIn,
        CustomerOut,
        EndpointIn,
        EventIn,
        EventsIn,
        EventType,
    )

    platform = make_key()
    client = AuthenticatedClient(base_url=live_server.url, token=platform.token)
    now = timezone.now()
    # Opened at its plan's low-balance line, the customer's first call takes it below.
    threshold = Plan.objects.get(code="voice-prepaid").low_balance_threshold_micros

    endpoint = create_webhook_endpoint.sync_detailed(
        client=client, body=EndpointIn(url=receiver.url, event_types=["balance.low"])
    )
    assert endpoint.status_code == 201, endpoint.content
    receiver.secrets.append(endpoint.parsed.secret)

    created = create_customer.sync_detailed(
        client=client,
        body=CustomerIn(
            external_id="ws_gen",
            name="Generated Co",
            email="billing@generated.example",
            plan="voice-prepaid",
            credit=micros_to_api(threshold),
        ),
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, CustomerOut)
    assert created.parsed.external_id == "ws_gen"
    account_id = created.parsed.id

    allowed = authorize_customer.sync_detailed(
        "ws_gen",
        client=client,
        body=AuthorizeIn(feature=AuthorizeInFeature.CALL, call_id="gen-call"),
    )
    assert allowed.status_code == 200, allowed.content
    assert allowed.parsed.allowed and allowed.parsed.max_seconds > 0

    call = report_call.sync_detailed(
        "gen-call",
        client=client,
        body=CallIn(
            customer="ws_gen",
            status=CallStatus.COMPLETED,
            connected_at=now - timedelta(minutes=5),
            ended_at=now - timedelta(minutes=5) + timedelta(seconds=83),
        ),
    )
    assert call.status_code == 200, call.content
    assert (call.parsed.account, call.parsed.customer) == (account_id, "ws_gen")
    assert call.parsed.cost == "0.110667"  # 83 s at 0.08 USD a minute
    after_call = threshold - 110_667

    # Delivered inline when the report committed (WEBHOOKS_SYNC, as tests/webhooks run them).
    [low] = receiver.received
    assert low.error == ""
    assert low.verified["type"] == "balance.low"
    assert low.verified["data"] == {
        "customer": "ws_gen",
        "account": account_id,
        "balance": micros_to_api(after_call),
        "threshold": micros_to_api(threshold),
    }

    events = report_events.sync_detailed(
        client=client,
        body=EventsIn(
            events=[
                EventIn(
                    id="gen-sms", customer="ws_gen", type_=EventType.SMS, occurred_at=now, count=1
                )
            ]
        ),
    )
    assert events.status_code == 200, events.content
    assert events.parsed.results[0].status == "accepted"

    grant = grant_credit.sync_detailed(
        "ws_gen", client=client, body=CreditGrantIn(amount="5.00", reason="Generated thanks")
    )
    assert grant.status_code == 201, grant.content
    balance = customer_balance.sync_detailed("ws_gen", client=client)
    assert balance.status_code == 200
    assert balance.parsed.balance == micros_to_api(after_call + usd_to_micros("5.00"))

    account = Account.objects.get(external_id="ws_gen")
    assert account.balance_micros == after_call + usd_to_micros("5.00")
    assert receiver.event_ids() == [low.event_id]  # back above the line: nothing more
    assert CreditGrant.objects.filter(account=account, amount_micros=5_000_000).exists()
    assert AuditRecord.objects.get(account=account).actor_key_id == platform.api_key.pk
