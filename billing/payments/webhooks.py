"""Stripe webhooks: verified, stored, processed once, in any order (SPEC P3).

dj-stripe's endpoint (`/stripe/webhook/<uuid>/`, the secret on its `WebhookEndpoint` row) stores
every delivery as a `WebhookEventTrigger`, verifies its signature, and processes the event once:
a Stripe event id already stored as a dj-stripe `Event` is not processed again. Processing syncs
dj-stripe's copy of the object and then sends the event's signal, which the receivers below
answer by calling our services, inside the same transaction: if one fails, nothing of the event
is kept and Stripe's next delivery processes it again.

In front of it, `stripe_webhook` checks the signature and the timestamp first and refuses a bad
one with 400 without writing anything (dj-stripe would store the refused delivery, and in DEBUG
would accept a secret sent in a request header).

Each receiver reads the signed event payload and is idempotent by itself: top-ups are credited by
`fulfil_topup` (one ledger entry per top-up), failures and refunds only move rows forward from
the states they expect, and card events apply the card's current state at Stripe. So every
event below may come in any order, any number of times.
"""

import logging

import stripe
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from djstripe.event_handlers import djstripe_receiver
from djstripe.models import WebhookEndpoint
from djstripe.views import ProcessWebhookView

from billing.models import OFF_SESSION_KINDS, TopUpKind, TopUpStatus
from billing.money import cents_to_micros
from billing.payments import cards, off_session, refunds, topups
from billing.payments.gateway import get_gateway

logger = logging.getLogger(__name__)

_process = ProcessWebhookView.as_view()


@csrf_exempt
def stripe_webhook(request, uuid):
    """Refuse a delivery whose signature or timestamp is wrong before anything is stored."""
    endpoint = get_object_or_404(WebhookEndpoint, djstripe_uuid=uuid)
    signature = request.headers.get("stripe-signature", "")
    try:
        stripe.WebhookSignature.verify_header(
            request.body.decode("utf-8"), signature, endpoint.secret, endpoint.djstripe_tolerance
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
        return HttpResponseBadRequest("Bad signature.")
    return _process(request, uuid=uuid)


def _object(event) -> dict:
    return event.data.get("object") or {}


def _id(value) -> str:
    if isinstance(value, dict):
        return value.get("id", "")
    return value or ""


def _topup_of(obj: dict, *, payment_intent_id: str = "", checkout_session_id: str = ""):
    metadata = obj.get("metadata") or {}
    return topups.find_topup(
        public_id=metadata.get("topup") or obj.get("client_reference_id") or "",
        payment_intent_id=payment_intent_id,
        checkout_session_id=checkout_session_id,
    )


@djstripe_receiver(["checkout.session.completed", "checkout.session.async_payment_succeeded"])
def checkout_session_completed(sender, event, **kwargs):
    session = _object(event)
    now = timezone.now()
    if session.get("mode") == "setup":
        setup_intent_id = _id(session.get("setup_intent"))
        if setup_intent_id:
            details = get_gateway().card_saved_by_setup(setup_intent_id=setup_intent_id)
            if details is not None:
                cards.save_stripe_card(details=details, now=now)
        return
    if session.get("mode") != "payment" or session.get("payment_status") != "paid":
        return  # an asynchronous payment method: async_payment_succeeded will follow
    payment_intent_id = _id(session.get("payment_intent"))
    topup = _topup_of(session, checkout_session_id=session.get("id", ""))
    if topup is None:
        logger.warning("Checkout session %s is not one of our top-ups", session.get("id"))
        return
    topups.fulfil_topup(
        topup_id=topup.pk,
        now=now,
        payment_intent_id=payment_intent_id,
        checkout_session_id=session.get("id", ""),
        amount_paid_micros=cents_to_micros(session["amount_total"])
        if session.get("amount_total") is not None
        else None,
    )


@djstripe_receiver("checkout.session.expired")
def checkout_session_expired(sender, event, **kwargs):
    session = _object(event)
    topup = _topup_of(session, checkout_session_id=session.get("id", ""))
    if topup is not None and topup.kind == TopUpKind.MANUAL:
        topups.fail_topup(
            topup_id=topup.pk,
            now=timezone.now(),
            error="The checkout page expired.",
            status=TopUpStatus.CANCELED,
        )


@djstripe_receiver("payment_intent.succeeded")
def payment_intent_succeeded(sender, event, **kwargs):
    intent = _object(event)
    topup = _topup_of(intent, payment_intent_id=intent.get("id", ""))
    if topup is None:
        return  # not a top-up (an invoice payment records its own outcome)
    received = intent.get("amount_received")
    topups.fulfil_topup(
        topup_id=topup.pk,
        now=timezone.now(),
        payment_intent_id=intent.get("id", ""),
        amount_paid_micros=cents_to_micros(received) if received is not None else None,
    )


@djstripe_receiver("charge.succeeded")
def charge_succeeded(sender, event, **kwargs):
    charge = _object(event)
    if not charge.get("paid") or charge.get("status") != "succeeded":
        return
    payment_intent_id = _id(charge.get("payment_intent"))
    topup = _topup_of(charge, payment_intent_id=payment_intent_id)
    if topup is None:
        return
    topups.fulfil_topup(
        topup_id=topup.pk,
        now=timezone.now(),
        payment_intent_id=payment_intent_id,
        amount_paid_micros=cents_to_micros(charge["amount"]),
    )


@djstripe_receiver("payment_intent.payment_failed")
def payment_intent_failed(sender, event, **kwargs):
    intent = _object(event)
    topup = _topup_of(intent, payment_intent_id=intent.get("id", ""))
    # A manual top-up stays open: Checkout lets the customer try another card.
    if topup is None or topup.kind not in OFF_SESSION_KINDS:
        return
    error = (intent.get("last_payment_error") or {}).get("message") or "The card was declined."
    off_session.charge_failed(
        topup_id=topup.pk, now=timezone.now(), error=error, payment_intent_id=intent.get("id", "")
    )


@djstripe_receiver("payment_intent.requires_action")
def payment_intent_requires_action(sender, event, **kwargs):
    intent = _object(event)
    topup = _topup_of(intent, payment_intent_id=intent.get("id", ""))
    if topup is None or topup.kind not in OFF_SESSION_KINDS:
        return
    off_session.charge_requires_action(
        topup_id=topup.pk, now=timezone.now(), payment_intent_id=intent.get("id", "")
    )


@djstripe_receiver("charge.refunded")
def charge_refunded(sender, event, **kwargs):
    charge = _object(event)
    payment_intent_id = _id(charge.get("payment_intent"))
    if payment_intent_id:
        refunds.reconcile_stripe_refunds(
            payment_intent_id=payment_intent_id,
            amount_refunded_micros=cents_to_micros(charge.get("amount_refunded") or 0),
            now=timezone.now(),
        )


@djstripe_receiver(["refund.updated", "refund.failed", "charge.refund.updated"])
def refund_updated(sender, event, **kwargs):
    """A refund Stripe accepted (maybe as pending) ended: record it, and if it failed, put the
    credit back and tell staff (billing.payments.refunds.settle_stripe_refund)."""
    refund = _object(event)
    metadata = refund.get("metadata") or {}
    refunds.settle_stripe_refund(
        stripe_refund_id=refund.get("id", ""),
        refund_key=metadata.get("refund", ""),
        status=refund.get("status") or "",
        failure_reason=refund.get("failure_reason") or "",
        now=timezone.now(),
    )


@djstripe_receiver(["payment_method.attached", "payment_method.detached"])
def payment_method_changed(sender, event, **kwargs):
    """Make our card what Stripe holds now, not what the event said then.

    Attached and detached events may arrive late, twice or swapped: acting on the payload, a
    late `attached` brought a removed card back and a `detached` overtaken by its `attached`
    left a dead card as the default. Asking Stripe for the card's current state gives the same
    answer whatever the order.
    """
    payment_method = _object(event)
    if payment_method.get("type") != "card":
        return
    now = timezone.now()
    payment_method_id = payment_method.get("id", "")
    details = get_gateway().card_state(payment_method_id=payment_method_id)
    if details is not None and details.customer_id:
        cards.save_stripe_card(details=details, now=now)
    else:
        cards.card_detached(payment_method_id=payment_method_id, now=now)
