"""Fixtures for the payment tests: a fake Stripe API, Stripe keys, signed webhook posts."""

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import stripe

from billing.models import PaymentMethod
from tests.billing.payments import stripe_json
from tests.billing.payments.fake_stripe import FakeStripeAPI

FAKE_SECRET_KEY = "sk_test_" + "MeterlineFakeKey0123456789"
WEBHOOK_SECRET = "whsec_meterline_test_secret"


@pytest.fixture(autouse=True)
def fake_stripe(monkeypatch):
    """Every stripe-python request in these tests is answered here; none leaves the machine."""
    api = FakeStripeAPI()
    monkeypatch.setattr(stripe, "default_http_client", api)
    return api


@pytest.fixture
def stripe_keys(settings):
    """Run with Stripe keys: the Stripe gateway instead of the test-mode pages."""
    settings.STRIPE_SECRET_KEY = FAKE_SECRET_KEY
    settings.STRIPE_TEST_SECRET_KEY = FAKE_SECRET_KEY
    settings.PAYMENTS_TEST_MODE = False
    settings.PAYMENT_GATEWAY = "billing.payments.gateway.stripe.StripeGateway"


@pytest.fixture
def webhook_endpoint(db):
    from djstripe.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(
        id="we_TestMeterline0001",
        livemode=False,
        url="https://meterline.example.test/stripe/webhook/",
        secret=WEBHOOK_SECRET,
        enabled_events=["*"],
        status="enabled",
        api_version="2024-12-18.acacia",
    )


def sign(body: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@pytest.fixture
def post_event(client, webhook_endpoint, stripe_keys):
    """Post a Stripe event to the real webhook endpoint, signed like Stripe signs it."""

    def post(event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
        body = json.dumps(event)
        return client.post(
            f"/stripe/webhook/{webhook_endpoint.djstripe_uuid}/",
            data=body,
            content_type="application/json",
            headers={"Stripe-Signature": sign(body, secret=secret, timestamp=timestamp)},
        )

    return post


@pytest.fixture
def stripe_account(make_account, fake_stripe):
    """A voice-prepaid account that is already a Stripe customer with a saved card."""

    def make(plan="voice-prepaid", *, card_answer="succeed", **extra):
        account = make_account(plan, **extra)
        customer = stripe_json.customer(
            stripe_json.stripe_id("cus"), metadata={"djstripe_subscriber": str(account.pk)}
        )
        card = stripe_json.payment_method(stripe_json.stripe_id("pm"), customer_id=customer["id"])
        fake_stripe.add(customer, card)
        fake_stripe.card_answers[card["id"]] = card_answer
        account.stripe_customer_id = customer["id"]
        account.save(update_fields=["stripe_customer_id"])
        PaymentMethod.objects.create(
            account=account, gateway_id=card["id"], brand="visa", last4="4242", is_default=True
        )
        return account

    return make


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe_url():
    """Start localstripe on 127.0.0.1 for the session; stop it by its pid."""
    port = _free_port()
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.billing.payments.localstripe_server", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        f"{url}/v1/account", headers={"Authorization": f"Bearer {FAKE_SECRET_KEY}"}
    )
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(request, timeout=1):  # noqa: S310 (http://127.0.0.1 only)
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.1)
        else:
            raise RuntimeError("localstripe did not answer within 15 s")
        yield url
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def localstripe(localstripe_url, stripe_keys, monkeypatch):
    """Send stripe-python's requests to localstripe instead of the fake API."""
    monkeypatch.setattr(stripe, "api_base", localstripe_url)
    monkeypatch.setattr(stripe, "default_http_client", stripe.new_default_http_client())
    return localstripe_url
