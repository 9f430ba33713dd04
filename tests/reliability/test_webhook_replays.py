"""Every Stripe event we handle, duplicated, reordered and replayed through the real signed
endpoint, leaves exactly one effect (SPEC P1-P4, P3).

tests/billing/payments/test_webhooks.py already checks the three events of a paid Checkout top-up
in every order. This module covers the other handled events the same way. For each scenario the
events are delivered in their natural order or reversed; then every delivery is replayed (same
event ids, opposite order) and sent again as new events (new ids, same objects, as Stripe does
when it re-sends). The effects (ledger, top-ups, refunds, cards, emails recorded, calls made to
Stripe) after the first round must be the scenario's one effect, and nothing may change after.
"""

from collections import Counter

import pytest

from accounts.models import Account
from billing.models import (
    AutoTopUpSettings,
    EntryKind,
    LedgerEntry,
    Notification,
    PaymentMethod,
    Refund,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.payments.auto_topup import save_auto_topup_settings
from billing.payments.topups import fulfil_topup, new_topup, start_topup
from tests.billing.payments import stripe_json
from tests.conftest import NOW

USD = 1_000_000
ORDERS = ["in order", "reversed"]


def effects(account: Account, fake) -> dict:
    """Everything a webhook may change, as comparable data."""
    settings = AutoTopUpSettings.objects.filter(account=account).first()
    return {
        "balance": Account.objects.get(pk=account.pk).balance_micros,
        "ledger": sorted(
            LedgerEntry.objects.filter(account=account).values_list("kind", "amount_micros")
        ),
        "topups": sorted(
            TopUp.objects.filter(account=account).values_list(
                "kind", "status", "amount_micros", "refunded_micros"
            )
        ),
        "refunds": sorted(Refund.objects.values_list("amount_micros", "status")),
        "cards": sorted(
            (card.gateway_id, card.removed_at is None, card.is_default)
            for card in PaymentMethod.objects.filter(account=account)
        ),
        "auto_topup": settings and (settings.consecutive_failures, settings.next_attempt_at),
        "emails": Counter(
            Notification.objects.filter(account=account).values_list("kind", flat=True)
        ),
        "stripe_writes": len(fake.posts("/v1/")),
    }


def deliver(post_event, deliveries: list[tuple[str, dict]], order: str) -> list[dict]:
    events = [stripe_json.event(kind, obj) for kind, obj in deliveries]
    if order == "reversed":
        events.reverse()
    for event in events:
        assert post_event(event).status_code == 200, event["type"]
    return events


def replay_and_duplicate(post_event, events: list[dict]) -> None:
    for event in reversed(events):  # the same deliveries again
        assert post_event(event).status_code == 200
    for event in events:  # re-sent by Stripe under new event ids
        again = stripe_json.event(event["type"], event["data"]["object"])
        assert post_event(again).status_code == 200


# Scenarios: (the account, the deliveries in their natural order, the check of the one effect)


def paid_intent(fake, topup: TopUp, *, customer_id: str) -> tuple[dict, dict]:
    """The intent and charge Stripe holds once a top-up is paid."""
    pi_id = stripe_json.stripe_id("pi")
    cents = topup.amount_micros // 10_000
    charge = stripe_json.charge(
        stripe_json.stripe_id("ch"),
        amount_cents=cents,
        customer_id=customer_id,
        payment_intent_id=pi_id,
        metadata={"topup": topup.public_id},
    )
    intent = stripe_json.payment_intent(
        pi_id,
        amount_cents=cents,
        customer_id=customer_id,
        metadata={"topup": topup.public_id},
        charge_id=charge["id"],
    )
    fake.add(charge, intent)
    return intent, charge


def manual_topup(stripe_account) -> TopUp:
    account = stripe_account()
    return start_topup(
        account=account,
        amount_micros=25 * USD,
        now=NOW,
        success_url="https://meterline.example.test/done/{TOPUP}/",
        cancel_url="https://meterline.example.test/cancel/{TOPUP}/",
    ).topup


def auto_topup(stripe_account, card_answer: str) -> TopUp:
    """A pending auto-top-up of 20 USD whose off-session charge Stripe is still deciding."""
    account = stripe_account(card_answer=card_answer, credit_micros=30 * USD)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )
    return new_topup(
        account=account,
        kind=TopUpKind.AUTO,
        amount_micros=20 * USD,
        now=NOW,
        key=f"auto-topup:{account.public_id}:1:1",
    )


def async_checkout_payment(stripe_account, fake):
    """A Checkout payment that completes unpaid and succeeds later (a bank debit)."""
    topup = manual_topup(stripe_account)
    intent, charge = paid_intent(fake, topup, customer_id=topup.account.stripe_customer_id)
    session = stripe_json.checkout_session(
        topup.checkout_session_id,
        customer_id=topup.account.stripe_customer_id,
        amount_cents=2500,
        payment_intent_id=intent["id"],
        metadata={"topup": topup.public_id},
        client_reference_id=topup.public_id,
    )
    fake.add(session)
    deliveries = [
        ("checkout.session.completed", {**session, "payment_status": "unpaid"}),
        ("checkout.session.async_payment_succeeded", session),
        ("payment_intent.succeeded", intent),
        ("charge.succeeded", charge),
    ]

    def check(found, order):
        assert found["ledger"] == [(EntryKind.TOPUP, 25 * USD)]
        assert found["topups"] == [(TopUpKind.MANUAL, TopUpStatus.SUCCEEDED, 25 * USD, 0)]
        assert found["emails"] == {"topup_receipt": 1}

    return topup.account, deliveries, check


def expired_checkout(stripe_account, fake):
    topup = manual_topup(stripe_account)
    session = stripe_json.checkout_session(
        topup.checkout_session_id,
        customer_id=topup.account.stripe_customer_id,
        amount_cents=2500,
        metadata={"topup": topup.public_id},
        client_reference_id=topup.public_id,
        payment_status="unpaid",
        status="expired",
    )
    fake.add(session)

    def check(found, order):
        assert found["topups"] == [(TopUpKind.MANUAL, TopUpStatus.CANCELED, 25 * USD, 0)]
        assert found["ledger"] == []

    return topup.account, [("checkout.session.expired", session)], check


def declined_auto_topup(stripe_account, fake):
    topup = auto_topup(stripe_account, "decline")
    intent = stripe_json.payment_intent(
        stripe_json.stripe_id("pi"),
        amount_cents=2000,
        customer_id=topup.account.stripe_customer_id,
        status="requires_payment_method",
        metadata={"topup": topup.public_id},
    )
    intent["last_payment_error"] = {"message": "Your card was declined."}
    fake.add(intent)

    def check(found, order):
        assert found["topups"] == [(TopUpKind.AUTO, TopUpStatus.FAILED, 20 * USD, 0)]
        assert found["auto_topup"][0] == 1  # one failure, one back-off
        assert found["emails"] == {"auto_topup_failed": 1}
        assert found["ledger"] == [(EntryKind.PROMOTIONAL, 30 * USD)]  # the opening credit only

    return topup.account, [("payment_intent.payment_failed", intent)], check


def authenticated_auto_topup(stripe_account, fake):
    """The card needs the customer, who then pays: requires_action, then succeeded."""
    topup = auto_topup(stripe_account, "authenticate")
    intent, charge = paid_intent(fake, topup, customer_id=topup.account.stripe_customer_id)
    deliveries = [
        ("payment_intent.requires_action", {**intent, "status": "requires_action"}),
        ("payment_intent.succeeded", intent),
        ("charge.succeeded", charge),
    ]

    def check(found, order):
        assert sorted(found["ledger"]) == sorted(
            [(EntryKind.PROMOTIONAL, 30 * USD), (EntryKind.AUTO_TOPUP, 20 * USD)]
        )
        assert found["topups"] == [(TopUpKind.AUTO, TopUpStatus.SUCCEEDED, 20 * USD, 0)]
        # Reversed, the payment is known first and the late requires_action asks for nothing.
        expected = {"auto_topup_succeeded": 1}
        if order == "in order":
            expected["auto_topup_action_required"] = 1
        assert found["emails"] == expected

    return topup.account, deliveries, check


def refunded_in_stripe(stripe_account, fake):
    """Staff refund 10 USD, then 5 more, from Stripe's dashboard: charge.refunded twice."""
    topup = manual_topup(stripe_account)
    intent, charge = paid_intent(fake, topup, customer_id=topup.account.stripe_customer_id)
    fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id=intent["id"])
    first = {**charge, "amount_refunded": 1000, "refunded": False}
    second = {**charge, "amount_refunded": 1500, "refunded": False}
    fake.add(second)

    def check(found, order):
        assert found["topups"] == [(TopUpKind.MANUAL, TopUpStatus.SUCCEEDED, 25 * USD, 15 * USD)]
        assert sum(amount for kind, amount in found["ledger"] if kind == "topup_refund") == (
            -15 * USD
        )
        assert found["balance"] == 10 * USD

    return topup.account, [("charge.refunded", first), ("charge.refunded", second)], check


def card_attached(stripe_account, fake):
    account = stripe_account()
    card = stripe_json.payment_method(
        stripe_json.stripe_id("pm"), customer_id=account.stripe_customer_id, last4="1881"
    )
    fake.add(card)
    PaymentMethod.objects.filter(account=account).delete()  # this is the account's first card

    def check(found, order):
        assert found["cards"] == [(card["id"], True, True)]
        assert found["stripe_writes"] == 1  # made the default in Stripe once

    return account, [("payment_method.attached", card)], check


def card_attached_then_detached(stripe_account, fake):
    account = stripe_account()
    card = stripe_json.payment_method(
        stripe_json.stripe_id("pm"), customer_id=account.stripe_customer_id, last4="1881"
    )
    detached = {**card, "customer": None}
    fake.add(detached)  # what Stripe holds now

    def check(found, order):
        assert [c for c in found["cards"] if c[0] == card["id"] and c[1]] == []

    return (
        account,
        [("payment_method.attached", card), ("payment_method.detached", detached)],
        check,
    )


def card_saved_on_setup_checkout(stripe_account, fake):
    account = stripe_account()
    PaymentMethod.objects.filter(account=account).delete()
    card = stripe_json.payment_method(
        stripe_json.stripe_id("pm"), customer_id=account.stripe_customer_id
    )
    intent = stripe_json.setup_intent(
        stripe_json.stripe_id("seti"),
        customer_id=account.stripe_customer_id,
        payment_method_id=card["id"],
    )
    session = stripe_json.checkout_session(
        stripe_json.stripe_id("cs_test"),
        customer_id=account.stripe_customer_id,
        amount_cents=None,
        mode="setup",
        payment_status="no_payment_required",
        setup_intent_id=intent["id"],
    )
    fake.add(card, intent, session)

    def check(found, order):
        assert found["cards"] == [(card["id"], True, True)]
        assert found["stripe_writes"] == 1

    return account, [("checkout.session.completed", session)], check


SCENARIOS = [
    async_checkout_payment,
    expired_checkout,
    declined_auto_topup,
    authenticated_auto_topup,
    refunded_in_stripe,
    card_attached,
    card_attached_then_detached,
    card_saved_on_setup_checkout,
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_duplicated_reordered_and_replayed_events_leave_one_effect(
    scenario, order, stripe_account, fake_stripe, post_event
):
    account, deliveries, check = scenario(stripe_account, fake_stripe)

    events = deliver(post_event, deliveries, order)
    first = effects(account, fake_stripe)
    check(first, order)

    replay_and_duplicate(post_event, events)

    assert effects(account, fake_stripe) == first
