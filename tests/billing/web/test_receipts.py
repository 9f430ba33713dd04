"""Receipts: one numbered receipt, HTML and PDF, for every top-up and card payment (SPEC P1, P5)."""

import io
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from pypdf import PdfReader

from billing.invoicing.parties import save_billing_details
from billing.models import PaymentMethod, Receipt, TopUp, TopUpKind
from billing.payments.collection import collect_invoice
from billing.payments.gateway.test_mode import TestModeGateway
from billing.payments.simulated import complete_test_topup
from billing.payments.topups import fulfil_topup, start_topup
from tests.billing.invoice_data import THRESHOLD_AT, threshold_invoice
from tests.conftest import NOW

USD = 1_000_000
URLS = {"success_url": "https://x.test/done/{TOPUP}/", "cancel_url": "https://x.test/no/{TOPUP}/"}


def detail_url(receipt):
    return reverse("billing:receipt_detail", args=[receipt.account.public_id, receipt.number])


def pdf_text(response) -> str:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    return "\n".join(page.extract_text() for page in reader.pages)


def paid_topup(account, amount_micros=25 * USD, *, pay=True):
    topup = start_topup(account=account, amount_micros=amount_micros, now=NOW, **URLS).topup
    complete_test_topup(account=account, topup_public_id=topup.public_id, pay=pay, now=NOW)
    return TopUp.objects.get(pk=topup.pk)


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def account(make_account, owner):
    return make_account("voice-prepaid", owner=owner, name="Acme Voice")


@pytest.fixture
def fresh_gateway(monkeypatch):
    monkeypatch.setattr(TestModeGateway, "_results", {})


def test_a_paid_top_up_gets_a_numbered_receipt_in_html_and_pdf(client, owner, account, settings):
    settings.SELLER_LEGAL_NAME = "Voicely Labs Ltd"
    settings.SELLER_TAX_ID = "GB999999973"
    save_billing_details(
        account=account,
        legal_name="Acme Voice GmbH",
        address="Hauptstraße 1\n10115 Berlin",
        country="Germany",
        tax_id="DE123456789",
        now=NOW,
    )
    topup = paid_topup(account)
    client.force_login(owner)

    receipt = Receipt.objects.get(topup=topup)
    page = client.get(detail_url(receipt)).content.decode()
    text = pdf_text(client.get(f"{detail_url(receipt)}pdf/"))
    listing = client.get(reverse("billing:invoice_list", args=[account.public_id])).content
    billing = client.get(f"/app/a/{account.public_id}/billing/").content.decode()

    assert receipt.number == f"R-{NOW.year}-000001"
    assert receipt.amount_micros == topup.amount_micros
    for document in (page, text):
        for expected in [
            f"Receipt {receipt.number}",
            "Voicely Labs Ltd",
            "GB999999973",
            "Acme Voice GmbH",
            "10115 Berlin",
            "DE123456789",
            "$25.00",
            topup.public_id,
        ]:
            assert expected in document, expected
    assert receipt.number in listing.decode()
    assert f"Receipt {receipt.number}" in billing


def test_receipts_are_numbered_without_gaps_and_a_failed_payment_takes_no_number(account):
    first = paid_topup(account)
    paid_topup(account, pay=False)  # declined
    second = paid_topup(account, 30 * USD)

    numbers = list(Receipt.objects.order_by("pk").values_list("number", "topup_id"))

    assert numbers == [
        (f"R-{NOW.year}-000001", first.pk),
        (f"R-{NOW.year}-000002", second.pk),
    ]


def test_a_top_up_confirmed_twice_has_one_receipt(account):
    topup = paid_topup(account)

    fulfil_topup(topup_id=topup.pk, now=NOW + timedelta(minutes=1))

    assert Receipt.objects.filter(topup=topup).count() == 1


def test_an_auto_top_up_charged_to_the_card_gets_a_receipt_and_its_email_names_it(
    account, mailoutbox, django_capture_on_commit_callbacks
):
    topup = TopUp.objects.create(
        account=account,
        kind=TopUpKind.AUTO,
        amount_micros=20 * USD,
        key="auto:test:1",
        public_id="tu_auto_receipt",
    )
    with django_capture_on_commit_callbacks(execute=True):
        fulfil_topup(topup_id=topup.pk, now=NOW)

    receipt = Receipt.objects.get(topup=topup)
    assert receipt.description.startswith("Auto-top-up")
    [mail] = [m for m in mailoutbox if receipt.number in m.body]
    assert f"/invoices/receipts/{receipt.number}/" in mail.body


def test_a_card_payment_of_an_invoice_gets_a_receipt(
    client, make_user, make_account, fresh_gateway
):
    owner = make_user()
    postpaid = make_account("voice-payg", owner=owner)
    invoice = threshold_invoice(postpaid)
    PaymentMethod.objects.create(
        account=postpaid,
        gateway_id="test_visa",
        last4="4242",
        is_default=True,
        test_behaviour="succeed",
    )
    collect_invoice(invoice_id=invoice.pk, now=THRESHOLD_AT + timedelta(minutes=1))
    client.force_login(owner)

    receipt = Receipt.objects.get(account=postpaid)
    page = client.get(detail_url(receipt)).content.decode()

    assert receipt.invoice_payment.invoice == invoice
    assert receipt.amount_micros == invoice.amount_due_micros
    assert f"Payment of invoice {invoice.number}" in page
    assert "$225.15" in page


def test_another_accounts_receipt_is_a_404(client, account, make_user, make_account):
    paid_topup(account)
    stranger = make_user()
    make_account("voice-prepaid", owner=stranger)
    client.force_login(stranger)

    receipt = Receipt.objects.get(account=account)

    assert client.get(detail_url(receipt)).status_code == 404
    assert client.get(f"{detail_url(receipt)}pdf/").status_code == 404


@pytest.mark.slow
def test_concurrent_top_ups_of_many_accounts_number_their_receipts_without_gaps(
    transactional_db, make_account
):
    if connection.vendor != "postgresql":
        pytest.skip("Row locks: PostgreSQL only (SQLite serializes every writer).")
    accounts = [make_account("voice-prepaid") for _ in range(6)]
    topups = [
        start_topup(account=a, amount_micros=20 * USD, now=NOW, **URLS).topup for a in accounts
    ]
    start = threading.Barrier(len(topups))

    def pay(topup):
        try:
            start.wait(10)
            fulfil_topup(topup_id=topup.pk, now=NOW)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(t,)) for t in topups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    numbers = sorted(Receipt.objects.values_list("number", flat=True))
    assert numbers == [f"R-{NOW.year}-{n:06d}" for n in range(1, len(topups) + 1)]
    assert set(Receipt.objects.values_list("topup_id", flat=True)) == {t.pk for t in topups}
