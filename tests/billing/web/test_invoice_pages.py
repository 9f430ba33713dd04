"""The invoice and statement pages and their PDF (SPEC I1, D3): what a member reads."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from pypdf import PdfReader

from accounts.models import Role
from billing.invoicing.documents import format_quantity, period_label, unit_price
from billing.invoicing.parties import save_billing_details
from billing.invoicing.period_close import close_periods
from billing.models import InvoicePayment, PaymentMethod, PaymentStatus
from billing.payments.collection import collect_invoice, retry_account_invoices
from billing.payments.gateway.test_mode import TestModeGateway
from tests.billing.invoice_data import THRESHOLD_AT, threshold_invoice, two_statements


def detail_url(invoice):
    return reverse("billing:invoice_detail", args=[invoice.account.public_id, invoice.number])


def pdf_url(invoice):
    return reverse("billing:invoice_pdf", args=[invoice.account.public_id, invoice.number])


def list_url(account):
    return reverse("billing:invoice_list", args=[account.public_id])


def pdf_text(response) -> str:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def postpaid(make_account, owner):
    return make_account("voice-payg", owner=owner, name="Acme Voice")


@pytest.fixture
def invoice(postpaid):
    return threshold_invoice(postpaid)


@pytest.fixture
def fresh_gateway(monkeypatch):
    """The test-mode gateway remembers answers by key; start each test with none."""
    monkeypatch.setattr(TestModeGateway, "_results", {})


def test_invoice_page_shows_the_number_lines_and_totals(client, owner, invoice):
    client.force_login(owner)

    response = client.get(detail_url(invoice))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Invoice {invoice.number}" in page
    assert "Billing threshold reached" in page
    assert "Open" in page
    assert "15 Mar 2026 00:00 to 15 Mar 2026 12:05 UTC" in page
    # Lines: minutes with two decimals, tokens as whole numbers, amounts in cents with the exact
    # figure as the hover text when cents hide part of it.
    assert "Call minutes, LLM gpt-4o" in page
    assert "1.00 min" in page
    assert "90,000,000 tokens" in page
    assert "1,234 tokens" in page
    assert "$225.00<" in page
    assert 'title="Exactly $0.01234">$0.01<' in page
    # Totals in cents: the lines, each rounded, add up to the total, so no rounding line.
    assert 'title="Exactly $225.15234">$225.15<' in page
    assert "Rounding to cents" not in page
    assert "000000" not in page


def test_invoice_page_has_no_inline_script_or_style(client, owner, invoice):
    client.force_login(owner)

    page = client.get(detail_url(invoice)).content.decode()

    # Scripts only from static files (the CSP allows nothing else); no inline style at all.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "<style" not in page
    assert "style=" not in page


def test_invoice_list_links_every_invoice_newest_first(client, owner, postpaid, invoice):
    close_periods(now=postpaid.subscription.current_period_end)
    period_invoice = postpaid.invoices.get(reason="period")
    client.force_login(owner)

    response = client.get(list_url(postpaid))

    assert response.status_code == 200
    page = response.content.decode()
    assert page.index(period_invoice.number) < page.index(invoice.number)
    assert detail_url(invoice) in page
    assert detail_url(period_invoice) in page
    assert "$225.15" in page
    assert "$225.152340" not in page


def test_invoice_list_without_invoices_says_so(client, owner, postpaid):
    client.force_login(owner)

    response = client.get(list_url(postpaid))

    assert response.status_code == 200
    assert "No invoices or statements yet" in response.content.decode()


def test_pdf_opens_and_has_the_number_and_totals(client, owner, invoice):
    client.force_login(owner)

    response = client.get(pdf_url(invoice))

    text = pdf_text(response)
    assert f"Invoice {invoice.number}" in text
    assert "90,000,000 tokens" in text
    assert "Total $225.15" in text
    assert "Amount due $225.15" in text
    assert "Rounding to cents" not in text
    assert "000000" not in text
    assert response["Cache-Control"] == "private, no-store"
    assert invoice.number in response["Content-Disposition"]


def test_pdf_prints_account_names_beyond_latin_1(client, make_user, make_account):
    owner = make_user()
    account = make_account("voice-payg", owner=owner, name="Łódź Głos Sp. z o.o.")
    invoice = threshold_invoice(account)
    client.force_login(owner)

    text = pdf_text(client.get(pdf_url(invoice)))

    assert "Łódź Głos Sp. z o.o." in text


def test_member_of_another_account_gets_404_for_page_list_and_pdf(
    client, make_user, make_account, invoice
):
    stranger = make_user()
    make_account("voice-payg", owner=stranger)
    client.force_login(stranger)

    assert client.get(detail_url(invoice)).status_code == 404
    assert client.get(pdf_url(invoice)).status_code == 404
    assert client.get(list_url(invoice.account)).status_code == 404


def test_another_accounts_invoice_number_under_ones_own_account_is_404(
    client, make_user, make_account, invoice
):
    stranger = make_user()
    own = make_account("voice-payg", owner=stranger)
    client.force_login(stranger)

    own_detail = reverse("billing:invoice_detail", args=[own.public_id, invoice.number])
    own_pdf = reverse("billing:invoice_pdf", args=[own.public_id, invoice.number])

    assert client.get(own_detail).status_code == 404
    assert client.get(own_pdf).status_code == 404


def test_unknown_invoice_number_is_404(client, owner, postpaid):
    client.force_login(owner)

    url = reverse("billing:invoice_detail", args=[postpaid.public_id, "2026-999999"])

    assert client.get(url).status_code == 404


def test_signed_out_visitor_is_sent_to_log_in(client, invoice):
    response = client.get(detail_url(invoice))

    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_viewer_and_parent_account_members_can_read_invoices(
    client, make_user, make_account, add_member, plans
):
    parent_owner = make_user()
    parent = make_account("voice-payg", owner=parent_owner)
    child = make_account("voice-payg", parent=parent)
    invoice = threshold_invoice(child)
    viewer = make_user()
    add_member(viewer, child, Role.VIEWER)

    for user in (viewer, parent_owner):
        client.force_login(user)
        assert client.get(detail_url(invoice)).status_code == 200
        assert client.get(pdf_url(invoice)).status_code == 200


def test_statement_shows_opening_and_closing_balances(client, make_user, make_account):
    owner = make_user()
    account = make_account("voice-prepaid", owner=owner, credit_micros=50_000_000)
    first, second = two_statements(account)
    client.force_login(owner)

    page = client.get(detail_url(second)).content.decode()
    text = pdf_text(client.get(pdf_url(second)))

    assert f"Statement {second.number}" in page
    assert "Opening balance" in page
    assert 'title="Exactly $49.889333">$49.89<' in page
    assert "Closing balance" in page
    assert 'title="Exactly $49.809333">$49.81<' in page
    assert "Amount due" not in page
    assert "Opening balance $49.89" in text
    assert "Usage $0.08" in text
    assert "Closing balance $49.81" in text
    first_page = client.get(detail_url(first)).content.decode()
    assert "Credit movements" in first_page
    assert "Promotional credit" in first_page
    assert "$50.00<" in first_page
    assert "000000" not in first_page
    assert "1.38 min" in first_page


def test_payments_show_each_attempt_with_status_and_date(
    client, owner, postpaid, invoice, fresh_gateway
):
    PaymentMethod.objects.create(
        account=postpaid,
        gateway_id="test_decline",
        last4="0002",
        is_default=True,
        test_behaviour="decline",
    )
    first_try_at = THRESHOLD_AT + timedelta(minutes=1)
    collect_invoice(invoice_id=invoice.pk, now=first_try_at)
    PaymentMethod.objects.filter(account=postpaid).update(removed_at=first_try_at, is_default=False)
    PaymentMethod.objects.create(
        account=postpaid,
        gateway_id="test_visa",
        last4="4242",
        is_default=True,
        test_behaviour="succeed",
    )
    # The new card retries the unpaid invoice at once (P5).
    retry_account_invoices(account=postpaid, now=datetime(2026, 3, 16, 9, 30, tzinfo=UTC))
    assert list(InvoicePayment.objects.order_by("attempt").values_list("attempt", "status")) == [
        (1, PaymentStatus.FAILED),
        (2, PaymentStatus.SUCCEEDED),
    ]
    client.force_login(owner)

    page = client.get(detail_url(invoice)).content.decode()
    text = pdf_text(client.get(pdf_url(invoice)))

    assert "Paid" in page
    assert "Failed" in page
    assert "Your card was declined." in page
    assert "Succeeded" in page
    assert "16 Mar 2026 09:30" in page
    assert "Amount paid" in page
    assert "Succeeded 16 Mar 2026 09:30 UTC $225.15" in text


@pytest.mark.parametrize(
    ("quantity", "unit", "text"),
    [
        (83, "second", "1.38 min"),
        (3, "second", "0.05 min"),
        (360_000, "second", "6,000.00 min"),
        (1_234_567, "token", "1,234,567 tokens"),
        (1, "message", "1 message"),
        (12, "request", "12 requests"),
        (0, "", ""),
    ],
)
def test_quantities_read_in_their_unit(quantity, unit, text):
    assert format_quantity(quantity, unit) == text


def test_a_whole_month_reads_with_its_last_day_and_a_threshold_cut_with_times():
    start = datetime(2026, 3, 15, tzinfo=UTC)

    assert period_label(start, datetime(2026, 4, 15, tzinfo=UTC)) == "15 Mar 2026 to 14 Apr 2026"
    assert (
        period_label(start, datetime(2026, 3, 20, 8, 30, tzinfo=UTC))
        == "15 Mar 2026 00:00 to 20 Mar 2026 08:30 UTC"
    )


SELLER = {
    "SELLER_LEGAL_NAME": "Voicely Labs Ltd",
    "SELLER_ADDRESS": "1 Example Street\nLondon EC1A 1AA",
    "SELLER_TAX_ID": "GB999999973",
    "SUPPORT_EMAIL": "billing@voicely.example",
}


def give_details(account, **overrides):
    fields = {
        "legal_name": "Acme Voice GmbH",
        "address": "Hauptstraße 1\n10115 Berlin",
        "country": "Germany",
        "tax_id": "DE123456789",
        **overrides,
    }
    save_billing_details(account=account, now=THRESHOLD_AT, **fields)


def test_the_invoice_pdf_names_seller_and_customer_and_prices_each_line(
    client, owner, postpaid, settings
):
    for name, value in SELLER.items():
        setattr(settings, name, value)
    give_details(postpaid)
    invoice = threshold_invoice(postpaid)
    client.force_login(owner)

    page = client.get(detail_url(invoice)).content.decode()
    text = pdf_text(client.get(pdf_url(invoice)))

    for document in (page, text):
        for expected in [
            "Voicely Labs Ltd",
            "1 Example Street",
            "London EC1A 1AA",
            "GB999999973",
            "billing@voicely.example",
            "Acme Voice GmbH",
            "Hauptstraße 1",
            "10115 Berlin",
            "Germany",
            "DE123456789",
            # Quantity, unit price, amount: gpt-4o minutes at 0.05, the voice engine at 0.09,
            # gpt-4o tokens at 2.50 in and 10.00 out per million (the voice-payg plan).
            "$0.05 / min",
            "$0.09 / min",
            "$2.50 / 1M tokens",
            "$10.00 / 1M tokens",
        ]:
            assert expected in document, expected


def test_details_changed_after_an_invoice_leave_that_invoice_as_issued(client, owner, postpaid):
    give_details(postpaid)
    invoice = threshold_invoice(postpaid)
    give_details(postpaid, legal_name="Acme Renamed AG", tax_id="DE000000000")
    client.force_login(owner)

    page = client.get(detail_url(invoice)).content.decode()

    assert "Acme Voice GmbH" in page and "DE123456789" in page
    assert "Acme Renamed AG" not in page and "DE000000000" not in page


def test_a_paid_invoice_shows_what_was_paid_and_nothing_due(
    client, owner, postpaid, invoice, fresh_gateway
):
    PaymentMethod.objects.create(
        account=postpaid,
        gateway_id="test_visa",
        last4="4242",
        is_default=True,
        test_behaviour="succeed",
    )
    collect_invoice(invoice_id=invoice.pk, now=THRESHOLD_AT + timedelta(minutes=1))
    client.force_login(owner)

    page = client.get(detail_url(invoice)).content.decode()
    text = pdf_text(client.get(pdf_url(invoice)))
    listing = client.get(list_url(postpaid)).content.decode()

    assert "<dt>Amount paid</dt><dd>$225.15</dd>" in page
    assert "<dt>Amount due</dt><dd>$0.00</dd>" in page
    assert "Amount paid $225.15" in text and "Amount due $0.00" in text
    assert '<td data-label="Amount due" class="num">$0.00</td>' in listing


def test_a_statement_carries_no_payment_status(client, make_user, make_account):
    owner = make_user()
    account = make_account("voice-prepaid", owner=owner, credit_micros=50_000_000)
    _, second = two_statements(account)
    client.force_login(owner)

    page = client.get(detail_url(second)).content.decode()
    text = pdf_text(client.get(pdf_url(second)))
    listing = client.get(list_url(account)).content.decode()

    assert "Paid" not in page
    assert "Status" not in text and "Paid" not in text
    assert "status-paid" not in listing


@pytest.mark.parametrize(
    ("amount_micros", "quantity", "unit", "text"),
    [
        (50_000, 60, "second", "$0.05 / min"),
        (225_000_000, 90_000_000, "token", "$2.50 / 1M tokens"),
        (110_667, 83, "second", "$0.08 / min"),  # 83 s rounded once: the rate to a micro-dollar
        (0, 0, "message", ""),
        (1_000_000, 3, "request", ""),  # commission is a share of savings, not a price per unit
    ],
)
def test_a_lines_unit_price_is_its_amount_over_its_quantity(amount_micros, quantity, unit, text):
    assert unit_price(amount_micros, quantity, unit) == text
