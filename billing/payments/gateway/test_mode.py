"""The test-mode payment gateway: no money moves, Stripe's behaviour is imitated (SPEC P6)."""

from django.conf import settings

from accounts.models import Account
from billing.models import TestCardBehaviour
from billing.money import micros_to_cents
from billing.payments.gateway.protocol import ChargeOutcome, default_card


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
