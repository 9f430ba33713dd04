"""Changing plan from the Billing page in a real browser (SPEC F2): an upgrade that takes effect
at once with its prorated fee charged to the saved card, then a downgrade that waits for the
next period. Fails on any console error or CSP violation (see conftest)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import InvoiceReason, PlanFeeCharge, Subscription, TestCardBehaviour
from billing.payments.cards import add_test_card

pytestmark = pytest.mark.usefixtures("transactional_db")
USD = 1_000_000
PASSWORD = "correct horse battery staple"


@pytest.fixture
def owner(make_user):
    return make_user("owner@example.test", password=PASSWORD)


@pytest.fixture
def account(make_account, owner):
    account = make_account(
        "voice-prepaid",
        owner=owner,
        name="Acme Voice",
        credit_micros=30 * USD,
        at=timezone.now() - timedelta(days=10),
    )
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=timezone.now())
    return account


def choose_and_preview(page, plan_name: str) -> None:
    page.get_by_role("link", name="Compare and change plan").click()
    expect(page.get_by_test_id("plan-compare")).to_contain_text(plan_name)
    page.get_by_label(plan_name).check()
    page.get_by_role("button", name="Preview the change").click()
    expect(page.locator("h1")).to_contain_text(f"Change to {plan_name}")


def test_upgrade_at_once_then_downgrade_next_period_from_the_billing_page(
    page, live_server, log_in, owner, account, shot
):
    log_in(owner)
    page.goto(f"{live_server.url}/app/a/{account.public_id}/billing/")
    expect(page.get_by_test_id("plan-facts")).to_contain_text("Voice Prepaid")
    expect(page.get_by_test_id("plan-rates")).to_contain_text("$0.08 per minute")
    shot("billing-plan-panel")

    choose_and_preview(page, "Monthly Credits")
    expect(page.get_by_test_id("takes-effect")).to_contain_text("At once")
    expect(page.get_by_test_id("charged-now")).to_contain_text("for the rest of this period")
    shot("plan-preview-upgrade")
    page.get_by_role("button", name="Confirm the change to Monthly Credits").click()

    expect(page.locator(".messages")).to_contain_text("The plan is now Monthly Credits.")
    expect(page.get_by_test_id("plan-facts")).to_contain_text("Monthly Credits")
    expect(page.get_by_test_id("plan-facts")).to_contain_text("$45.00 a period")
    fee = PlanFeeCharge.objects.get(account=account)
    assert fee.invoice.reason == InvoiceReason.PLAN_FEE and fee.paid_at is not None

    choose_and_preview(page, "Voice Prepaid")
    expect(page.get_by_test_id("takes-effect")).to_contain_text("At the start of the next period")
    page.get_by_role("button", name="Confirm the change to Voice Prepaid").click()

    expect(page.locator(".messages")).to_contain_text("The plan changes to Voice Prepaid on")
    subscription = Subscription.objects.get(account=account)
    assert (subscription.plan.code, subscription.pending_plan.code) == (
        "credits-monthly",
        "voice-prepaid",
    )
    shot("billing-after-downgrade")
