"""The interface between billing and whoever moves money (SPEC P5, P6).

Billing asks a `PaymentGateway` to charge a saved card off-session. With Stripe keys the Stripe
gateway (billing.payments.gateway.stripe.StripeGateway) answers; without them the test-mode gateway
below stands in and behaves like Stripe: the same idempotency (one result per key, however often it
is asked), declines, and cards that need the customer to authenticate.
"""

from dataclasses import dataclass
from typing import Protocol

from accounts.models import Account
from billing.models import PaymentMethod


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
