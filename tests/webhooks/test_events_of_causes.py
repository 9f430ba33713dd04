"""Each event type is emitted by its cause, in the cause's transaction, with both customer ids."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction

from accounts.models import Account
from billing.customers import open_customer, update_customer
from billing.invoicing.invoices import invoice_thresholds
from billing.models import TestCardBehaviour as Card
from billing.payments.auto_topup import save_auto_topup_settings
from billing.payments.cards import add_test_card
from billing.payments.collection import collect_invoice, retry_account_invoices
from billing.payments.refunds import refund_topup
from billing.payments.topups import fail_topup, fulfil_topup, start_topup
from billing.plans.onboarding import create_account
from tests.billing.money_and_notices import spend
from tests.billing.usage_reports import (
    USD,
    add_card,
    fresh_test_gateway,  # noqa: F401 - autouse
    report_minutes,
    report_usage_of_458_usd,
)
from tests.conftest import NOW
from usage.ingest.calls import refund_call
from usage.spending.budgets import create_budget
from webhooks.event_types import EVENT_TYPES
from webhooks.models import OutboundEvent

pytestmark = pytest.mark.django_db
URLS = {"success_url": "https://x.test/ok/{TOPUP}/", "cancel_url": "https://x.test/no/{TOPUP}/"}
ISSUED = NOW + timedelta(days=3)


def events_of(account: Account, event_type: str) -> list[dict]:
    """The data of the account's events of one type, oldest first; each names both ids."""
    found = []
    for event in OutboundEvent.objects.filter(account=account, type=event_type).order_by("pk"):
        payload = event.payload
        assert payload["id"] == event.event_id
        assert payload["type"] == event_type
        assert payload["data"]["account"] == account.public_id
        assert payload["data"]["customer"] == account.external_id
        found.append(payload["data"])
    return found


def test_opening_an_account_emits_customer_created_and_its_credit_granted(plans):
    account = create_account(
        name="Acme",
        email="ops@acme.test",
        plan=plans["voice-prepaid"],
        now=NOW,
        credit_micros=7 * USD,
    )

    [created] = events_of(account, "customer.created")
    assert (created["name"], created["plan"], created["balance"]) == (
        "Acme",
        "voice-prepaid",
        "7.000000",
    )
    [granted] = events_of(account, "credit.granted")
    assert (granted["amount"], granted["kind"]) == ("7.000000", "promotional")


def test_an_account_that_fails_to_open_emits_nothing(plans):
    before = OutboundEvent.objects.count()

    with pytest.raises(ValueError), transaction.atomic():
        create_account(name="Acme", email="a@acme.test", plan=plans["voice-prepaid"], now=NOW)
        raise ValueError("the caller's transaction fails after the account was opened")

    assert OutboundEvent.objects.count() == before


def test_the_external_id_is_the_customer_id_of_every_event(make_account):
    account = make_account("voice-prepaid", credit_micros=50 * USD)
    Account.objects.filter(pk=account.pk).update(external_id="cust_42")
    account.refresh_from_db()

    spend(account, "45.00")

    [low] = events_of(account, "balance.low")
    assert low["customer"] == "cust_42"


def test_crossing_the_threshold_emits_balance_low_and_reaching_zero_balance_depleted(
    make_account,
):
    account = make_account("voice-prepaid", credit_micros=50 * USD)

    spend(account, "30.00")
    assert events_of(account, "balance.low") == []
    spend(account, "15.00")  # below the plan's 20 USD threshold
    spend(account, "5.00")  # nothing left

    [low] = events_of(account, "balance.low")
    assert (low["balance"], low["threshold"]) == ("5.000000", "20.000000")
    [depleted] = events_of(account, "balance.depleted")
    assert depleted["balance"] == "0.000000"


def test_a_threshold_invoice_emits_invoice_issued(make_account):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=ISSUED)

    [invoice] = invoice_thresholds(now=ISSUED)

    [issued] = events_of(account, "invoice.issued")
    assert (issued["number"], issued["total"]) == (invoice.number, "458.000000")


def test_dunning_emits_payment_failed_past_due_then_paid_and_reinstated(make_account):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)

    collect_invoice(invoice_id=invoice.pk, now=ISSUED)  # no card: fails

    [failed] = events_of(account, "invoice.payment_failed")
    assert (failed["number"], failed["failures"]) == (invoice.number, 1)
    [past_due] = events_of(account, "account.past_due")
    assert past_due["invoice"] == invoice.number
    assert events_of(account, "invoice.paid") == []

    add_card(account, Card.SUCCEED)
    retry_account_invoices(account=account, now=ISSUED + timedelta(hours=1))

    [paid] = events_of(account, "invoice.paid")
    assert (paid["status"], paid["amount_paid"]) == ("paid", "458.000000")
    assert len(events_of(account, "account.reinstated")) == 1


def test_a_refunded_call_emits_call_refunded(make_account):
    account = make_account("voice-prepaid", credit_micros=50 * USD)
    call = report_minutes(account, 3, now=NOW)

    refund_call(call_id=call.call_id, now=NOW, reason="dropped by our carrier")
    refund_call(call_id=call.call_id, now=NOW)  # idempotent: no second event

    [refunded] = events_of(account, "call.refunded")
    assert refunded["call_id"] == call.call_id
    assert refunded["reason"] == "dropped by our carrier"
    assert refunded["amount"] != "0.000000"


def test_a_paid_top_up_emits_topup_succeeded_and_its_refund_refund_succeeded(
    make_user, make_account
):
    account = make_account()
    topup = start_topup(account=account, amount_micros=25 * USD, now=NOW, **URLS).topup
    fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id=f"test_pi_{topup.pk}")
    staff = make_user(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="refund_topup"))
    staff = type(staff).objects.get(pk=staff.pk)

    refund_topup(
        topup=topup, amount_micros=10 * USD, reason="Asked", request_key="r1", now=NOW, actor=staff
    )

    [paid] = events_of(account, "topup.succeeded")
    assert (paid["id"], paid["amount"], paid["balance"]) == (
        topup.public_id,
        "25.000000",
        "25.000000",
    )
    [refunded] = events_of(account, "refund.succeeded")
    assert (refunded["topup"], refunded["amount"]) == (topup.public_id, "10.000000")


def test_a_failed_top_up_emits_topup_failed_and_a_canceled_one_nothing(make_account):
    account = make_account()
    failed = start_topup(account=account, amount_micros=25 * USD, now=NOW, **URLS).topup
    canceled = start_topup(account=account, amount_micros=25 * USD, now=NOW, **URLS).topup

    fail_topup(topup_id=failed.pk, now=NOW, error="Card declined")
    fail_topup(topup_id=canceled.pk, now=NOW, error="", status="canceled")

    assert [e["id"] for e in events_of(account, "topup.failed")] == [failed.public_id]


@pytest.mark.parametrize(
    ("behaviour", "event_type"),
    [
        (Card.SUCCEED, "auto_topup.succeeded"),
        (Card.DECLINE, "auto_topup.failed"),
        (Card.REQUIRE_ACTION, "auto_topup.action_required"),
    ],
)
def test_an_auto_top_up_emits_how_its_charge_ended(
    make_account, django_capture_on_commit_callbacks, behaviour, event_type
):
    account = make_account("voice-prepaid", credit_micros=30 * USD)
    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour=behaviour, now=NOW)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, "25.00")

    [event] = events_of(account, event_type)
    assert (event["kind"], event["amount"]) == ("auto", "20.000000")
    others = {"auto_topup.succeeded", "auto_topup.failed", "auto_topup.action_required"}
    assert all(events_of(account, other) == [] for other in others - {event_type})


def test_reaching_a_budget_emits_budget_reached_once_a_period(make_account):
    account = make_account("voice-prepaid", credit_micros=50 * USD)
    report_minutes(account, 60, now=NOW)

    create_budget(account=account, name="Cap", amount_micros=1 * USD, hard=False, now=NOW)
    report_minutes(account, 1, now=NOW)

    [reached] = events_of(account, "budget.reached")
    assert (reached["name"], reached["amount"], reached["hard"]) == ("Cap", "1.000000", False)


def test_every_event_type_is_documented_with_an_example():
    text = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()

    for event_type in EVENT_TYPES:
        assert f"### `{event_type}`" in text, event_type


def test_a_customer_updated_through_the_api_emits_customer_updated_with_what_changed(
    plans, make_key
):
    platform = make_key()
    account = open_customer(
        external_id="ws_9",
        name="Acme",
        emails=["ops@acme.test"],
        plan_code="voice-prepaid",
        now=NOW,
    )

    update_customer(
        account=account,
        api_key=platform.api_key,
        now=NOW,
        name="Acme Inc",
        emails=["ops@acme.test", "ap@acme.test"],
    )
    update_customer(account=account, api_key=platform.api_key, now=NOW, metadata={"tier": "gold"})

    first, second = events_of(account, "customer.updated")
    assert (first["name"], first["changed"]) == ("Acme Inc", ["emails", "name"])
    assert second["changed"] == ["metadata"]
