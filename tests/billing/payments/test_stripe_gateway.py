"""The Stripe gateway against hand-written Stripe JSON (SPEC P2, P5)."""

import pytest

from billing.models import Invoice, InvoiceKind, InvoiceReason, InvoiceStatus, PaymentStatus
from billing.money import MoneyError
from billing.payments.collection import collect_invoice
from billing.payments.gateway import get_gateway
from billing.payments.gateway.stripe import StripeGateway
from tests.conftest import NOW

USD = 1_000_000


def test_settings_with_keys_choose_the_stripe_gateway(stripe_keys):
    assert isinstance(get_gateway(), StripeGateway)


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [
        ("succeed", "succeeded", ""),
        ("decline", "failed", "Your card was declined."),
        ("authenticate", "requires_action", "The card needs authentication."),
    ],
)
def test_off_session_charge_outcomes(answer, status, error, stripe_account, stripe_keys):
    account = stripe_account(card_answer=answer)

    outcome = StripeGateway().charge_saved_card(
        account=account, amount_micros=12_340_000, idempotency_key="k-1", description="Test"
    )

    assert (outcome.status, outcome.error) == (status, error)
    assert outcome.reference.startswith("pi_")


def test_amounts_that_are_not_whole_cents_never_reach_stripe(
    stripe_account, stripe_keys, fake_stripe
):
    account = stripe_account()

    with pytest.raises(MoneyError):
        StripeGateway().charge_saved_card(
            account=account, amount_micros=12_345_678, idempotency_key="k-2", description="Test"
        )
    assert not fake_stripe.posts("/v1/payment_intents")


def test_a_repeated_key_gets_the_first_answer(stripe_account, stripe_keys, fake_stripe):
    account = stripe_account()

    first = StripeGateway().charge_saved_card(
        account=account, amount_micros=5 * USD, idempotency_key="same", description="Test"
    )
    second = StripeGateway().charge_saved_card(
        account=account, amount_micros=5 * USD, idempotency_key="same", description="Test"
    )

    assert first.reference == second.reference
    assert len([o for o in fake_stripe.objects if o.startswith("pi_")]) == 1


def test_no_card_fails_without_calling_stripe(make_account, stripe_keys, fake_stripe):
    outcome = StripeGateway().charge_saved_card(
        account=make_account(), amount_micros=5 * USD, idempotency_key="k", description="Test"
    )

    assert (outcome.status, outcome.error) == ("failed", "No saved card.")
    assert not fake_stripe.requests


def test_customer_is_created_once_with_its_subscriber(make_account, stripe_keys, fake_stripe):
    account = make_account()

    first = StripeGateway().ensure_customer(account=account)
    second = StripeGateway().ensure_customer(account=account)

    assert first == second
    (params,) = fake_stripe.posts("/v1/customers")
    assert params["metadata[djstripe_subscriber]"] == str(account.pk)
    from djstripe.models import Customer

    assert Customer.objects.get(id=first).subscriber_id == account.pk


def test_postpaid_invoice_is_charged_with_the_invoice_payment_key(
    stripe_account, stripe_keys, fake_stripe
):
    account = stripe_account("voice-payg")
    invoice = Invoice.objects.create(
        account=account,
        number="2026-000001",
        kind=InvoiceKind.INVOICE,
        reason=InvoiceReason.THRESHOLD,
        status=InvoiceStatus.OPEN,
        period_start=NOW,
        period_end=NOW,
        idempotency_key="threshold:test",
        subtotal_micros=200 * USD,
        total_micros=200 * USD,
        amount_due_micros=200 * USD,
        created_at=NOW,
        next_payment_attempt_at=NOW,
    )

    payment = collect_invoice(invoice_id=invoice.pk, now=NOW)

    assert payment.status == PaymentStatus.SUCCEEDED
    (_, _, params, key) = next(r for r in fake_stripe.requests if r[1] == "/v1/payment_intents")
    assert key == payment.idempotency_key == f"invoice:{invoice.pk}:attempt:1"
    assert params["amount"] == "20000"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
