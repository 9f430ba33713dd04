"""Every call Meterline makes to Stripe, through stripe-python (SPEC P1-P5).

The rest of the code sees a few functions with plain arguments and plain results; nothing else
imports `stripe`. Amounts go out in cents through `billing.money.micros_to_cents`, the one
conversion. Every call that creates something carries an idempotency key derived from one of our
rows written before the call (a TopUp, a Refund, an InvoicePayment), so a retry after a crash or
a timeout returns Stripe's first answer instead of moving money twice.

dj-stripe keeps its copies of Stripe objects (customers, payment methods, payment intents,
charges, refunds, checkout sessions) up to date from the webhooks; the objects we create are also
synced into it here, best-effort: a failed copy never loses a payment result.
"""

import logging
import os
from dataclasses import dataclass

import stripe
from django.conf import settings

from accounts.models import Account
from billing.money import micros_to_cents
from billing.payments.gateway.protocol import ChargeOutcome, default_card

logger = logging.getLogger(__name__)

CURRENCY = "usd"


def _forget_http_client() -> None:
    # stripe-python keeps one module-wide HTTP client with pooled keep-alive connections. A process
    # forked after a Stripe call (django-q2's workers, gunicorn with --preload) would share those
    # sockets with its parent, and two processes writing to one connection read each other's
    # answers: a refund came back as a balance transaction. A child starts with a client of its own.
    stripe.default_http_client = None


os.register_at_fork(after_in_child=_forget_http_client)


class ProviderUnavailable(Exception):
    """Stripe could not be reached or failed on its side; the same call may be repeated."""


@dataclass(frozen=True)
class CheckoutLink:
    session_id: str
    url: str


@dataclass(frozen=True)
class RefundOutcome:
    status: str  # succeeded, pending, failed
    reference: str = ""
    error: str = ""


@dataclass(frozen=True)
class CardDetails:
    payment_method_id: str
    customer_id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


def _options(idempotency_key: str | None = None) -> dict:
    options = {"api_key": settings.STRIPE_SECRET_KEY, "stripe_version": settings.STRIPE_API_VERSION}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


def _mirror(model_name: str, obj) -> None:
    """Copy a Stripe object into dj-stripe's tables; webhooks will retry if this fails."""
    from djstripe import models as djstripe_models

    try:
        getattr(djstripe_models, model_name).sync_from_stripe_data(
            obj, api_key=settings.STRIPE_SECRET_KEY
        )
    except Exception:  # a mirror, never the source of truth
        logger.warning("Could not sync %s %s into dj-stripe", model_name, obj.get("id"))


def _unavailable(error: stripe.StripeError) -> ProviderUnavailable:
    return ProviderUnavailable(error.user_message or str(error))


def ensure_customer(*, account: Account) -> str:
    """Return the account's Stripe customer id, creating the customer once."""
    if account.stripe_customer_id:
        return account.stripe_customer_id
    try:
        customer = stripe.Customer.create(
            email=account.email,
            name=account.name,
            # dj-stripe links the customer to its subscriber (our Account) through this key.
            metadata={"djstripe_subscriber": str(account.pk), "account": account.public_id},
            **_options(f"meterline-customer-{account.public_id}"),
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    Account.objects.filter(pk=account.pk, stripe_customer_id="").update(
        stripe_customer_id=customer.id
    )
    account.stripe_customer_id = customer.id
    _mirror("Customer", customer)
    return customer.id


def create_topup_checkout(
    *,
    account: Account,
    amount_micros: int,
    topup_public_id: str,
    idempotency_key: str,
    success_url: str,
    cancel_url: str,
) -> CheckoutLink:
    """Open a Checkout Session (mode payment) that buys `amount_micros` of credit."""
    customer_id = ensure_customer(account=account)
    metadata = {"topup": topup_public_id, "account": account.public_id}
    try:
        session = stripe.checkout.Session.create(
            mode="payment",
            customer=customer_id,
            client_reference_id=topup_public_id,
            line_items=[
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": CURRENCY,
                        "unit_amount": micros_to_cents(amount_micros),
                        "product_data": {"name": "Credit top-up"},
                    },
                }
            ],
            metadata=metadata,
            payment_intent_data={"metadata": metadata},
            success_url=success_url,
            cancel_url=cancel_url,
            **_options(idempotency_key),
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    return CheckoutLink(session_id=session.id, url=session.url)


def create_card_setup_checkout(
    *, account: Account, idempotency_key: str, success_url: str, cancel_url: str
) -> CheckoutLink:
    """Open a Checkout Session (mode setup) where the customer saves a card."""
    customer_id = ensure_customer(account=account)
    try:
        session = stripe.checkout.Session.create(
            mode="setup",
            customer=customer_id,
            currency=CURRENCY,
            payment_method_types=["card"],
            metadata={"purpose": "add_card", "account": account.public_id},
            success_url=success_url,
            cancel_url=cancel_url,
            **_options(idempotency_key),
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    return CheckoutLink(session_id=session.id, url=session.url)


def charge_off_session(
    *,
    account: Account,
    amount_micros: int,
    idempotency_key: str,
    description: str,
    metadata: dict | None = None,
) -> ChargeOutcome:
    """Charge the account's default card without the customer present.

    Raise ProviderUnavailable when Stripe could not answer (the caller keeps its row pending
    and repeats the call with the same key).
    """
    card = default_card(account)
    if card is None:
        return ChargeOutcome("failed", error="No saved card.")
    customer_id = ensure_customer(account=account)
    try:
        intent = stripe.PaymentIntent.create(
            amount=micros_to_cents(amount_micros),
            currency=CURRENCY,
            customer=customer_id,
            payment_method=card.gateway_id,
            off_session=True,
            confirm=True,
            metadata={**(metadata or {}), "description": description[:200]},
            **_options(idempotency_key),
        )
    except stripe.CardError as error:
        intent = (error.error and error.error.payment_intent) or None
        reference = intent.get("id", "") if intent else ""
        if error.code == "authentication_required":
            return ChargeOutcome(
                "requires_action", reference=reference, error="The card needs authentication."
            )
        return ChargeOutcome(
            "failed", reference=reference, error=error.user_message or "The card was declined."
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    _mirror("PaymentIntent", intent)
    if intent.status == "succeeded":
        return ChargeOutcome("succeeded", reference=intent.id)
    if intent.status in ("requires_action", "requires_confirmation"):
        return ChargeOutcome(
            "requires_action", reference=intent.id, error="The card needs authentication."
        )
    if intent.status == "processing":
        return ChargeOutcome("pending", reference=intent.id)
    error = intent.get("last_payment_error") or {}
    return ChargeOutcome(
        "failed", reference=intent.id, error=error.get("message") or "The card was declined."
    )


def cancel_payment_intent(*, payment_intent_id: str) -> None:
    """Cancel an intent the customer will pay another way; already final is fine."""
    try:
        stripe.PaymentIntent.cancel(payment_intent_id, **_options())
    except stripe.InvalidRequestError:
        logger.info("Payment intent %s could not be canceled", payment_intent_id)


def refund_payment(
    *, payment_intent_id: str, amount_micros: int, idempotency_key: str, metadata: dict
) -> RefundOutcome:
    """Give `amount_micros` of a payment back to the card."""
    try:
        refund = stripe.Refund.create(
            payment_intent=payment_intent_id,
            amount=micros_to_cents(amount_micros),
            metadata=metadata,
            **_options(idempotency_key),
        )
    except (stripe.InvalidRequestError, stripe.CardError) as error:
        return RefundOutcome("failed", error=error.user_message or str(error))
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    _mirror("Refund", refund)
    status = "failed" if refund.status in ("failed", "canceled") else "succeeded"
    return RefundOutcome(status, reference=refund.id, error=refund.get("failure_reason") or "")


def card_details(payment_method) -> CardDetails:
    """Read what we keep of a card from a Stripe PaymentMethod (object or webhook JSON)."""
    card = payment_method.get("card") or {}
    customer = payment_method.get("customer") or ""
    if not isinstance(customer, str):
        customer = customer.get("id", "")
    return CardDetails(
        payment_method_id=payment_method["id"],
        customer_id=customer,
        brand=card.get("brand") or "",
        last4=card.get("last4") or "",
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def setup_session_card(*, setup_intent_id: str) -> CardDetails | None:
    """Return the card a completed setup-mode Checkout Session saved."""
    try:
        intent = stripe.SetupIntent.retrieve(
            setup_intent_id, expand=["payment_method"], **_options()
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    payment_method = intent.get("payment_method")
    if not payment_method:
        return None
    if isinstance(payment_method, str):
        payment_method = stripe.PaymentMethod.retrieve(payment_method, **_options())
    _mirror("PaymentMethod", payment_method)
    return card_details(payment_method)


def current_card(*, payment_method_id: str) -> CardDetails | None:
    """Return the card as Stripe holds it now, or None if Stripe no longer has it.

    A detached card comes back with no customer.
    """
    try:
        payment_method = stripe.PaymentMethod.retrieve(payment_method_id, **_options())
    except stripe.InvalidRequestError:
        return None  # deleted, or never ours
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    return card_details(payment_method)


def set_default_payment_method(*, account: Account, payment_method_id: str) -> None:
    customer_id = ensure_customer(account=account)
    try:
        customer = stripe.Customer.modify(
            customer_id,
            invoice_settings={"default_payment_method": payment_method_id},
            **_options(),
        )
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    _mirror("Customer", customer)


def detach_payment_method(*, payment_method_id: str) -> None:
    try:
        payment_method = stripe.PaymentMethod.detach(payment_method_id, **_options())
    except stripe.InvalidRequestError:
        # Already detached (or deleted) on Stripe's side: nothing left to do.
        logger.info("Payment method %s was already detached", payment_method_id)
        return
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise _unavailable(error) from error
    _mirror("PaymentMethod", payment_method)


class StripeGateway:
    """The PaymentGateway of billing.payments.gateway.protocol, with real Stripe calls (P5)."""

    def charge_saved_card(
        self,
        *,
        account: Account,
        amount_micros: int,
        idempotency_key: str,
        description: str,
        metadata: dict | None = None,
    ) -> ChargeOutcome:
        return charge_off_session(
            account=account,
            amount_micros=amount_micros,
            idempotency_key=idempotency_key,
            description=description,
            metadata=metadata,
        )
