"""The payment gateway with real money: every call Meterline makes to Stripe (SPEC P1-P5).

`StripeGateway` implements `billing.payments.gateway.protocol.PaymentGateway` with stripe-python;
nothing else imports `stripe` to move money. Amounts go out in cents through
`billing.money.micros_to_cents`, the one conversion. Every call that creates something carries an
idempotency key derived from one of our rows written before the call (a TopUp, a Refund, an
InvoicePayment), so a retry after a crash or a timeout returns Stripe's first answer instead of
moving money twice. Stripe failing or out of reach raises `ProviderUnavailable`.

dj-stripe keeps its copies of Stripe objects (customers, payment methods, payment intents,
charges, refunds, checkout sessions) up to date from the webhooks; the objects we create are also
synced into it here, best-effort: a failed copy never loses a payment result.
"""

import logging
import os

import stripe
from django.conf import settings
from djstripe import models as djstripe_models

from accounts.models import Account
from billing.models import PaymentMethod
from billing.money import micros_to_cents
from billing.payments.gateway.protocol import (
    CardDetails,
    ChargeOutcome,
    CheckoutLink,
    ProviderUnavailable,
    RefundOutcome,
    default_card,
)
from billing.payments.gateway.test_mode import TestModeGateway

logger = logging.getLogger(__name__)

CURRENCY = "usd"
# Stripe did not answer, or failed on its side: the same call may be repeated with its key.
_UNANSWERED = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)


def _forget_http_client() -> None:
    # stripe-python keeps one module-wide HTTP client with pooled keep-alive connections. A process
    # forked after a Stripe call (django-q2's workers, gunicorn with --preload) would share those
    # sockets with its parent, and two processes writing to one connection read each other's
    # answers: a refund came back as a balance transaction. A child starts with a client of its own.
    stripe.default_http_client = None


os.register_at_fork(after_in_child=_forget_http_client)


def _options(idempotency_key: str | None = None) -> dict:
    options = {"api_key": settings.STRIPE_SECRET_KEY, "stripe_version": settings.STRIPE_API_VERSION}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


def _mirror(model_name: str, obj) -> None:
    """Copy a Stripe object into dj-stripe's tables; webhooks will retry if this fails."""
    try:
        getattr(djstripe_models, model_name).sync_from_stripe_data(
            obj, api_key=settings.STRIPE_SECRET_KEY
        )
    except Exception:  # a mirror, never the source of truth
        logger.warning("Could not sync %s %s into dj-stripe", model_name, obj.get("id"))


def _unavailable(error: stripe.StripeError) -> ProviderUnavailable:
    return ProviderUnavailable(error.user_message or str(error))


def _card_details(payment_method) -> CardDetails:
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


class StripeGateway:
    """The PaymentGateway of billing.payments.gateway.protocol, with real Stripe calls."""

    simulated = False

    def ensure_customer(self, *, account: Account) -> str:
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
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        Account.objects.filter(pk=account.pk, stripe_customer_id="").update(
            stripe_customer_id=customer.id
        )
        account.stripe_customer_id = customer.id
        _mirror("Customer", customer)
        return customer.id

    def start_topup_checkout(
        self,
        *,
        account: Account,
        amount_micros: int,
        topup_public_id: str,
        idempotency_key: str,
        success_url: str,
        cancel_url: str,
    ) -> CheckoutLink:
        """Open a Checkout Session (mode payment) that buys `amount_micros` of credit."""
        customer_id = self.ensure_customer(account=account)
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
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        return CheckoutLink(session_id=session.id, url=session.url)

    def start_card_setup(
        self, *, account: Account, idempotency_key: str, success_url: str, cancel_url: str
    ) -> CheckoutLink:
        """Open a Checkout Session (mode setup) where the customer saves a card."""
        customer_id = self.ensure_customer(account=account)
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
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        return CheckoutLink(session_id=session.id, url=session.url)

    def make_default_card(self, *, account: Account, card: PaymentMethod) -> None:
        """Make the card the customer's default for invoices at Stripe."""
        if card.test_behaviour:
            return  # a test-mode card, saved before this site had Stripe keys: Stripe never saw it
        customer_id = self.ensure_customer(account=account)
        try:
            customer = stripe.Customer.modify(
                customer_id,
                invoice_settings={"default_payment_method": card.gateway_id},
                **_options(),
            )
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        _mirror("Customer", customer)

    def detach_card(self, *, card: PaymentMethod) -> None:
        """Detach the card from its Stripe customer."""
        if card.test_behaviour:
            return  # a test-mode card, saved before this site had Stripe keys: Stripe never saw it
        try:
            payment_method = stripe.PaymentMethod.detach(card.gateway_id, **_options())
        except stripe.InvalidRequestError:
            # Already detached (or deleted) on Stripe's side: nothing left to do.
            logger.info("Payment method %s was already detached", card.gateway_id)
            return
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        _mirror("PaymentMethod", payment_method)

    def charge_saved_card(
        self,
        *,
        account: Account,
        amount_micros: int,
        idempotency_key: str,
        description: str,
        metadata: dict | None = None,
    ) -> ChargeOutcome:
        """Charge the account's default card off-session with a PaymentIntent.

        Raise ProviderUnavailable when Stripe could not answer (the caller keeps its row pending
        and repeats the call with the same key).
        """
        card = default_card(account)
        if card is None:
            return ChargeOutcome("failed", error="No saved card.")
        customer_id = self.ensure_customer(account=account)
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
        except stripe.InvalidRequestError as error:
            # Stripe refused the request itself (an amount below its minimum, a card it no
            # longer has, ...): this attempt failed for that reason. Raising would stop the
            # whole collection run and leave the attempt pending for ever.
            return ChargeOutcome("failed", error=error.user_message or str(error))
        except _UNANSWERED as error:
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

    def refund_payment(
        self, *, payment_intent_id: str, amount_micros: int, idempotency_key: str, metadata: dict
    ) -> RefundOutcome:
        """Refund part or all of a PaymentIntent to its card."""
        if payment_intent_id.startswith("test_"):
            # Paid on the test-mode page before this site had Stripe keys: no money to give back.
            return TestModeGateway().refund_payment(
                payment_intent_id=payment_intent_id,
                amount_micros=amount_micros,
                idempotency_key=idempotency_key,
                metadata=metadata,
            )
        if not payment_intent_id:
            return RefundOutcome("failed", error="The payment is not known.")
        try:
            refund = stripe.Refund.create(
                payment_intent=payment_intent_id,
                amount=micros_to_cents(amount_micros),
                metadata=metadata,
                **_options(idempotency_key),
            )
        except (stripe.InvalidRequestError, stripe.CardError) as error:
            return RefundOutcome("failed", error=error.user_message or str(error))
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        _mirror("Refund", refund)
        if refund.status in ("failed", "canceled"):
            status = "failed"
        elif refund.status == "succeeded":
            status = "succeeded"
        else:
            # pending or requires_action: Stripe finishes it later and says how with a webhook
            # (refund.updated, refund.failed); it may still fail.
            status = "pending"
        return RefundOutcome(status, reference=refund.id, error=refund.get("failure_reason") or "")

    def cancel_payment_intent(self, *, payment_intent_id: str) -> bool:
        """Cancel the intent; Checkout makes a new one. Already final is fine."""
        try:
            stripe.PaymentIntent.cancel(payment_intent_id, **_options())
        except stripe.InvalidRequestError:
            logger.info("Payment intent %s could not be canceled", payment_intent_id)
        return True

    def card_saved_by_setup(self, *, setup_intent_id: str) -> CardDetails | None:
        """Return the card of a setup-mode Checkout Session's SetupIntent."""
        try:
            intent = stripe.SetupIntent.retrieve(
                setup_intent_id, expand=["payment_method"], **_options()
            )
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        payment_method = intent.get("payment_method")
        if not payment_method:
            return None
        if isinstance(payment_method, str):
            payment_method = stripe.PaymentMethod.retrieve(payment_method, **_options())
        _mirror("PaymentMethod", payment_method)
        return _card_details(payment_method)

    def card_state(self, *, payment_method_id: str) -> CardDetails | None:
        """Retrieve the PaymentMethod from Stripe; None if Stripe does not have it."""
        try:
            payment_method = stripe.PaymentMethod.retrieve(payment_method_id, **_options())
        except stripe.InvalidRequestError:
            return None  # deleted, or never ours
        except _UNANSWERED as error:
            raise _unavailable(error) from error
        return _card_details(payment_method)
