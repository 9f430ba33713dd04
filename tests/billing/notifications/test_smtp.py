"""Notification emails through Django's SMTP backend to a real SMTP server on 127.0.0.1 (SPEC N3).

The server is aiosmtpd's, started on a free port for the test; what it receives is parsed back
into a message whose text and HTML parts are checked.
"""

import email
import socket
from datetime import timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller

from billing.models import NotificationStatus
from billing.notifications.sending import send_pending_notifications
from tests.billing import money_and_notices as alerting
from tests.billing.money_and_notices import notices, report_output_tokens
from tests.conftest import NOW

committed = alerting.committed  # fixtures
no_ledger_drift = alerting.no_ledger_drift


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, port: int):
        self.port = port
        self.inbox = Inbox()
        self.controller = None

    def start(self) -> None:
        # A stopped controller's event loop is closed: start a new one.
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def envelopes(self):
        return self.inbox.envelopes

    def messages(self):
        return [
            email.message_from_bytes(e.original_content or e.content, policy=policy.default)
            for e in self.envelopes
        ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp(settings):
    """An SMTP server on 127.0.0.1, and Django's SMTP backend pointed at it."""
    server = SmtpServer(free_port())
    server.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    yield server
    server.stop()


def test_the_low_balance_email_arrives_over_smtp_with_a_text_and_an_html_part(
    smtp, make_account, committed
):
    account = make_account("llm-api", name="Tokens & Co")  # 10 USD signup credit

    committed(report_output_tokens, account, 600_000)  # 6.00 USD: 4.00 left, under 5.00

    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == [account.email]
    [message] = smtp.messages()
    assert message["Subject"] == "Low balance: $4.00 left on Tokens & Co"
    assert message["To"] == account.email
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for part in (text, html):
        assert "$4.00" in part and "$5.00" in part
        assert f"/app/a/{account.public_id}/billing/" in part
    assert "Tokens & Co" in text and "Tokens &amp; Co" in html
    assert notices(account, "low_balance")[0].status == NotificationStatus.SENT


def test_an_email_not_sent_while_the_server_was_down_is_sent_once_later(
    smtp, make_account, committed
):
    account = make_account("llm-api")
    smtp.stop()

    committed(report_output_tokens, account, 1_000_000)  # 10.00 USD: out of credit

    [notice] = notices(account, "zero_balance")
    assert notice.status == NotificationStatus.PENDING and notice.attempts == 1
    smtp.start()
    later = NOW + timedelta(minutes=15)
    assert send_pending_notifications(now=later) == 1
    assert send_pending_notifications(now=later) == 0

    [message] = smtp.messages()
    assert message["Subject"] == f"{account.name} is out of credit"
    notice.refresh_from_db()
    assert notice.status == NotificationStatus.SENT
