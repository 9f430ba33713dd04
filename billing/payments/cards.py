"""Saved cards: add, list, make default, remove (SPEC P2, P5, P6).

A card is added on the payment gateway's card-setup page. With Stripe that is Checkout in setup
mode; Stripe tells us about the card (checkout.session.completed, payment_method.attached /
detached) and `save_stripe_card` / `card_detached` keep `billing.PaymentMethod` in step. In test
mode it is the test-card page, which adds a test card that succeeds, declines or needs
authentication, like Stripe's test cards.

A new or changed default card re-arms auto-top-up and makes the account's unpaid invoices due
now, in the transaction that changes the card; a task queued after commit (inline with
PAYMENTS_SYNC) collects them at once, and the dunning job does if the task is lost (P5).
"""

import secrets
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from billing.ledger.locks import lock_account
from billing.models import AutoTopUpSettings, PaymentMethod, TestCardBehaviour
from billing.payments.auto_topup import rearm
from billing.payments.collection import (
    invoices_keeping_past_due,
    retry_account_invoices,
    schedule_card_retries,
)
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import CardDetails, ProviderUnavailable
from billing.task_queue import enqueue

# What the test-mode cards look like, after Stripe's test card numbers.
TEST_CARDS = {
    TestCardBehaviour.SUCCEED: ("visa", "4242"),
    TestCardBehaviour.DECLINE: ("visa", "0341"),
    TestCardBehaviour.REQUIRE_ACTION: ("visa", "3155"),
}


_UNAVAILABLE = "The payment provider is not answering; please try again."


class CardError(ValueError):
    """A card operation was refused; the message is for the customer."""


def active_cards(account: Account) -> list[PaymentMethod]:
    return list(
        PaymentMethod.objects.filter(account=account, removed_at__isnull=True).order_by(
            "-is_default", "-created_at"
        )
    )


def has_usable_card(*, account: Account, now: datetime) -> bool:
    """Return whether the account, or its parent, has a saved card that has not expired.

    A postpaid subaccount needs one before billable usage is authorized (docs/billing-rules.md,
    "No value from nothing"): otherwise a customer could open children that use and never pay.
    A card is good through the last day of its expiry month; one without an expiry date (not
    told by the provider yet) counts.
    """
    owners = [account.pk] if account.parent_id is None else [account.pk, account.parent_id]
    not_expired = (
        Q(exp_year__isnull=True)
        | Q(exp_month__isnull=True)
        | Q(exp_year__gt=now.year)
        | Q(exp_year=now.year, exp_month__gte=now.month)
    )
    return PaymentMethod.objects.filter(
        not_expired, account_id__in=owners, removed_at__isnull=True
    ).exists()


def start_add_card(*, account: Account, success_url: str, cancel_url: str) -> str:
    """Return where the customer goes to add a card: the gateway's card-setup page."""
    try:
        link = get_gateway().start_card_setup(
            account=account,
            # A setup session moves no money; a repeat only opens another session.
            idempotency_key=f"meterline-setup-{account.public_id}-{secrets.token_hex(8)}",
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except ProviderUnavailable:
        raise CardError(_UNAVAILABLE) from None
    return link.url


def add_test_card(*, account: Account, behaviour: str, now: datetime) -> PaymentMethod:
    """Save a test-mode card (no Stripe keys, P6)."""
    if not get_gateway().simulated:
        raise CardError("Test cards are only available in test mode.")
    if behaviour not in TEST_CARDS:
        raise CardError("Unknown test card.")
    brand, last4 = TEST_CARDS[behaviour]
    card = PaymentMethod.objects.create(
        account=account,
        gateway_id=f"test_pm_{secrets.token_hex(8)}",
        brand=brand,
        last4=last4,
        exp_month=12,
        exp_year=now.year + 3,
        test_behaviour=behaviour,
        created_at=now,
    )
    _card_added(account=account, card=card, now=now)
    return card


def save_stripe_card(*, details: CardDetails, now: datetime) -> PaymentMethod | None:
    """Record (or update) a card Stripe attached to one of our customers. Idempotent."""
    account = Account.objects.filter(stripe_customer_id=details.customer_id).first()
    if account is None or not details.customer_id:
        return None
    with transaction.atomic():
        lock_account(account.pk)
        existing = PaymentMethod.objects.filter(gateway_id=details.payment_method_id).first()
        card, _ = PaymentMethod.objects.update_or_create(
            gateway_id=details.payment_method_id,
            defaults={
                "account": account,
                "brand": details.brand[:20],
                "last4": details.last4[-4:],
                "exp_month": details.exp_month,
                "exp_year": details.exp_year,
                "removed_at": None,
            },
            create_defaults={
                "account": account,
                "brand": details.brand[:20],
                "last4": details.last4[-4:],
                "exp_month": details.exp_month,
                "exp_year": details.exp_year,
                "created_at": now,
            },
        )
    if existing is None or existing.removed_at is not None:
        _card_added(account=account, card=card, now=now)
    return card


def card_detached(*, payment_method_id: str, now: datetime) -> None:
    """Stripe says the card is no longer the customer's (payment_method.detached)."""
    card = PaymentMethod.objects.filter(gateway_id=payment_method_id).first()
    if card is not None and card.removed_at is None:
        _mark_removed(account=card.account, card_id=card.pk, now=now)


def _card_added(*, account: Account, card: PaymentMethod, now: datetime) -> None:
    with transaction.atomic():
        lock_account(account.pk)
        default = PaymentMethod.objects.filter(
            account=account, is_default=True, removed_at__isnull=True
        ).first()
        if default is None or _failed_unpaid(account=account):
            # P5, document 004 ("update your card ... to clear the balance"): a card added
            # while an invoice is unpaid because the default card failed is the one the
            # retry below charges, so it becomes the default; charging the failed card
            # again would keep the account past due.
            PaymentMethod.objects.filter(account=account, is_default=True).exclude(
                pk=card.pk
            ).update(is_default=False)
            PaymentMethod.objects.filter(pk=card.pk).update(is_default=True)
            card.is_default = True
        _record_follow_ups(account=account, now=now)
    if card.is_default:
        get_gateway().make_default_card(account=account, card=card)
    transaction.on_commit(partial(queue_card_changed, account.pk))


def _record_follow_ups(*, account: Account, now: datetime) -> None:
    """Record what a new or changed card sets going, in the transaction that changes it.

    Auto-top-up is re-armed here, and the unpaid invoices are made due now: the queued task
    (`card_changed`) collects them at once, and if the broker loses it the dunning job (every
    15 minutes) finds them due. Nothing of the follow-up lives only in the queue.
    """
    rearm(account=account, now=now)
    schedule_card_retries(account=account, now=now)


def _failed_unpaid(*, account: Account) -> bool:
    """Return whether the default card is the one that failed an unpaid invoice.

    Every charge is made to the default card, and a new or changed default retries the unpaid
    invoices at once: while an invoice keeps the account past due, its last charge failed on
    the card that is the default now.
    """
    return invoices_keeping_past_due(account).exists()


def set_default_card(*, account: Account, card_id: int, now: datetime) -> PaymentMethod:
    card = PaymentMethod.objects.filter(
        account=account, pk=card_id, removed_at__isnull=True
    ).first()
    if card is None:
        raise CardError("No such card.")
    try:
        get_gateway().make_default_card(account=account, card=card)
    except ProviderUnavailable:
        raise CardError(_UNAVAILABLE) from None
    with transaction.atomic():
        lock_account(account.pk)
        PaymentMethod.objects.filter(account=account, is_default=True).exclude(pk=card.pk).update(
            is_default=False
        )
        PaymentMethod.objects.filter(pk=card.pk).update(is_default=True)
        _record_follow_ups(account=account, now=now)
    card.is_default = True
    transaction.on_commit(partial(queue_card_changed, account.pk))
    return card


def remove_card(
    *, account: Account, card_id: int, now: datetime, new_default_id: int | None = None
) -> bool:
    """Remove a saved card; return True when that turned auto-top-up off.

    The default card is replaced only by the card the customer chose (`new_default_id`), never
    by a guess: the newest other card may be one that declines. Without a choice the account has
    no default card, so its auto-top-up is turned off rather than left on with nothing to charge.
    """
    card = PaymentMethod.objects.filter(
        account=account, pk=card_id, removed_at__isnull=True
    ).first()
    if card is None:
        raise CardError("No such card.")
    if new_default_id is not None:
        if new_default_id == card.pk:
            raise CardError("Choose another card as the new default.")
        set_default_card(account=account, card_id=new_default_id, now=now)
    try:
        get_gateway().detach_card(card=card)
    except ProviderUnavailable:
        raise CardError(_UNAVAILABLE) from None
    return _mark_removed(account=account, card_id=card.pk, now=now)


def _mark_removed(*, account: Account, card_id: int, now: datetime) -> bool:
    with transaction.atomic():
        lock_account(account.pk)
        card = PaymentMethod.objects.select_for_update().get(pk=card_id)
        if card.removed_at is not None:
            return False
        PaymentMethod.objects.filter(pk=card.pk).update(is_default=False, removed_at=now)
        if not card.is_default:
            return False
        return bool(
            AutoTopUpSettings.objects.filter(account=account, enabled=True).update(enabled=False)
        )


def queue_card_changed(account_id: int) -> None:
    if getattr(settings, "PAYMENTS_SYNC", False):
        card_changed(account_id)
        return
    if not enqueue("billing.tasks.card_changed", account_id=account_id):
        # The dunning job would collect the invoices the change made due within 15 minutes;
        # P5 says at once, so with the broker down it runs here; a card change is rare.
        card_changed(account_id)


def card_changed(account_id: int) -> str:
    """After a card was added or made default (task billing.tasks.card_changed): collect the
    unpaid invoices the change made due (auto-top-up was re-armed with the change itself)."""

    now = timezone.now()
    account = Account.objects.get(pk=account_id)
    retried = retry_account_invoices(account=account, now=now)
    return f"{retried} invoice(s) retried"
