"""Sentry gets errors of the web and of django-q2 tasks, with personal data scrubbed
(issue 18, item 4). Events go to a transport in this process: nothing leaves the machine."""

import json

import pytest
from django.test import Client
from django_q import conf as q_conf
from django_q.tasks import async_task

from operations.sentry import init_sentry, install_task_reporter, scrub_text
from tests.operations.failing import CARD, EMAIL, KEY

sentry_sdk = pytest.importorskip("sentry_sdk")
from sentry_sdk.transport import Transport  # noqa: E402


class CapturingTransport(Transport):
    """Keep each envelope's payload as text instead of sending it."""

    def __init__(self, options=None):
        super().__init__(options)
        self.sent: list[str] = []

    def capture_envelope(self, envelope):
        for item in envelope.items:
            self.sent.append(item.get_bytes().decode("utf-8", "replace"))


@pytest.fixture
def sentry(monkeypatch):
    transport = CapturingTransport()
    init_sentry(
        dsn="http://public@127.0.0.1:9/1",
        environment="test",
        release="",
        traces_sample_rate=0.0,
        transport=transport,
    )
    monkeypatch.setattr(q_conf, "error_reporter", None)
    import django_q.worker

    monkeypatch.setattr(django_q.worker, "error_reporter", None)
    install_task_reporter()
    yield transport
    sentry_sdk.flush()
    sentry_sdk.init()  # no DSN: the client is off again


def events(transport) -> list[dict]:
    sentry_sdk.flush()
    found = []
    for payload in transport.sent:
        try:
            found.append(json.loads(payload))
        except ValueError:
            continue
    return [e for e in found if e.get("exception") or e.get("message") or e.get("logentry")]


def assert_scrubbed(text: str) -> None:
    secret = KEY.partition(":")[2]
    for leaked in (EMAIL, secret, CARD, CARD.replace(" ", "")):
        assert leaked not in text


def test_a_failing_task_reaches_sentry_through_the_workers_error_reporter_scrubbed(sentry, db):
    with pytest.raises(ValueError):
        # sync=True runs django-q2's own worker function in this process.
        async_task("tests.operations.failing.failing_task", sync=True)

    reported = events(sentry)
    assert any(
        v.get("type") == "ValueError"
        for e in reported
        for v in e.get("exception", {}).get("values", [])
    )
    text = json.dumps(reported)
    assert_scrubbed(text)
    assert "mlk_0123456789abcdef" in text  # the key id is kept: it names the key, not its secret


def test_a_failing_page_reaches_sentry_without_body_cookies_or_credentials(sentry, settings, db):
    settings.ROOT_URLCONF = "tests.operations.failing"
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "session-cookie-value"

    response = client.post(
        "/fail/", {"email": EMAIL, "card": CARD}, HTTP_AUTHORIZATION=f"Bearer {KEY}"
    )

    assert response.status_code == 500
    reported = events(sentry)
    assert any(
        v.get("type") == "RuntimeError"
        for e in reported
        for v in e.get("exception", {}).get("values", [])
    )
    text = json.dumps(reported)
    assert_scrubbed(text)
    assert "session-cookie-value" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"owner {EMAIL}", "owner [email]"),
        (f"key {KEY}", "key mlk_0123456789abcdef:[Filtered]"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer [Filtered]"),
        ("stripe sk_live_51HxYzAbCdEf", "stripe [Filtered]"),
        (f"card {CARD}", "card [card]"),
        ("card 4242-4242-4242-4242", "card [card]"),
        # Digits that fail Luhn are ids or amounts, and stay.
        ("invoice 1234567890123456", "invoice 1234567890123456"),
        ("balance 110667 micros", "balance 110667 micros"),
    ],
)
def test_scrubbing_removes_personal_data_and_keeps_ids(text, expected):
    assert scrub_text(text) == expected
