"""The interface between billing and whoever moves money (SPEC P5, P6).

Billing asks a `PaymentGateway` to charge a saved card off-session. With Stripe keys the Stripe
gateway (billing.stripe_gateway.StripeGateway) answers; without them the test-mode gateway below
stands in and behaves like Stripe: the same idempotency (one result per key, however often it is
asked), declines, and cards that need the customer to authenticate.
"""

from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from accounts.models import Account
from billing.models import PaymentMethod, TestCardBehaviour
from billing.money import micros_to_cents


@dataclass(frozen=True)
class ChargeOutcome:
    status: str  # succeeded, failed, requires_action (Stripe: rarely pending, still processing)
    reference: str = ""
    error: str = ""
    action_url: str = ""


class PaymentGateway(Protocol):
    def charge_saved_card(
        self,
        *,
        account: Account,
        amount_micros: int,
        idempotency_key: str,
        description: str,
        metadata: dict | None = None,
    ) -> ChargeOutcome: ...


def default_card(account: Account) -> PaymentMethod | None:
    return (
        PaymentMethod.objects.filter(account=account, removed_at__isnull=True)
        .order_by("-is_default", "-created_at")
        .first()
    )


class TestModeGateway:
    """Charges test-mode cards; no money moves. Answers once per idempotency key, like Stripe."""

    _results: dict[str, ChargeOutcome] = {}

    def charge_saved_card(
        self,
        *,
        account: Account,
        amount_micros: int,
        idempotency_key: str,
        description: str,
        metadata: dict | None = None,
    ) -> ChargeOutcome:
        if idempotency_key in self._results:
            return self._results[idempotency_key]
        cents = micros_to_cents(amount_micros)
        card = default_card(account)
        if card is None:
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


def get_gateway() -> PaymentGateway:
    path = getattr(settings, "PAYMENT_GATEWAY", "") or "billing.payment_gateway.TestModeGateway"
    return import_string(path)()
