"""The interface between billing and whoever moves money (SPEC P1-P6).

A `PaymentGateway` is every operation Meterline asks of a payment provider: open a checkout page
for a top-up or for saving a card, make a card the default, detach it, charge it off-session,
refund a payment, cancel a payment intent and read a card's state. Services get one from
`billing.payments.gateway.get_gateway()` and never ask which one it is.

Two implementations: `billing.payments.gateway.stripe.StripeGateway` (real money, with Stripe
keys) and `billing.payments.gateway.test_mode.TestModeGateway` (simulated, SPEC P6), which
behaves like Stripe: one answer per idempotency key however often it is asked, declines, and
cards that need the customer to authenticate.

Results are plain values. A gateway raises `ProviderUnavailable` when the provider could not
answer; the caller keeps its row pending and may repeat the call with the same key.
"""

from dataclasses import dataclass
from typing import Protocol

from accounts.models import Account
from billing.models import PaymentMethod


class ProviderUnavailable(Exception):
    """The provider could not be reached or failed on its side; the same call may be repeated."""


@dataclass(frozen=True)
class ChargeOutcome:
    status: str  # succeeded, failed, requires_action (Stripe: rarely pending, still processing)
    reference: str = ""
    error: str = ""
    action_url: str = ""


@dataclass(frozen=True)
class CheckoutLink:
    session_id: str  # empty when the page is not a provider's session (test mode)
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


class PaymentGateway(Protocol):
    # True when no money moves (SPEC P6): pages show the test-mode banner, and the test-mode
    # payment pages answer only then.
    simulated: bool

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
        """Return the page where the customer pays the top-up `topup_public_id`."""
        ...

    def start_card_setup(
        self, *, account: Account, idempotency_key: str, success_url: str, cancel_url: str
    ) -> CheckoutLink:
        """Return the page where the customer saves a card."""
        ...

    def make_default_card(self, *, account: Account, card: PaymentMethod) -> None:
        """Make `card` the one the provider charges for the account by default."""
        ...

    def detach_card(self, *, card: PaymentMethod) -> None:
        """Take `card` away from its customer; a card already gone is fine."""
        ...

    def charge_saved_card(
        self,
        *,
        account: Account,
        amount_micros: int,
        idempotency_key: str,
        description: str,
        metadata: dict | None = None,
    ) -> ChargeOutcome:
        """Charge the account's default card without the customer present."""
        ...

    def refund_payment(
        self, *, payment_intent_id: str, amount_micros: int, idempotency_key: str, metadata: dict
    ) -> RefundOutcome:
        """Give `amount_micros` of a payment back to the card."""
        ...

    def cancel_payment_intent(self, *, payment_intent_id: str) -> bool:
        """Drop an off-session payment the customer will now make on a checkout page.

        Return True when that page makes a new payment, so the top-up must forget the old
        reference; False when it pays the same one.
        """
        ...

    def card_saved_by_setup(self, *, setup_intent_id: str) -> CardDetails | None:
        """Return the card a completed card-setup checkout saved, if any."""
        ...

    def card_state(self, *, payment_method_id: str) -> CardDetails | None:
        """Return the card as the provider holds it now, or None if it no longer has it.

        A detached card comes back with no customer.
        """
        ...


def default_card(account: Account) -> PaymentMethod | None:
    return (
        PaymentMethod.objects.filter(account=account, removed_at__isnull=True)
        .order_by("-is_default", "-created_at")
        .first()
    )
