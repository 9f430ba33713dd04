"""`/metrics` after real API calls, read with prometheus_client's own parser (issue 18, item 1)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Account
from billing.jobs import register_schedules
from billing.ledger.drift import check_ledger
from billing.models import Notification
from operations.models import JobRun
from usage.models import Reservation, ReservationStatus

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.JOB_LIVENESS_CHECK_SECONDS = 0
    return settings


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Return every sample as {(name, sorted labels): value}."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def send(client, method, path, token, body=None):
    return getattr(client, method)(
        path,
        json.dumps(body or {}) if method != "get" else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_metrics_need_the_token_and_do_not_exist_without_one(client, settings, db):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_a_scrape_after_api_calls_counts_them_per_operation(
    client, metrics_settings, make_account, make_key
):
    account = make_account("llm-api")
    customer = make_key(account)
    platform = make_key()
    before = scrape(client)

    for _ in range(3):
        assert (
            send(
                client, "post", "/api/v1/authorize", customer.token, {"feature": "llm"}
            ).status_code
            == 200
        )
    assert send(client, "get", "/api/v1/balance", "mlk_0000000000000000:nope").status_code == 401
    now = timezone.now()
    events = [
        {
            "id": f"req-{n}",
            "account": account.public_id,
            "type": "llm",
            "occurred_at": (now - timedelta(minutes=1)).isoformat(),
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1000,
            "output_tokens": 10,
        }
        for n in range(4)
    ]
    events.append({**events[0], "output_tokens": 11})  # same id, other content: rejected
    response = send(client, "post", "/api/v1/events", platform.token, {"events": events})
    results = [r["status"] for r in response.json()["results"]]

    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "meterline_http_requests_total"
    assert grew(requests, operation="api-v1:authorize", method="POST", status="200") == 3
    assert grew(requests, operation="api-v1:balance", method="GET", status="401") == 1
    assert grew(requests, operation="api-v1:report_events", method="POST", status="200") == 1
    assert grew("meterline_http_request_duration_seconds_count", operation="api-v1:authorize") == 3
    assert grew("meterline_events_ingested_total", result="accepted") == results.count("accepted")
    assert grew("meterline_events_ingested_total", result="rejected") == results.count("rejected")
    assert results.count("accepted") == 4 and results.count("rejected") == 1


def test_business_gauges_read_what_the_database_holds(
    client, metrics_settings, make_account, make_key
):
    accounts = [make_account("voice-prepaid", credit_micros=20_000_000) for _ in range(3)]
    Account.objects.filter(pk__in=[a.pk for a in accounts[:2]]).update(
        past_due_since=timezone.now()
    )
    old = timezone.now() - timedelta(minutes=7)
    for n, account in enumerate(accounts):
        Notification.objects.create(account=account, kind="test", key=f"metrics-test:{n}")
    Notification.objects.filter(key="metrics-test:0").update(created_at=old)
    customer = make_key(accounts[2])
    for _ in range(2):
        send(client, "post", "/api/v1/authorize", customer.token, {"feature": "call"})
    register_schedules()
    JobRun.objects.create(
        name="Ledger check",
        func="billing.jobs.check_ledger",
        tracked_since=old,
        last_succeeded_at=old,
        last_duration_seconds=1.5,
    )
    check_ledger(now=old)

    samples = scrape(client)

    assert value(samples, "meterline_accounts_past_due") == 2
    assert (
        value(samples, "meterline_notifications_pending")
        == Notification.objects.filter(status="pending").count()
    )
    assert value(samples, "meterline_notifications_pending_oldest_age_seconds") >= 7 * 60
    assert (
        value(samples, "meterline_holds_open")
        == Reservation.objects.filter(status=ReservationStatus.HELD).count()
    )
    assert value(samples, "meterline_job_last_success_age_seconds", job="Ledger check") >= 7 * 60
    assert value(samples, "meterline_job_last_duration_seconds", job="Ledger check") == 1.5
    assert value(samples, "meterline_job_interval_seconds", job="Threshold invoicing") == 30 * 60
    assert value(samples, "meterline_job_late", job="Ledger check") == 0
    assert value(samples, "meterline_ledger_drift_accounts") == 0
    assert value(samples, "meterline_ledger_check_age_seconds") >= 7 * 60


def test_the_last_ledger_checks_drift_is_a_gauge(client, metrics_settings, make_account):
    account = make_account("voice-prepaid", credit_micros=5_000_000)
    # A manual edit behind the ledger's back: exactly what the check exists to catch.
    Account.objects.filter(pk=account.pk).update(balance_micros=1)
    check_ledger(now=timezone.now())

    assert value(scrape(client), "meterline_ledger_drift_accounts") == 1
