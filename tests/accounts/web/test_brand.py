"""The operator's brand on every page, email and document (README, Configuration)."""

import io

import pytest
from django.core import mail
from django.urls import reverse
from pypdf import PdfReader

from accounts.brand import brand, soft_color
from billing.notifications.outbox import notify
from tests.billing import money_and_notices as alerting
from tests.billing.invoice_data import threshold_invoice
from tests.conftest import NOW

committed = alerting.committed  # fixture

BRAND = {
    "BRAND_NAME": "Voicely",
    "BRAND_PRIMARY_COLOR": "#0A7D4F",
    "SUPPORT_EMAIL": "help@voicely.example",
    "SUPPORT_URL": "https://voicely.example/help",
    "EMAIL_SENDER_NAME": "Voicely Billing",
    "DEFAULT_FROM_EMAIL": "Meterline <billing@voicely.example>",
    "BRAND_LOGO": "img/favicon.svg",
}


@pytest.fixture
def branded(settings):
    for name, value in BRAND.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def owner(make_user):
    return make_user(email="owner@example.test")


@pytest.fixture
def account(make_account, owner):
    return make_account("voice-payg", owner=owner, name="Acme Voice")


def test_every_page_carries_the_operators_name_logo_colour_and_support(
    client, branded, owner, account
):
    client.force_login(owner)

    for path in [
        reverse("dashboard:account", args=[account.public_id]),
        reverse("billing_dashboard:home", args=[account.public_id]),
        reverse("billing:invoice_list", args=[account.public_id]),
    ]:
        page = client.get(path).content.decode()
        assert "<title>" in page and " · Voicely</title>" in page, path
        assert 'class="brand-logo" src="/static/img/favicon.svg' in page, path
        assert 'href="/brand.css"' in page, path
        assert 'href="mailto:help@voicely.example"' in page, path
        assert 'href="https://voicely.example/help"' in page, path
        assert "Meterline" not in page, path


def test_the_brand_style_sheet_sets_the_colour_and_nothing_else(client, branded):
    response = client.get("/brand.css")

    assert response["Content-Type"].startswith("text/css")
    assert response.content.decode() == (
        f":root {{ --accent: #0a7d4f; --accent-soft: {soft_color('#0a7d4f')}; }}\n"
    )


def test_a_malformed_colour_cannot_inject_css_and_falls_back_to_the_default(client, settings):
    settings.BRAND_PRIMARY_COLOR = "red; } body { display: none"

    sheet = client.get("/brand.css").content.decode()

    assert "display" not in sheet and "red" not in sheet
    assert brand()["custom_color"] is False


def test_the_demo_keeps_meterlines_own_brand(client, owner, account):
    client.force_login(owner)

    page = client.get(reverse("dashboard:account", args=[account.public_id])).content.decode()

    assert '<span class="brand-mark" aria-hidden="true"></span>Meterline</a>' in page
    assert "<title>Overview · Acme Voice · Meterline</title>" in page
    assert "brand.css" not in page


def test_emails_come_from_the_brands_sender_and_name_it_and_its_support(
    branded, account, committed
):
    committed(
        notify,
        account=account,
        kind="low_balance",
        key="brand:low",
        context={"balance": "$1.00", "threshold": "$20.00"},
        now=NOW,
    )

    [message] = mail.outbox
    [(html, _)] = message.alternatives
    assert message.from_email == "Voicely Billing <billing@voicely.example>"
    for part in (message.body, html):
        assert "Voicely" in part and "help@voicely.example" in part
        assert "Meterline" not in part
    assert "background:#0a7d4f" in html


def test_documents_carry_the_brand_name(client, branded, owner, account):
    invoice = threshold_invoice(account)
    client.force_login(owner)

    response = client.get(reverse("billing:invoice_pdf", args=[account.public_id, invoice.number]))
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)

    assert text.startswith("VOICELY")
    assert "help@voicely.example" in text
    assert "Meterline" not in text.replace("meterline-", "")
