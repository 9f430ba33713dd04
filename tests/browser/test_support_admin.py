"""Support work in Django admin, in a real browser, as an agent does it (issue 16), counting the
clicks: from the support search to a refunded call, and a large refund approved by a second
staff member.

Each test fails on any console error or Content-Security-Policy violation (see conftest), and
saves screenshots into test-artifacts/.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from accounts.staff_roles import ensure_role
from billing.money import format_usd_exact, usd_input
from billing.payments.refunds import refundable_micros
from tests.billing.staff_data import paid_topup
from tests.usage.dashboard_data import report_call_at
from usage.models import Call

pytestmark = pytest.mark.usefixtures("transactional_db")
USD = 1_000_000
PASSWORD = "correct horse battery staple"


def staff_in(role: str, email: str) -> User:
    """A staff member in a role's group (made here: a transactional test's database has none)."""
    user = User.objects.create_user(email=email, password=PASSWORD, is_staff=True)
    user.groups.add(ensure_role(role))
    return user


@pytest.fixture
def charged(make_account) -> Call:
    """A charged 3-minute call of a prepaid customer, an hour ago."""
    now = timezone.now()
    account = make_account(name="Zebra Telecom GmbH", at=now - timedelta(days=2))
    paid_topup(account, 50 * USD, now=now - timedelta(days=1))
    return report_call_at(account, seconds=180, at=now - timedelta(hours=1))


class Clicks:
    """Counts what the agent clicks, so the test can hold the workflow to its budget."""

    def __init__(self, page):
        self.page = page
        self.count = 0

    def __call__(self, locator) -> None:
        self.count += 1
        locator.click()


def sign_in_to_admin(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_login", user.email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_support_search_to_a_refunded_call_in_four_clicks_and_one_confirmation(
    page, live_server, charged, shot
):
    agent = staff_in("support", "agent@operator.example")
    sign_in_to_admin(page, live_server, agent)
    click = Clicks(page)
    shot("admin-support-home")

    page.fill("#support-q", charged.call_id)
    click(page.locator("form.support-search input[type=submit]"))
    expect(page.locator("h2, h1").first).to_be_visible()
    shot("admin-account-page")
    click(page.get_by_role("link", name=f"call {charged.call_id}", exact=False))
    click(page.get_by_role("link", name="Refund", exact=True))
    expect(page.locator("#id_amount")).to_have_value(
        format_usd_exact(charged.charged_micros).replace("$", "")
    )
    page.fill("#id_reason", "Dropped by our network, sorry")
    page.fill("#id_note", "ticket 789")
    shot("admin-refund-call")
    page.get_by_role("button", name="Confirm").click()  # the one confirmation

    expect(page.locator(".messagelist")).to_contain_text(
        f"Refunded {format_usd_exact(charged.charged_micros)} of call {charged.call_id}."
    )
    assert click.count <= 4
    assert Call.objects.get(pk=charged.pk).refunded_micros == charged.charged_micros


def test_a_large_refund_is_approved_by_a_second_staff_member(
    page, live_server, charged, settings, browser
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = charged.charged_micros - 1
    requester = staff_in("finance", "fiona@operator.example")
    approver = staff_in("finance", "frank@operator.example")
    sign_in_to_admin(page, live_server, requester)
    page.goto(f"{live_server.url}/admin/usage/call/{charged.pk}/refund/")
    page.fill("#id_reason", "Dropped by our network, sorry")
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".messagelist")).to_contain_text("waiting for a second staff member")
    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_test_id("approvals-waiting")).to_contain_text("1 request of yours")

    second = browser.new_context().new_page()
    sign_in_to_admin(second, live_server, approver)
    expect(second.get_by_test_id("approvals-waiting")).to_contain_text(
        "1 refund waiting for your approval"
    )
    second.get_by_test_id("approvals-waiting").get_by_role("link").click()
    second.get_by_role("link", name="Decide").click()
    second.select_option("select[name=decision]", "approve")
    second.fill("textarea[name=reason]", "Checked the carrier log")
    second.get_by_role("button", name="Confirm").click()

    expect(second.locator(".messagelist")).to_contain_text(
        f"Refunded {format_usd_exact(charged.charged_micros)} of call {charged.call_id}."
    )
    assert Call.objects.get(pk=charged.pk).refunded_micros == charged.charged_micros


def test_finance_refunds_part_of_a_top_up_from_its_page(page, live_server, charged):
    account = charged.account
    topup = account.topups.get()
    finance = staff_in("finance", "fiona@operator.example")
    sign_in_to_admin(page, live_server, finance)
    click = Clicks(page)

    page.fill("#support-q", account.public_id)
    click(page.locator("form.support-search input[type=submit]"))
    click(page.get_by_role("link", name=f"{topup.created_at:%-d %b %Y}", exact=False))
    click(page.get_by_role("link", name="Refund", exact=True))
    # What is left of it: paid, less what the call spent.
    expect(page.locator("#id_amount")).to_have_value(usd_input(refundable_micros(topup)))
    page.fill("#id_amount", "12.50")
    page.fill("#id_reason", "Bought too much by mistake")
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator(".messagelist")).to_contain_text("$12.50 refunded to the card.")
    assert click.count <= 4
    topup.refresh_from_db()
    assert topup.refunded_micros == 12_500_000


def test_finance_adjusts_a_balance_down(page, live_server, charged):
    account = charged.account
    finance = staff_in("finance", "fiona@operator.example")
    sign_in_to_admin(page, live_server, finance)
    click = Clicks(page)

    page.fill("#support-q", account.name)
    click(page.locator("form.support-search input[type=submit]"))
    click(page.get_by_role("link", name="Adjust balance", exact=True))
    page.fill("#id_amount", "-2.25")
    page.fill("#id_reason", "Correction of a duplicate credit")
    page.get_by_role("button", name="Confirm").click()

    expect(page.locator(".messagelist")).to_contain_text("Posted")
    assert click.count <= 4
    account.refresh_from_db()
    assert account.balance_micros == 50 * USD - charged.charged_micros - 2_250_000
