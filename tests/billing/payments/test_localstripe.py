"""End to end against localstripe on 127.0.0.1: off-session charges, declines, 3-D Secure,
refunds, and the concurrency of auto-top-up and refunds in several OS processes (P2, P4)."""

import contextlib
import multiprocessing
from types import SimpleNamespace

import pytest
import stripe
import time_machine
from django.conf import settings
from django.db import connections
from django.test import TestCase

from accounts.models import Account
from billing.models import (
    EntryKind,
    LedgerEntry,
    Refund,
    RefundStatus,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.payments import webhooks
from billing.payments.auto_topup import save_auto_topup_settings
from billing.payments.gateway.stripe import StripeGateway
from billing.payments.refunds import STALE_ATTEMPT, RefundError, refund_topup, retry_pending_refunds
from tests.billing.postings import post_entry
from tests.conftest import NOW

USD = 1_000_000


def save_card(account, payment_method_id="pm_card_visa"):
    """Save a card as production learns of one: Stripe attaches it to the customer (Checkout in
    setup mode does; here the test attaches it) and the `payment_method.attached` receiver
    records the card Stripe holds."""
    customer_id = StripeGateway().ensure_customer(account=account)
    card = stripe.PaymentMethod.attach(
        payment_method_id, customer=customer_id, api_key=settings.STRIPE_SECRET_KEY
    )
    webhooks.payment_method_changed(sender=None, event=SimpleNamespace(data={"object": card}))
    return account.payment_methods.get(gateway_id=card.id, removed_at__isnull=True)


def three_d_secure_card() -> str:
    card = stripe.PaymentMethod.create(
        type="card",
        card={"number": "4000002500003155", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        api_key=settings.STRIPE_SECRET_KEY,
    )
    return card.id


def spend(account, micros):
    with time_machine.travel(NOW, tick=False), TestCase.captureOnCommitCallbacks(execute=True):
        post_entry(account=account, amount_micros=-micros, kind=EntryKind.USAGE, now=NOW)


def with_auto_topup(account):
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=30 * USD, amount_micros=20 * USD, now=NOW
    )


def intents_of(account):
    intents = stripe.PaymentIntent.list(limit=100, api_key=settings.STRIPE_SECRET_KEY)
    return [pi for pi in intents.data if pi.customer == account.stripe_customer_id]


def test_saved_visa_card_is_charged_off_session_for_an_auto_topup(localstripe, make_account):
    account = make_account(credit_micros=40 * USD)
    card = save_card(account)
    with_auto_topup(account)

    spend(account, 15 * USD)  # 40 -> 25, below 30

    (topup,) = TopUp.objects.filter(account=account, kind=TopUpKind.AUTO)
    assert topup.status == TopUpStatus.SUCCEEDED
    (intent,) = intents_of(account)
    assert (intent.id, intent.status, intent.amount) == (topup.payment_intent_id, "succeeded", 2000)
    assert intent.payment_method == card.gateway_id
    assert intent.metadata["topup"] == topup.public_id
    account.refresh_from_db()
    assert account.balance_micros == 45 * USD


def test_declining_card_fails_and_credits_nothing(localstripe, make_account):
    account = make_account(credit_micros=40 * USD)
    save_card(account, "pm_card_chargeCustomerFail")
    with_auto_topup(account)

    spend(account, 15 * USD)

    (topup,) = TopUp.objects.filter(account=account, kind=TopUpKind.AUTO)
    assert topup.status == TopUpStatus.FAILED
    assert "declined" in topup.error.lower()
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.AUTO_TOPUP).exists()


def test_card_needing_authentication_waits_for_the_customer(localstripe, make_account):
    account = make_account(credit_micros=40 * USD)
    save_card(account, three_d_secure_card())
    with_auto_topup(account)

    spend(account, 15 * USD)
    spend(account, 1 * USD)

    (topup,) = TopUp.objects.filter(account=account, kind=TopUpKind.AUTO)
    assert topup.status == TopUpStatus.REQUIRES_ACTION
    (intent,) = intents_of(account)
    assert intent.status == "requires_action"
    assert account.notifications.filter(kind="auto_topup_action_required").count() == 1


def test_partial_refund_of_a_paid_topup_reaches_stripe(localstripe, make_account, make_user):
    account = make_account(credit_micros=40 * USD)
    save_card(account)
    with_auto_topup(account)
    spend(account, 15 * USD)
    topup = TopUp.objects.get(account=account, kind=TopUpKind.AUTO)

    refund = refund_topup(
        topup=topup, amount_micros=7_500_000, reason="Customer asked", request_key="r1", now=NOW
    )

    assert refund.status == RefundStatus.SUCCEEDED
    (stripe_refund,) = stripe.Refund.list(
        payment_intent=topup.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY
    ).data
    assert (stripe_refund.id, stripe_refund.amount) == (refund.stripe_refund_id, 750)


# Concurrency: several OS processes on the test database (PostgreSQL or SQLite) --------------


def _run_in_processes(target, args_list):
    """Fork one process per args, start them together, and return their exit codes."""
    connections.close_all()
    database = connections["default"]
    if database.vendor == "sqlite":
        # Writers that keep losing SQLite's single write lock to each other on a busy machine
        # can wait past the embedded default's 20 s; the children inherit a longer timeout.
        database.settings_dict["OPTIONS"]["timeout"] = 120
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(args_list))
    processes = [context.Process(target=target, args=(barrier, *args)) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
    return [process.exitcode for process in processes]


def _deduct(barrier, account_id):
    try:
        barrier.wait(timeout=60)
        account = Account.objects.get(pk=account_id)
        spend(account, 1 * USD)
    finally:
        connections.close_all()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_deductions_crossing_the_threshold_make_one_charge(
    localstripe, make_account
):
    account = make_account(credit_micros=60 * USD)
    save_card(account)
    with_auto_topup(account)

    codes = _run_in_processes(_deduct, [(account.pk,)] * 50)

    assert codes == [0] * 50
    # The sequential model: 60 - 50 x 1 + one auto-top-up of 20 = 30, never below 30 after it.
    account.refresh_from_db()
    assert account.balance_micros == 30 * USD
    (topup,) = TopUp.objects.filter(account=account, kind=TopUpKind.AUTO)
    assert topup.status == TopUpStatus.SUCCEEDED
    assert len(intents_of(account)) == 1
    assert LedgerEntry.objects.filter(account=account, kind=EntryKind.USAGE).count() == 50


def _refund(barrier, topup_id, key):
    try:
        barrier.wait(timeout=60)
        topup = TopUp.objects.get(pk=topup_id)
        with contextlib.suppress(RefundError):  # refused: more than is refundable
            refund_topup(
                topup=topup, amount_micros=6 * USD, reason="Concurrent", request_key=key, now=NOW
            )
    finally:
        connections.close_all()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_exceed_the_refundable_amount(localstripe, make_account):
    account = make_account(credit_micros=40 * USD)
    save_card(account)
    with_auto_topup(account)
    spend(account, 15 * USD)  # auto-top-up of 20 USD, paid through localstripe
    topup = TopUp.objects.get(account=account, kind=TopUpKind.AUTO)

    # Two double clicks of one request and four other requests, 6 USD each, of 20 USD.
    keys = ["double", "double", "a", "b", "c", "d"]
    codes = _run_in_processes(_refund, [(topup.pk, key) for key in keys])
    # On a loaded machine the fake provider may not answer one of them in time: that refund
    # stays pending, as designed, until the retry job asks again with the same key.
    retry_pending_refunds(now=NOW + STALE_ATTEMPT)

    assert codes == [0] * 6
    # Five distinct requests of 6 USD fit three times into 20 USD.
    topup.refresh_from_db()
    assert topup.refunded_micros == 18 * USD
    refunds = Refund.objects.filter(topup=topup)
    assert [r.status for r in refunds] == [RefundStatus.SUCCEEDED] * 3
    stripe_refunds = stripe.Refund.list(
        payment_intent=topup.payment_intent_id, api_key=settings.STRIPE_SECRET_KEY
    ).data
    assert sorted(r.id for r in stripe_refunds) == sorted(r.stripe_refund_id for r in refunds)
    assert sum(r.amount for r in stripe_refunds) == 1800
    refunded = LedgerEntry.objects.filter(account=account, kind=EntryKind.TOPUP_REFUND)
    assert sum(e.amount_micros for e in refunded) == -18 * USD
    topup.grant.refresh_from_db()
    assert topup.grant.remaining_micros == 2 * USD


def test_the_local_fake_answers_a_repeated_idempotency_key_with_the_first_object(localstripe):
    # The concurrency tests above rely on it: stripe-python retries a slow request with the same
    # key, and Stripe answers it with the object it already made.
    first, again = (
        stripe.Customer.create(
            email="twice@example.test",
            idempotency_key="meterline-test-customer",
            api_key=settings.STRIPE_SECRET_KEY,
        )
        for _ in range(2)
    )
    other = stripe.Customer.create(email="twice@example.test", api_key=settings.STRIPE_SECRET_KEY)

    assert first.id == again.id
    assert other.id != first.id


def _reuses_the_parents_client(parent_client, answer):
    try:
        stripe.Customer.create(email="child@example.test", api_key=settings.STRIPE_SECRET_KEY)
        answer.put(stripe.default_http_client is parent_client)
    finally:
        answer.close()
        answer.join_thread()


def test_a_forked_process_does_not_share_the_parents_stripe_connections(localstripe):
    # Sharing a keep-alive connection across processes crossed answers between them: in CI a
    # concurrent refund read another process's balance transaction as its own refund.
    stripe.Customer.create(email="parent@example.test", api_key=settings.STRIPE_SECRET_KEY)
    parent_client = stripe.default_http_client
    assert parent_client is not None
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    child = context.Process(target=_reuses_the_parents_client, args=(parent_client, answer))
    child.start()
    reused = answer.get(timeout=60)
    child.join(timeout=60)

    assert (child.exitcode, reused) == (0, False)
    assert stripe.default_http_client is parent_client  # the parent keeps its own
