"""PostgreSQL drops every connection in the middle of usage ingestion (SPEC L2-L4, U10).

The shared PostgreSQL server is not restarted (other test runs use it): the live server reaches
it through `TcpProxy`, which the test cuts, all connections at once and mid-stream, and keeps
refusing for a moment, three times while four platform clients post event batches and call
reports. Each client sends a failed request again until it succeeds, as the platform does.
Afterwards:

- every answer was a success or a JSON error (503, "retry"), never a half-done success;
- every reported item exists once and is charged once, whatever was cut when;
- the totals equal a sequential model: N events at one event's price, and the calls' minutes
  aggregated across calls (U4) as if they had been reported one by one;
- every balance equals its ledger, and the daily rollups equal the items they count.
"""

import http.client
import json
import threading
import time
from datetime import timedelta
from itertools import count
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.db.models import Sum

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import LedgerEntry
from tests.reliability.tcp_proxy import TcpProxy
from tests.usage.metering import concurrent, item_costs, rollup_costs
from usage.models import Call, UsageEvent

USD = 1_000_000
CLIENTS = 4
CUTS = 3
EVENTS_PER_ACCOUNT = 5  # per batch, for each of the two accounts
CALL_SECONDS = 83
# voice-payg aggregates minutes across calls (U4): each whole minute costs 0.05 (gpt-4o) + 0.09.
MINUTE_MICROS = 140_000
# The platform's pause before sending a failed request again (the answer says 1 s; shorter here).
RETRY_PAUSE_SECONDS = 0.2

pytestmark = [
    concurrent,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a TCP proxy between the app and SQLite makes no sense: SQLite is a file",
    ),
]


@pytest.fixture
def proxied_database(live_server):
    """Send every new database connection through a proxy; the test's own stays direct."""
    connection.ensure_connection()  # opened now, on the real port, for setup and assertions
    settings_dict = connection.settings_dict  # shared by every thread's connection
    proxy = TcpProxy(settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432))
    real_port = settings_dict["PORT"]
    settings_dict["PORT"] = str(proxy.port)
    try:
        yield proxy
    finally:
        settings_dict["PORT"] = real_port
        proxy.close()


class Platform:
    """One platform process: posts usage, sends failed requests again, keeps every answer."""

    def __init__(self, url: str, token: str, prepaid: Account, postpaid: Account, name: str):
        self.address = urlsplit(url)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.prepaid, self.postpaid, self.name = prepaid, postpaid, name
        self.answers: list[tuple[int, dict, dict]] = []  # status, body, headers
        self.event_ids: list[str] = []
        self.call_ids: list[str] = []
        self._ids = count()

    def send(self, method: str, path: str, body: dict) -> int:
        conn = http.client.HTTPConnection(self.address.hostname, self.address.port, timeout=30)
        try:
            conn.request(method, path, json.dumps(body), self.headers)
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
            self.answers.append((response.status, answer, dict(response.getheaders())))
            return response.status
        finally:
            conn.close()

    def send_until_done(self, method: str, path: str, body: dict) -> None:
        """Send one request until it succeeds, waiting a little after each failure."""
        for _ in range(100):
            if self.send(method, path, body) == 200:
                return
            time.sleep(RETRY_PAUSE_SECONDS)
        raise AssertionError(f"{method} {path} never succeeded after the outage")

    def report_until(self, stop: threading.Event, now) -> None:
        occurred_at = (now - timedelta(minutes=10)).isoformat()
        while not stop.is_set():
            batch = []
            for account in (self.prepaid, self.postpaid):
                for _ in range(EVENTS_PER_ACCOUNT):
                    event_id = f"{self.name}-event-{next(self._ids)}"
                    self.event_ids.append(event_id)
                    batch.append(
                        {
                            "id": event_id,
                            "account": account.public_id,
                            "type": "llm",
                            "occurred_at": occurred_at,
                            "model": "gpt-4o",
                            "provider": "openai",
                            "input_tokens": 1000,
                            "output_tokens": 100,
                        }
                    )
            self.send_until_done("POST", "/api/v1/events", {"events": batch})
            call_id = f"{self.name}-call-{next(self._ids)}"
            self.call_ids.append(call_id)
            connected_at = now - timedelta(minutes=30)
            call = {
                "account": self.postpaid.public_id,
                "status": "completed",
                "connected_at": connected_at.isoformat(),
                "ended_at": (connected_at + timedelta(seconds=CALL_SECONDS)).isoformat(),
                "llm": "gpt-4o",
            }
            self.send_until_done("PUT", f"/api/v1/calls/{call_id}", call)


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_connections_cut_mid_ingestion_lose_and_double_nothing(
    proxied_database, live_server, make_account, make_key
):
    from django.utils import timezone

    now = timezone.now()
    prepaid = make_account("llm-api", credit_micros=1000 * USD, at=now - timedelta(days=1))
    postpaid = make_account("voice-payg", at=now - timedelta(days=1))
    token = make_key().token
    platforms = [
        Platform(live_server.url, token, prepaid, postpaid, f"p{n}") for n in range(CLIENTS)
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=p.report_until, args=(stop, now)) for p in platforms]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(p.answers for p in platforms))  # the server has warmed up
        for _ in range(CUTS):
            # Cut while requests hold connections, so that some die in the middle of a batch.
            wait_for(lambda: proxied_database.open_connections >= 2)
            proxied_database.cut()
            time.sleep(0.5)  # refused meanwhile, as while PostgreSQL starts again
            proxied_database.restore()
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    answers = [answer for p in platforms for answer in p.answers]
    errors = [(status, body, headers) for status, body, headers in answers if status != 200]
    assert proxied_database.connections_cut > 0
    assert errors, "no request failed: the cuts missed the traffic"
    for status, body, headers in errors:
        assert status == 503, (status, body)
        assert body["error"]["type"] == "service_unavailable"
        assert "Retry-After" in headers

    event_ids = [event_id for p in platforms for event_id in p.event_ids]
    call_ids = [call_id for p in platforms for call_id in p.call_ids]
    assert UsageEvent.objects.count() == len(event_ids)
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == set(event_ids)
    assert Call.objects.filter(status="completed").count() == len(call_ids)

    # Sequential model: identical events cost the same; call minutes aggregate across calls.
    event_costs = set(UsageEvent.objects.values_list("cost_micros", flat=True))
    assert len(event_costs) == 1 and event_costs != {0}
    call_cost = Call.objects.aggregate(total=Sum("cost_micros"))["total"]
    assert call_cost == (len(call_ids) * CALL_SECONDS // 60) * MINUTE_MICROS

    for account in (prepaid, postpaid):
        charged = sum(
            model.objects.filter(account=account).aggregate(t=Sum("charged_micros"))["t"] or 0
            for model in (UsageEvent, Call)
        )
        usage = LedgerEntry.objects.filter(account=account, kind="usage")
        assert -(usage.aggregate(t=Sum("amount_micros"))["t"] or 0) == charged
        assert rollup_costs(account) == (item_costs(account), item_costs(account))
    assert ledger_drift() == []
