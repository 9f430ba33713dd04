"""The dashboard in a real browser: sign-up, top-up, inline errors, keys, subaccounts, charts.

Each test fails on any console error or Content-Security-Policy violation (see conftest), and
saves screenshots of the pages it visits into test-artifacts/.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import ApiKey
from billing.models import TestCardBehaviour
from billing.payments.cards import add_test_card
from tests.usage.dashboard_data import report_call_at

pytestmark = pytest.mark.usefixtures("transactional_db")
USD = 1_000_000
PASSWORD = "correct horse battery staple"


@pytest.fixture
def owner(make_user):
    return make_user("owner@example.test", password=PASSWORD)


@pytest.fixture
def voice(make_account, owner):
    """A voice-prepaid account with three weeks of calls."""
    now = timezone.now()
    account = make_account(
        "voice-prepaid",
        owner=owner,
        name="Acme Voice",
        credit_micros=60 * USD,
        at=now - timedelta(days=25),
    )
    for day in range(21):
        for n in range(1 + day % 3):
            report_call_at(
                account, seconds=60 + 40 * n + 7 * day, at=now - timedelta(days=day, hours=2 + n)
            )
    return account


def test_sign_up_and_see_the_signup_credit(page, live_server, plans, shot):
    page.goto(f"{live_server.url}/accounts/signup/")
    shot("signup")
    page.fill("#id_email", "newcomer@example.test")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")

    page.wait_for_url(re.compile(r".*/app/a/acc_[0-9a-f]+/$"))
    expect(page.get_by_test_id("balance")).to_contain_text("$10.00")
    expect(page.get_by_test_id("sidebar-balance")).to_have_text("$10.00")
    shot("overview-new-account")


def test_top_up_in_test_mode_and_see_the_balance_change(
    page, live_server, log_in, voice, owner, shot
):
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{voice.public_id}/billing/")
    before = page.get_by_test_id("sidebar-balance").inner_text()
    shot("billing")
    page.fill("#id_topup_amount", "25")
    page.click("text=Continue to payment")
    expect(page.locator("h1")).to_contain_text("Pay $25.00 (test mode)")
    page.click("button[value=pay]")
    page.wait_for_url(f"{live_server.url}/app/a/{voice.public_id}/billing/#payments")
    expect(page.locator(".messages")).to_contain_text("Paid. $25.00 was added to your balance")

    page.goto(f"{live_server.url}/app/a/{voice.public_id}/")
    after = page.get_by_test_id("sidebar-balance").inner_text()
    assert to_micros(after) - to_micros(before) == 25 * USD


def to_micros(text: str) -> int:
    """Return '$1,234.56' as micro-dollars."""
    whole, _, cents = text.replace("$", "").replace(",", "").partition(".")
    return int(whole) * USD + int(cents or 0) * 10_000


def test_auto_top_up_with_a_bad_value_shows_the_error_inline(
    page, live_server, log_in, voice, owner, shot
):
    add_test_card(account=voice, behaviour=TestCardBehaviour.SUCCEED, now=timezone.now())
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{voice.public_id}/billing/")
    page.evaluate("window.__stillHere = true")  # gone if the page reloads

    page.check("#id_enabled")
    page.fill("#id_threshold", "twenty")
    page.fill("#id_amount", "50")
    page.click("text=Save auto-top-up")

    section = page.locator("#auto-topup")
    expect(section.locator(".errorlist")).to_contain_text("Enter an amount in USD")
    assert page.evaluate("window.__stillHere") is True
    section.scroll_into_view_if_needed()
    shot("billing-auto-topup-error")

    page.fill("#id_threshold", "20")
    page.click("text=Save auto-top-up")
    expect(page.locator("#auto-topup .saved")).to_have_text("Auto-top-up saved.")
    assert page.evaluate("window.__stillHere") is True


def test_create_and_revoke_a_key(page, live_server, log_in, voice, owner, shot):
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{voice.public_id}/keys/")
    page.fill("#id_name", "Production")
    page.click("text=Create key")

    token = page.locator("#new-key-token").inner_text()
    key_id = token.split(":")[0]
    assert ApiKey.objects.get(key_id=key_id).name == "Production"
    shot("keys-new")

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f'tr[data-key="{key_id}"] button:has-text("Revoke")').click()
    expect(page.locator(f'tr[data-key="{key_id}"]')).to_contain_text("Revoked")
    assert ApiKey.objects.get(key_id=key_id).revoked_at is not None
    shot("keys")


def test_switch_to_a_subaccount(page, live_server, log_in, voice, owner, make_account, shot):
    child = make_account(
        "llm-api", owner=owner, parent=voice, name="Acme EU", credit_micros=10 * USD
    )
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{voice.public_id}/subaccounts/")
    expect(page.locator("main table")).to_contain_text("Acme EU")
    shot("subaccounts")

    page.select_option("#switch-account", child.public_id)

    page.wait_for_url(f"{live_server.url}/app/a/{child.public_id}/")
    expect(page.locator("h1")).to_contain_text("Acme EU")
    expect(page.get_by_test_id("balance")).to_contain_text("$10.00")


CANVAS_DRAWN = """id => {
  const canvas = document.getElementById(id);
  const chart = Chart.getChart(canvas);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted++; }
  return {
    points: chart
      ? chart.data.datasets.reduce((n, d) => n + d.data.filter(v => v > 0).length, 0)
      : 0,
    painted: painted,
  };
}"""


def test_charts_render_with_data(page, live_server, log_in, voice, owner, shot):
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{voice.public_id}/")
    page.wait_for_selector("#trend-chart[data-drawn]")

    drawn = page.evaluate(CANVAS_DRAWN, "trend-chart")
    assert drawn["points"] >= 20 and drawn["painted"] > 1000
    shot("overview")

    page.goto(f"{live_server.url}/app/a/{voice.public_id}/usage/")
    page.wait_for_selector("#daily-chart[data-drawn]")
    drawn = page.evaluate(CANVAS_DRAWN, "daily-chart")
    assert drawn["points"] >= 1 and drawn["painted"] > 1000
    # One voice rate: a sentence, not a one-slice pie.
    expect(page.get_by_test_id("one-rate")).to_contain_text("All usage at one rate")
    expect(page.locator("#model-chart")).to_have_count(0)
    shot("usage")


def test_without_javascript_every_chart_is_a_table(browser, live_server, voice, owner):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_login", owner.email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/app/**")

    page.goto(f"{live_server.url}/app/a/{voice.public_id}/")
    expect(page.locator(".chart-box")).to_be_hidden()
    page.click("text=The 30 days as a table")
    expect(page.locator("#trend-table tbody tr")).to_have_count(30)

    page.goto(f"{live_server.url}/app/a/{voice.public_id}/usage/")
    expect(page.locator(".chart-box")).to_be_hidden()
    page.click("text=by date")
    expect(page.locator("#by-day-title + .table-wrap table")).to_be_visible()
    context.close()


def test_the_call_log_opens_an_items_price_explanation(
    page, live_server, log_in, voice, owner, shot
):
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{voice.public_id}/usage/log/?kind=calls")
    first = page.locator(".log details").first
    first.locator("summary").click()

    expect(first.locator(".steps")).to_contain_text("Rounding")
    expect(first.locator(".steps")).to_contain_text("USD/min")
    shot("usage-log")


def test_the_other_pages_render(page, live_server, log_in, voice, owner, shot):
    log_in(owner)
    for name, path in [
        ("team", "team/"),
        ("invoices", "invoices/"),
        ("statement", "billing/statement/"),
        ("payments", "billing/payments/"),
    ]:
        page.goto(f"{live_server.url}/app/a/{voice.public_id}/{path}")
        expect(page.locator('.nav a[aria-current="page"]')).to_have_count(1)
        shot(name)


def test_the_main_pages_on_a_phone(page, live_server, log_in, voice, owner, shot):
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(owner)
    for name, path in [("overview", ""), ("billing", "billing/"), ("usage", "usage/")]:
        page.goto(f"{live_server.url}/app/a/{voice.public_id}/{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width}px wide on a 390px screen"
        shot(f"phone-{name}")
