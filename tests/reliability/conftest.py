"""Fixtures of the reliability tests: a gateway and a mailbox that outlive a killed worker."""

import pytest

# The payment tests' fake Stripe API and signed webhook posts (fake_stripe is autouse: no test
# here reaches the network).
from tests.billing.payments.conftest import (  # noqa: F401
    fake_stripe,
    post_event,
    stripe_account,
    stripe_keys,
    webhook_endpoint,
)
from tests.reliability.crashes import RecordingGateway


@pytest.fixture
def recording_gateway(settings, tmp_path, monkeypatch):
    """Charge saved cards through `RecordingGateway`, its log in this test's temp folder."""
    settings.PAYMENT_GATEWAY = "tests.reliability.crashes.RecordingGateway"
    monkeypatch.setattr(RecordingGateway, "path", tmp_path / "gateway.jsonl")
    monkeypatch.setattr(RecordingGateway, "kill_after_charge", False)
    return RecordingGateway


@pytest.fixture
def mailbox(settings, tmp_path):
    """Write emails to files, so that what a killed child sent is still counted."""
    folder = tmp_path / "mail"
    folder.mkdir()
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(folder)
    return folder
