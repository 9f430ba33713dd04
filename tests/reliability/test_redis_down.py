"""Redis down: what still works and which way rate limits fail (SPEC G2, O2).

Redis is the cache, the rate-limit counter store and django-q2's task broker in production.
Here REDIS_URL, the cache and the broker point at a local port where nothing listens. Decided
behaviour (docs/operations.md, "Redis"):

- rate limits fail OPEN: every request is allowed and says so in its headers, and a warning is
  logged; refusing all traffic would stop the customers' products and the billing with them;
- money paths do not need Redis: authorize, usage reports, the dashboard work as usual;
- a task that cannot be queued is not lost: its row (notification, auto-top-up) stays pending
  and the resend / retry jobs queue it again once the broker is back; the request that made it
  still succeeds, instead of failing after its transaction committed.
"""

import json
import logging
import socket
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import caches
from django_q.conf import Conf

from billing.ledger.drift import ledger_drift
from billing.models import EntryKind, LedgerEntry, Notification, TopUp, TopUpStatus
from billing.notifications.sending import send_pending_notifications
from billing.payments.auto_topup import retry_auto_topups, save_auto_topup_settings
from billing.payments.cards import add_test_card
from tests.billing.postings import post_entry
from tests.conftest import NOW
from tests.usage.metering import concurrent
from usage.api import ratelimit
from usage.models import UsageEvent

USD = 1_000_000
API_NOW = NOW + timedelta(hours=1)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(API_NOW, tick=False):
        yield


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens


@pytest.fixture
def redis_down(settings, monkeypatch):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "config.redis_cache.FailSoftRedisCache",  # as config.settings with Redis
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    # django-q2 reads its settings once, at import: point its broker at the dead Redis too.
    monkeypatch.setattr(Conf, "REDIS", url)
    monkeypatch.setattr(Conf, "ORM", None)
    # Queue tasks as production does, instead of running them inline as the tests usually do.
    settings.NOTIFICATIONS_SYNC = False
    settings.PAYMENTS_SYNC = False
    monkeypatch.setattr(ratelimit, "_redis_backends", {})
    yield url
    caches["default"].close()


def bearer(key) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key.token}"}


def test_rate_limits_fail_open_and_say_so_in_the_log(
    redis_down, client, make_account, make_key, caplog
):
    # 10 requests a minute; the credit pays for 12 calls' holds of 4 h (19.20 USD each).
    key = make_key(make_account(credit_micros=250 * USD), tier="free")
    body = json.dumps({"feature": "call"})

    with caplog.at_level(logging.WARNING, logger="usage.api.ratelimit"):
        responses = [
            client.post("/api/v1/authorize", body, "application/json", **bearer(key))
            for _ in range(12)
        ]

    assert [r.status_code for r in responses] == [200] * 12
    assert {r["x-ratelimit-remaining-requests"] for r in responses} == {"10"}
    assert "Rate limits not enforced: Redis is unreachable" in caplog.text


# Committed for real: the email and the card charge are queued by on-commit callbacks.
@concurrent
def test_usage_is_charged_and_its_email_waits_for_the_broker(
    redis_down, client, make_account, make_key, settings
):
    account = make_account("llm-api", credit_micros=0)  # 10 USD of signup credit, alert at 5
    platform = make_key()
    events = [
        {
            "id": f"llm-{n}",
            "account": account.public_id,
            "type": "llm",
            "occurred_at": (API_NOW - timedelta(minutes=5)).isoformat(),
            "model": "gpt-4o",
            "provider": "openai",
            "input_tokens": 1_000_000,
            "output_tokens": 0,
        }
        for n in range(3)
    ]

    response = client.post(
        "/api/v1/events", json.dumps({"events": events}), "application/json", **bearer(platform)
    )

    assert response.status_code == 200, response.content
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}
    charged = UsageEvent.objects.filter(account=account, ledger_entry__isnull=False)
    assert charged.count() == 3
    usage = LedgerEntry.objects.filter(account=account, kind=EntryKind.USAGE)
    assert -sum(e.amount_micros for e in usage) == sum(e.charged_micros for e in charged) > 0
    low_balance = Notification.objects.get(account=account, kind="low_balance")
    assert low_balance.status == "pending"  # not lost: the resend job has it

    # Redis is back; the resend job (every 10 minutes) sends what could not be queued.
    settings.NOTIFICATIONS_SYNC = True
    sent = send_pending_notifications(now=API_NOW + timedelta(minutes=11))
    assert sent == 1
    low_balance.refresh_from_db()
    assert low_balance.status == "sent"
    assert ledger_drift() == []


@concurrent
def test_auto_topup_charge_that_cannot_be_queued_is_charged_by_the_retry_job(
    redis_down, make_account, settings
):
    account = make_account("voice-prepaid", credit_micros=30 * USD)
    add_test_card(account=account, behaviour="succeed", now=API_NOW)  # queues card_changed
    save_auto_topup_settings(
        account=account,
        enabled=True,
        threshold_micros=10 * USD,
        amount_micros=20 * USD,
        now=API_NOW,
    )

    post_entry(account=account, amount_micros=-25 * USD, kind=EntryKind.USAGE, now=API_NOW)

    topup = TopUp.objects.get(account=account)
    assert topup.status == TopUpStatus.PENDING
    settings.PAYMENTS_SYNC = True  # the broker is back
    with time_machine.travel(API_NOW + timedelta(minutes=16), tick=False):
        assert retry_auto_topups(now=API_NOW + timedelta(minutes=16)) == 1
    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED
    account.refresh_from_db()
    assert account.balance_micros == 25 * USD
    assert ledger_drift() == []


def test_dashboard_pages_render(redis_down, client, make_user, make_account):
    owner = make_user()
    account = make_account(owner=owner, credit_micros=10 * USD)
    client.force_login(owner)

    for path in ("", "usage/", "billing/", "keys/"):
        response = client.get(f"/app/a/{account.public_id}/{path}")
        assert response.status_code == 200, (path, response.status_code)


def test_login_works_without_its_throttle_counters(redis_down, client, make_user):
    owner = make_user(email="owner@example.test")

    response = client.post(
        "/accounts/login/",
        {"login": "owner@example.test", "password": "correct horse battery staple"},
    )

    assert response.status_code == 302
    assert client.session.get("_auth_user_id") == str(owner.pk)
