"""One payment gateway, chosen in one place: Stripe with keys, the test-mode gateway without
(SPEC P1-P6). Services and pages ask the gateway; none of them asks which one it is."""

import inspect

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from billing.models import (
    PaymentMethod,
    RefundStatus,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.payments.cards import CardError, add_test_card, remove_card, set_default_card
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import PaymentGateway
from billing.payments.gateway.stripe import StripeGateway
from billing.payments.gateway.test_mode import TestModeGateway
from billing.payments.refunds import refund_topup
from billing.payments.topups import fulfil_topup, new_topup, resume_topup
from tests.billing.payments import stripe_json
from tests.conftest import NOW

USD = 1_000_000
URLS = {"success_url": "https://x.test/ok/{TOPUP}/", "cancel_url": "https://x.test/no/{TOPUP}/"}
OPERATIONS = [
    name
    for name, member in inspect.getmembers(PaymentGateway, inspect.isfunction)
    if not name.startswith("_")
]


# Choosing the gateway ------------------------------------------------------------------------


def test_without_stripe_keys_the_gateway_is_the_simulated_one():
    gateway = get_gateway()

    assert isinstance(gateway, TestModeGateway)
    assert gateway.simulated is True


def test_with_stripe_keys_the_gateway_takes_real_payments(stripe_keys):
    gateway = get_gateway()

    assert isinstance(gateway, StripeGateway)
    assert gateway.simulated is False


@pytest.mark.parametrize("value", ["", None])
def test_a_missing_gateway_setting_is_an_error_not_test_mode(settings, value):
    if value is None:
        del settings.PAYMENT_GATEWAY
    else:
        settings.PAYMENT_GATEWAY = value

    with pytest.raises(ImproperlyConfigured, match="PAYMENT_GATEWAY"):
        get_gateway()


def test_the_protocol_names_every_operation_services_use():
    assert sorted(OPERATIONS) == [
        "cancel_payment_intent",
        "card_saved_by_setup",
        "card_state",
        "charge_saved_card",
        "detach_card",
        "make_default_card",
        "refund_payment",
        "start_card_setup",
        "start_topup_checkout",
    ]


@pytest.mark.parametrize("implementation", [StripeGateway, TestModeGateway])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_both_gateways_implement_each_operation_with_its_keyword_arguments(
    implementation, operation
):
    expected = inspect.signature(getattr(PaymentGateway, operation))
    actual = inspect.signature(getattr(implementation, operation))

    assert list(actual.parameters.values()) == list(expected.parameters.values())
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(actual.parameters.values())[1:]
    )
    assert isinstance(implementation.simulated, bool)


# The test-mode gateway -----------------------------------------------------------------------


def test_test_mode_refunds_succeed_and_repeat_their_answer_per_key():
    gateway = TestModeGateway()
    ask = {
        "payment_intent_id": "test_pi_1",
        "amount_micros": 5 * USD,
        "idempotency_key": "refund:top_x:r1",
        "metadata": {},
    }

    first, again = gateway.refund_payment(**ask), gateway.refund_payment(**ask)

    assert first == again
    assert (first.status, first.reference) == ("succeeded", "test_re_refund:top_x:r1")


def test_test_mode_checkout_is_the_test_payment_page(make_account):
    account = make_account()

    link = TestModeGateway().start_topup_checkout(
        account=account,
        amount_micros=20 * USD,
        topup_public_id="top_abc",
        idempotency_key="k",
        **URLS,
    )

    assert link.session_id == ""
    assert link.url == reverse("payments:test_checkout", args=[account.public_id, "top_abc"])


def awaiting_authentication(account, *, payment_intent_id):
    return new_topup(
        account=account,
        kind=TopUpKind.AUTO,
        amount_micros=20 * USD,
        now=NOW,
        key=f"auto-topup:{account.public_id}:1:1",
        status=TopUpStatus.REQUIRES_ACTION,
        payment_intent_id=payment_intent_id,
    )


def test_resuming_in_test_mode_sends_the_customer_to_the_test_payment_page(make_account):
    account = make_account()
    topup = awaiting_authentication(account, payment_intent_id="test_pi_auto")

    url = resume_topup(account=account, topup_public_id=topup.public_id, **URLS)

    assert url == reverse("payments:test_checkout", args=[account.public_id, topup.public_id])
    topup.refresh_from_db()
    assert (topup.payment_intent_id, topup.checkout_session_id) == ("test_pi_auto", None)


# The Stripe gateway --------------------------------------------------------------------------


def test_resuming_with_stripe_cancels_the_off_session_intent_and_opens_checkout(
    stripe_account, stripe_keys, fake_stripe
):
    account = stripe_account()
    intent = stripe_json.payment_intent(
        "pi_NeedsAuthentication01",
        amount_cents=2000,
        customer_id=account.stripe_customer_id,
        status="requires_action",
    )
    fake_stripe.add(intent)
    topup = awaiting_authentication(account, payment_intent_id=intent["id"])

    url = resume_topup(account=account, topup_public_id=topup.public_id, **URLS)

    assert url.startswith("https://checkout.stripe.com/")
    assert fake_stripe.objects[intent["id"]]["status"] == "canceled"
    (_, _, params, key) = next(r for r in fake_stripe.requests if r[1] == "/v1/checkout/sessions")
    assert key == f"{topup.key}:checkout"
    assert params["line_items[0][price_data][unit_amount]"] == "2000"
    topup.refresh_from_db()
    assert topup.payment_intent_id is None
    assert topup.checkout_session_id.startswith("cs_test_")


def test_a_test_card_saved_before_the_keys_never_reaches_stripe(
    make_account, stripe_keys, fake_stripe
):
    account = make_account()
    first, second = (
        PaymentMethod.objects.create(
            account=account,
            gateway_id=f"test_pm_{n}",
            brand="visa",
            last4="4242",
            test_behaviour="succeed",
            is_default=n == 1,
            created_at=NOW,
        )
        for n in (1, 2)
    )

    set_default_card(account=account, card_id=second.pk, now=NOW)
    remove_card(account=account, card_id=first.pk, now=NOW)

    assert fake_stripe.requests == []
    second.refresh_from_db()
    assert second.is_default


def test_a_stripe_card_is_made_default_and_detached_at_stripe(
    stripe_account, stripe_keys, fake_stripe
):
    account = stripe_account()
    card = account.payment_methods.get()

    set_default_card(account=account, card_id=card.pk, now=NOW)
    remove_card(account=account, card_id=card.pk, now=NOW)

    (modify,) = fake_stripe.posts(f"/v1/customers/{account.stripe_customer_id}")
    assert modify["invoice_settings[default_payment_method]"] == card.gateway_id
    assert len(fake_stripe.posts(f"/v1/payment_methods/{card.gateway_id}/detach")) == 1
    assert fake_stripe.objects[card.gateway_id]["customer"] is None


def test_test_cards_cannot_be_added_with_stripe_keys(make_account, stripe_keys):
    with pytest.raises(CardError, match="only available in test mode"):
        add_test_card(account=make_account(), behaviour="succeed", now=NOW)


def paid_topup(account, *, payment_intent_id):
    topup = new_topup(account=account, kind=TopUpKind.MANUAL, amount_micros=25 * USD, now=NOW)
    return fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id=payment_intent_id)


def test_with_stripe_a_topup_paid_in_test_mode_is_refunded_without_stripe(
    stripe_account, stripe_keys, fake_stripe
):
    topup = paid_topup(stripe_account(), payment_intent_id="test_pi_paid_before_the_keys")

    refund = refund_topup(topup=topup, amount_micros=5 * USD, reason="x", request_key="r", now=NOW)

    assert (refund.status, refund.stripe_refund_id) == (
        RefundStatus.SUCCEEDED,
        f"test_re_{refund.key}",
    )
    assert fake_stripe.posts("/v1/refunds") == []


def test_with_stripe_a_topup_without_a_payment_reference_is_not_refunded(
    stripe_account, stripe_keys, fake_stripe
):
    topup = paid_topup(stripe_account(), payment_intent_id="")
    assert TopUp.objects.get(pk=topup.pk).payment_intent_id is None

    refund = refund_topup(topup=topup, amount_micros=5 * USD, reason="x", request_key="r", now=NOW)

    assert (refund.status, refund.error) == (RefundStatus.FAILED, "The payment is not known.")
    assert fake_stripe.posts("/v1/refunds") == []


# Pages ---------------------------------------------------------------------------------------


@pytest.fixture
def owner_client(client, make_user, make_account):
    user = make_user()
    account = make_account(owner=user)
    client.force_login(user)
    return client, account


def test_with_stripe_keys_the_test_mode_pages_are_not_there(owner_client, stripe_keys):
    client, account = owner_client
    topup = new_topup(account=account, kind=TopUpKind.MANUAL, amount_micros=20 * USD, now=NOW)

    checkout = client.get(
        reverse("payments:test_checkout", args=[account.public_id, topup.public_id])
    )
    test_card = client.get(reverse("payments:test_card", args=[account.public_id]))
    home = client.get(reverse("billing_dashboard:home", args=[account.public_id])).content.decode()

    assert (checkout.status_code, test_card.status_code) == (404, 404)
    assert "TEST MODE" not in home
    assert "Test mode: no real money moves" not in home


def test_in_test_mode_the_layout_says_no_real_money_moves(owner_client):
    client, account = owner_client

    page = client.get(reverse("billing_dashboard:home", args=[account.public_id])).content.decode()

    assert "Test mode: no real money moves" in page
