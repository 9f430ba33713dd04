"""The test-mode payment gateway: no money moves, Stripe's behaviour is imitated (SPEC P6).

Chosen when the site has no Stripe keys (see config/settings.py). Its checkout pages are
Meterline's own test-mode payment pages, which pay or decline a top-up through the same
`fulfil_topup` as Stripe's webhooks; its cards are the test cards of `PaymentMethod.test_behaviour`
(succeed, decline, need authentication), which live only in Meterline's table.

Like Stripe it answers a repeated idempotency key with its first answer: charges are remembered
per key for the life of the process, and the other answers are made from the key alone.
"""

from django.conf import settings
from django.urls import reverse

from accounts.models import Account
from billing.models import PaymentMethod, TestCardBehaviour
from billing.money import MINIMUM_CARD_CHARGE_MICROS, format_usd, micros_to_cents
from billing.payments.gateway.protocol import (
    CardDetails,
    ChargeOutcome,
    CheckoutLink,
    RefundOutcome,
    default_card,
)


class TestModeGateway:
    """The PaymentGateway of billing.payments.gateway.protocol when payments are simulated."""

    simulated = True
    _results: dict[str, ChargeOutcome] = {}

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
        """Return the test-mode payment page of the top-up, standing in for Stripe Checkout."""
        url = reverse("payments:test_checkout", args=[account.public_id, topup_public_id])
        return CheckoutLink(session_id="", url=url)

    def start_card_setup(
        self, *, account: Account, idempotency_key: str, success_url: str, cancel_url: str
    ) -> CheckoutLink:
        """Return the test-mode page that saves a test card."""
        return CheckoutLink(
            session_id="", url=reverse("payments:test_card", args=[account.public_id])
        )

    def make_default_card(self, *, account: Account, card: PaymentMethod) -> None:
        """Do nothing: the default card is only what Meterline's table says."""

    def detach_card(self, *, card: PaymentMethod) -> None:
        """Do nothing: a test card has no customer but the account it is saved on."""

    def charge_saved_card(
        self,
        *,
        account: Account,
        amount_micros: int,
        idempotency_key: str,
        description: str,
        metadata: dict | None = None,
    ) -> ChargeOutcome:
        """Charge the default test card as its behaviour says; once per idempotency key."""
        if idempotency_key in self._results:
            return self._results[idempotency_key]
        cents = micros_to_cents(amount_micros)
        card = default_card(account)
        if amount_micros < MINIMUM_CARD_CHARGE_MICROS:
            # Stripe refuses such a charge outright (amount_too_small), whatever the card.
            outcome = ChargeOutcome(
                "failed",
                error=f"Amount must be at least {format_usd(MINIMUM_CARD_CHARGE_MICROS)} usd.",
            )
        elif card is None:
            outcome = ChargeOutcome("failed", error="No saved card.")
        elif card.test_behaviour == TestCardBehaviour.DECLINE:
            outcome = ChargeOutcome("failed", error="Your card was declined.")
        elif card.test_behaviour == TestCardBehaviour.REQUIRE_ACTION:
            outcome = ChargeOutcome(
                "requires_action",
                reference=f"test_pi_{idempotency_key}",
                error="The card needs authentication.",
                action_url=f"{settings.SITE_URL}/app/a/{account.public_id}/billing/",
            )
        else:
            outcome = ChargeOutcome("succeeded", reference=f"test_pi_{idempotency_key}_{cents}")
        self._results[idempotency_key] = outcome
        return outcome

    def refund_payment(
        self, *, payment_intent_id: str, amount_micros: int, idempotency_key: str, metadata: dict
    ) -> RefundOutcome:
        """Succeed, with a reference made from the key: a repeat gets the same answer."""
        return RefundOutcome("succeeded", reference=f"test_re_{idempotency_key}")

    def cancel_payment_intent(self, *, payment_intent_id: str) -> bool:
        """Keep the intent: the test-mode payment page pays the top-up it already belongs to."""
        return False

    def card_saved_by_setup(self, *, setup_intent_id: str) -> CardDetails | None:
        """Return None: test cards are saved by the test-card page, never by a setup session."""
        return None

    def card_state(self, *, payment_method_id: str) -> CardDetails | None:
        """Return None: no provider holds cards for a site without Stripe keys."""
        return None
