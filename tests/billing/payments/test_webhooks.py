"""Signed Stripe webhooks through the real endpoint (SPEC P1, P3)."""

import itertools
import time

import pytest
from djstripe.models import Event, WebhookEventTrigger

from billing.models import EntryKind, LedgerEntry, Notification, RefundStatus, TopUpStatus
from billing.payments.refunds import refund_topup
from billing.payments.topups import start_topup
from tests.billing.payments import stripe_json
from tests.conftest import NOW

USD = 1_000_000


@pytest.fixture
def pending_topup(stripe_account, stripe_keys):
    account = stripe_account()
    started = start_topup(
        account=account,
        amount_micros=25 * USD,
        now=NOW,
        success_url="https://meterline.example.test/done/{TOPUP}/",
        cancel_url="https://meterline.example.test/cancel/{TOPUP}/",
    )
    return started.topup


def paid_objects(fake_stripe, topup):
    """The session, intent and charge Stripe holds once the customer paid on Checkout."""
    pi_id = stripe_json.stripe_id("pi")
    charge = stripe_json.charge(
        stripe_json.stripe_id("ch"),
        amount_cents=topup.amount_micros // 10_000,
        customer_id=topup.account.stripe_customer_id,
        payment_intent_id=pi_id,
        metadata={"topup": topup.public_id},
    )
    intent = stripe_json.payment_intent(
        pi_id,
        amount_cents=topup.amount_micros // 10_000,
        customer_id=topup.account.stripe_customer_id,
        metadata={"topup": topup.public_id},
        charge_id=charge["id"],
    )
    session = stripe_json.checkout_session(
        topup.checkout_session_id,
        customer_id=topup.account.stripe_customer_id,
        amount_cents=topup.amount_micros // 10_000,
        payment_intent_id=pi_id,
        metadata={"topup": topup.public_id},
        client_reference_id=topup.public_id,
    )
    fake_stripe.add(charge, intent, session)
    return {
        "checkout.session.completed": session,
        "payment_intent.succeeded": intent,
        "charge.succeeded": charge,
    }


def test_checkout_session_completed_credits_the_topup(pending_topup, fake_stripe, post_event):
    objects = paid_objects(fake_stripe, pending_topup)

    response = post_event(
        stripe_json.event("checkout.session.completed", objects["checkout.session.completed"])
    )

    assert response.status_code == 200, response.content
    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.SUCCEEDED
    assert pending_topup.account.ledger_entries.get().amount_micros == 25 * USD


TOPUP_EVENTS = ["checkout.session.completed", "payment_intent.succeeded", "charge.succeeded"]


@pytest.mark.parametrize("order", list(itertools.permutations(TOPUP_EVENTS)))
def test_topup_is_credited_once_whatever_order_and_repeats(
    order, pending_topup, fake_stripe, post_event
):
    objects = paid_objects(fake_stripe, pending_topup)
    events = [stripe_json.event(kind, objects[kind]) for kind in order]

    # Every event twice, the second round a redelivery of the same event ids.
    responses = [post_event(e) for e in events] + [post_event(e) for e in events]

    assert [r.status_code for r in responses] == [200] * 6
    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.SUCCEEDED
    entries = LedgerEntry.objects.filter(account=pending_topup.account)
    assert [(e.kind, e.amount_micros) for e in entries] == [(EntryKind.TOPUP, 25 * USD)]
    pending_topup.account.refresh_from_db()
    assert pending_topup.account.balance_micros == 25 * USD
    assert pending_topup.payment_intent_id == objects["payment_intent.succeeded"]["id"]
    assert pending_topup.grant.remaining_micros == 25 * USD
    assert Event.objects.count() == 3
    assert Notification.objects.filter(kind="topup_receipt").count() == 1


def test_a_new_event_id_for_the_same_payment_credits_nothing_more(
    pending_topup, fake_stripe, post_event
):
    objects = paid_objects(fake_stripe, pending_topup)
    post_event(stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"]))
    post_event(stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"]))

    assert LedgerEntry.objects.filter(account=pending_topup.account).count() == 1


def test_unpaid_checkout_session_credits_nothing(pending_topup, fake_stripe, post_event):
    session = paid_objects(fake_stripe, pending_topup)["checkout.session.completed"]
    session["payment_status"] = "unpaid"

    assert post_event(stripe_json.event("checkout.session.completed", session)).status_code == 200

    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.PENDING
    assert not LedgerEntry.objects.filter(account=pending_topup.account).exists()


def test_amount_that_differs_from_the_topup_is_not_credited(pending_topup, fake_stripe, post_event):
    intent = paid_objects(fake_stripe, pending_topup)["payment_intent.succeeded"]
    intent["amount_received"] = 100  # 1 USD, not 25

    post_event(stripe_json.event("payment_intent.succeeded", intent))

    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.PENDING
    assert "expected" in pending_topup.error
    assert not LedgerEntry.objects.filter(account=pending_topup.account).exists()


def _nothing_written():
    return (
        WebhookEventTrigger.objects.count() == 0
        and Event.objects.count() == 0
        and LedgerEntry.objects.count() == 0
    )


def test_bad_signature_is_refused_and_writes_nothing(pending_topup, fake_stripe, post_event):
    objects = paid_objects(fake_stripe, pending_topup)
    event = stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"])

    response = post_event(event, secret="whsec_someone_else")

    assert response.status_code == 400
    assert _nothing_written()
    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.PENDING


def test_old_timestamp_is_refused_and_writes_nothing(pending_topup, fake_stripe, post_event):
    objects = paid_objects(fake_stripe, pending_topup)
    event = stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"])

    response = post_event(event, timestamp=int(time.time()) - 600)  # tolerance is 300 s

    assert response.status_code == 400
    assert _nothing_written()


def test_secret_in_a_request_header_does_not_replace_the_endpoint_secret(
    client, webhook_endpoint, pending_topup, fake_stripe, settings
):
    """dj-stripe accepts x-djstripe-webhook-secret in DEBUG; our check in front does not."""
    from tests.billing.payments.conftest import sign

    settings.DEBUG = True
    objects = paid_objects(fake_stripe, pending_topup)
    body = stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"])
    import json

    text = json.dumps(body)
    response = client.post(
        f"/stripe/webhook/{webhook_endpoint.djstripe_uuid}/",
        data=text,
        content_type="application/json",
        headers={
            "Stripe-Signature": sign(text, secret="whsec_attacker"),
            "X-Djstripe-Webhook-Secret": "whsec_attacker",
        },
    )

    assert response.status_code == 400
    assert _nothing_written()


def test_missing_signature_is_refused(client, webhook_endpoint):
    response = client.post(
        f"/stripe/webhook/{webhook_endpoint.djstripe_uuid}/",
        data="{}",
        content_type="application/json",
    )

    assert response.status_code == 400
    assert WebhookEventTrigger.objects.count() == 0


def test_valid_event_is_stored_and_marked_processed(pending_topup, fake_stripe, post_event):
    objects = paid_objects(fake_stripe, pending_topup)
    event = stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"])

    post_event(event)

    trigger = WebhookEventTrigger.objects.get()
    assert trigger.valid and trigger.processed
    assert trigger.event.id == event["id"]


def test_expired_checkout_cancels_the_pending_topup(pending_topup, fake_stripe, post_event):
    session = paid_objects(fake_stripe, pending_topup)["checkout.session.completed"]
    session.update(status="expired", payment_status="unpaid", payment_intent=None)

    post_event(stripe_json.event("checkout.session.expired", session))

    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.CANCELED


def test_payment_method_attached_and_detached_sync_our_cards(
    stripe_account, fake_stripe, post_event
):
    account = stripe_account()
    new_card = stripe_json.payment_method(
        stripe_json.stripe_id("pm"), customer_id=account.stripe_customer_id, last4="1881"
    )
    fake_stripe.add(new_card)

    post_event(stripe_json.event("payment_method.attached", new_card))
    saved = account.payment_methods.get(gateway_id=new_card["id"])
    assert (saved.last4, saved.removed_at, saved.is_default) == ("1881", None, False)

    detached = {**new_card, "customer": None}
    fake_stripe.add(detached)
    post_event(stripe_json.event("payment_method.detached", detached))
    saved.refresh_from_db()
    assert saved.removed_at is not None


def test_card_saved_on_setup_checkout_becomes_the_default(make_account, fake_stripe, post_event):
    account = make_account()
    customer = stripe_json.customer(stripe_json.stripe_id("cus"))
    card = stripe_json.payment_method(stripe_json.stripe_id("pm"), customer_id=customer["id"])
    intent = stripe_json.setup_intent(
        stripe_json.stripe_id("seti"), customer_id=customer["id"], payment_method_id=card["id"]
    )
    session = stripe_json.checkout_session(
        stripe_json.stripe_id("cs_test"),
        customer_id=customer["id"],
        amount_cents=None,
        mode="setup",
        payment_status="no_payment_required",
        setup_intent_id=intent["id"],
    )
    fake_stripe.add(customer, card, intent, session)
    account.stripe_customer_id = customer["id"]
    account.save(update_fields=["stripe_customer_id"])

    post_event(stripe_json.event("checkout.session.completed", session))

    saved = account.payment_methods.get()
    assert (saved.gateway_id, saved.is_default) == (card["id"], True)
    assert fake_stripe.posts(f"/v1/customers/{customer['id']}")[-1] == {
        "invoice_settings[default_payment_method]": card["id"]
    }


def test_refund_made_in_stripe_takes_the_credit_back(pending_topup, fake_stripe, post_event):
    objects = paid_objects(fake_stripe, pending_topup)
    post_event(stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"]))
    charge = {**objects["charge.succeeded"], "amount_refunded": 1000, "refunded": False}
    fake_stripe.add(charge)

    post_event(stripe_json.event("charge.refunded", charge))
    post_event(stripe_json.event("charge.refunded", charge))  # a second event, same state

    pending_topup.refresh_from_db()
    assert pending_topup.refunded_micros == 10 * USD
    refund_entries = LedgerEntry.objects.filter(kind=EntryKind.TOPUP_REFUND)
    assert [e.amount_micros for e in refund_entries] == [-10 * USD]
    assert pending_topup.grant.remaining_micros == 15 * USD


# Refunds that Stripe finishes later, and may fail (issue 14 item 7) ------------------------------


@pytest.fixture
def refunded_topup(pending_topup, fake_stripe, post_event, make_user):
    """A paid 25 USD top-up, 10 USD of which staff refunded to the card; return the refund."""

    def refund(*, stripe_status: str):
        objects = paid_objects(fake_stripe, pending_topup)
        post_event(
            stripe_json.event("payment_intent.succeeded", objects["payment_intent.succeeded"])
        )
        pending_topup.refresh_from_db()
        fake_stripe.refund_status = stripe_status
        staff = make_user(is_staff=True, is_superuser=True)
        return refund_topup(
            topup=pending_topup,
            amount_micros=10 * USD,
            reason="Customer asked",
            request_key="req-1",
            now=NOW,
            actor=staff,
        )

    return refund


def stripe_refund(refund, *, status: str, failure_reason=None) -> dict:
    obj = {
        **stripe_json.refund(
            refund.stripe_refund_id,
            amount_cents=refund.amount_micros // 10_000,
            payment_intent_id=refund.topup.payment_intent_id,
            charge_id=stripe_json.stripe_id("ch"),
            metadata={"refund": refund.key, "topup": refund.topup.public_id},
        ),
        "status": status,
        "failure_reason": failure_reason,
    }
    return obj


def balance_of(topup) -> int:
    topup.account.refresh_from_db()
    return topup.account.balance_micros


def test_a_refund_pending_at_stripe_is_not_recorded_as_succeeded(refunded_topup):
    refund = refunded_topup(stripe_status="pending")

    assert refund.status == RefundStatus.PENDING
    assert refund.stripe_refund_id.startswith("re_")
    assert balance_of(refund.topup) == 15 * USD  # the credit is held back while Stripe works


def test_a_pending_refund_that_fails_at_stripe_restores_the_credit_once_and_tells_staff(
    refunded_topup, post_event, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.STAFF_ALERT_EMAILS = ["finance@operator.test"]
    refund = refunded_topup(stripe_status="pending")
    failed = stripe_refund(refund, status="failed", failure_reason="expired_or_canceled_card")

    with django_capture_on_commit_callbacks(execute=True):
        for event_type in ("refund.failed", "refund.updated", "charge.refund.updated"):
            response = post_event(stripe_json.event(event_type, failed))
            assert response.status_code == 200, response.content

    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert "expired_or_canceled_card" in refund.error
    assert balance_of(refund.topup) == 25 * USD
    [restored] = LedgerEntry.objects.filter(kind=EntryKind.ADJUSTMENT)
    assert (restored.amount_micros, restored.idempotency_key) == (
        10 * USD,
        f"refund-failed:{refund.pk}",
    )
    refund.topup.refresh_from_db()
    assert refund.topup.refunded_micros == 0
    [alert] = Notification.objects.filter(kind="refund_failed")
    assert alert.recipients == "finance@operator.test"
    [email] = [m for m in mailoutbox if m.to == ["finance@operator.test"]]
    assert "Refund failed: $10.00" in email.subject


def test_a_refund_stripe_reported_succeeded_and_then_failed_restores_the_credit(
    refunded_topup, post_event, settings
):
    settings.STAFF_ALERT_EMAILS = ["finance@operator.test"]
    refund = refunded_topup(stripe_status="succeeded")
    assert refund.status == RefundStatus.SUCCEEDED

    post_event(stripe_json.event("refund.updated", stripe_refund(refund, status="failed")))

    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert balance_of(refund.topup) == 25 * USD


def test_a_pending_refund_that_succeeds_at_stripe_is_recorded_succeeded(refunded_topup, post_event):
    refund = refunded_topup(stripe_status="pending")

    post_event(stripe_json.event("refund.updated", stripe_refund(refund, status="succeeded")))

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert balance_of(refund.topup) == 15 * USD
    assert not Notification.objects.filter(kind="refund_failed").exists()
