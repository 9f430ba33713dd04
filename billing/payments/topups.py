"""Buying credit: manual top-ups and the one function that credits any paid top-up (SPEC P1, P6).

A top-up is a row first (status pending, with the key Stripe gets as idempotency key), then the
payment gateway's checkout page: Stripe Checkout, or the test-mode payment page. Credit is added
only when the payment is confirmed, by `fulfil_topup`: from the webhook
(checkout.session.completed, payment_intent.succeeded, charge.succeeded, in any order and any
number of times), from the off-session charge of an auto-top-up, or from the test-mode page. It
credits exactly once: it locks the account and the top-up, and the ledger entry's idempotency key
`topup:<pk>` is unique. The browser's return from Checkout only shows the state.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from accounts.models import Account, User, new_public_id
from billing import events
from billing.invoicing.receipts import receipt_for_topup
from billing.ledger.errors import DuplicatePosting
from billing.ledger.locks import lock_account
from billing.ledger.posting import post_entry
from billing.models import OFF_SESSION_KINDS, EntryKind, TopUp, TopUpKind, TopUpStatus
from billing.money import MICROS_PER_USD, MoneyError, format_usd, micros_to_cents
from billing.notifications.links import receipt_page_url
from billing.notifications.outbox import notify
from billing.payments.backoff import end_backoff
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import ProviderUnavailable

logger = logging.getLogger(__name__)

# Stripe's smallest card charge in USD is 0.50; the plan's minimum is usually higher.
PROVIDER_MINIMUM_MICROS = 500_000
MAXIMUM_TOPUP_MICROS = 10_000 * MICROS_PER_USD
# The ledger entry (and grant) that credits each kind of paid top-up.
ENTRY_KINDS = {
    TopUpKind.MANUAL: EntryKind.TOPUP,
    TopUpKind.AUTO: EntryKind.AUTO_TOPUP,
    TopUpKind.RECURRING: EntryKind.RECURRING_TOPUP,
}


class TopUpError(ValueError):
    """A top-up was refused; the message is for the customer."""


@dataclass(frozen=True)
class TopUpStart:
    topup: TopUp
    redirect_url: str


def minimum_topup_micros(account: Account) -> int:
    return max(account.subscription.plan.min_topup_micros, PROVIDER_MINIMUM_MICROS)


def validate_topup_amount(*, account: Account, amount_micros: int) -> None:
    minimum = minimum_topup_micros(account)
    if amount_micros < minimum:
        raise TopUpError(f"The minimum top-up is {format_usd(minimum)}.")
    if amount_micros > MAXIMUM_TOPUP_MICROS:
        raise TopUpError(f"A top-up can be at most {format_usd(MAXIMUM_TOPUP_MICROS)}.")
    try:
        micros_to_cents(amount_micros)
    except MoneyError:
        raise TopUpError("A top-up must be a whole number of cents.") from None


def new_topup(*, account: Account, kind: str, amount_micros: int, now: datetime, **fields) -> TopUp:
    """Insert a pending top-up whose key (Stripe's idempotency key) comes from its own id."""
    public_id = new_public_id("top")
    return TopUp.objects.create(
        public_id=public_id,
        account=account,
        kind=kind,
        amount_micros=amount_micros,
        key=fields.pop("key", f"meterline-{public_id}"),
        created_at=now,
        **fields,
    )


def start_topup(
    *,
    account: Account,
    amount_micros: int,
    now: datetime,
    success_url: str,
    cancel_url: str,
    actor: User | None = None,
) -> TopUpStart:
    """Record a pending top-up and return where to send the customer to pay for it.

    `success_url` and `cancel_url` may contain `{TOPUP}`, replaced by the top-up's public id.
    """
    validate_topup_amount(account=account, amount_micros=amount_micros)
    topup = new_topup(
        account=account,
        kind=TopUpKind.MANUAL,
        amount_micros=amount_micros,
        now=now,
        created_by=actor,
    )
    try:
        link = get_gateway().start_topup_checkout(
            account=account,
            amount_micros=amount_micros,
            topup_public_id=topup.public_id,
            idempotency_key=f"{topup.key}:checkout",
            success_url=success_url.replace("{TOPUP}", topup.public_id),
            cancel_url=cancel_url.replace("{TOPUP}", topup.public_id),
        )
    except ProviderUnavailable as error:
        TopUp.objects.filter(pk=topup.pk).update(
            status=TopUpStatus.FAILED, error=str(error), completed_at=now
        )
        raise TopUpError("The payment provider is not answering; please try again.") from None
    if link.session_id:
        TopUp.objects.filter(pk=topup.pk).update(checkout_session_id=link.session_id)
        topup.checkout_session_id = link.session_id
    return TopUpStart(topup, link.url)


def fulfil_topup(
    *,
    topup_id: int,
    now: datetime,
    payment_intent_id: str = "",
    checkout_session_id: str = "",
    amount_paid_micros: int | None = None,
) -> TopUp:
    """Credit a paid top-up to its account, once, however often and in whatever order asked."""
    with transaction.atomic():
        account_id = TopUp.objects.values_list("account_id", flat=True).get(pk=topup_id)
        # WARNING (locking order): the account first, then the top-up, like every balance change.
        locked = lock_account(account_id)
        account = locked.account
        topup = TopUp.objects.select_for_update().get(pk=topup_id)
        _remember_stripe_ids(topup, payment_intent_id, checkout_session_id)
        if topup.is_paid:
            return topup
        if amount_paid_micros is not None and amount_paid_micros != topup.amount_micros:
            # Never credit what was not paid for; staff look at the error.
            logger.error("Top-up %s paid %s, expected %s", topup, amount_paid_micros, topup)
            topup.error = f"Paid {amount_paid_micros} micros, expected {topup.amount_micros}."
            topup.save(update_fields=["error"])
            return topup
        off_session = topup.kind in OFF_SESSION_KINDS
        try:
            entry = post_entry(
                locked=locked,
                amount_micros=topup.amount_micros,
                kind=ENTRY_KINDS[topup.kind],
                now=now,
                cause=topup,
                description=f"{topup.get_kind_display()} {topup.public_id}",
                idempotency_key=f"topup:{topup.pk}",
            )
        except DuplicatePosting as duplicate:  # the row lock makes this unreachable; be safe
            entry = duplicate.entry
        topup.status = TopUpStatus.SUCCEEDED
        topup.entry = entry
        topup.grant = entry.grant
        topup.error = ""
        topup.completed_at = now
        topup.save(update_fields=["status", "entry", "grant", "error", "completed_at"])
        receipt = receipt_for_topup(topup=topup, now=now)
        if off_session:
            end_backoff(topup=topup, now=now)
        events.topup_event(
            "auto_topup.succeeded" if off_session else "topup.succeeded",
            topup=topup,
            balance_micros=account.balance_micros,
            now=now,
        )
        notify(
            account=account,
            kind="auto_topup_succeeded" if off_session else "topup_receipt",
            key=f"topup_paid:{topup.public_id}",
            context={
                **topup_context(topup, balance_micros=account.balance_micros),
                "receipt": receipt.number,
                "receipt_url": receipt_page_url(account, receipt.number),
            },
            now=now,
        )
    return topup


def _remember_stripe_ids(topup: TopUp, payment_intent_id: str, checkout_session_id: str) -> None:
    fields = []
    if payment_intent_id and not topup.payment_intent_id:
        topup.payment_intent_id = payment_intent_id
        fields.append("payment_intent_id")
    if checkout_session_id and not topup.checkout_session_id:
        topup.checkout_session_id = checkout_session_id
        fields.append("checkout_session_id")
    if fields:
        topup.save(update_fields=fields)


def topup_context(topup: TopUp, *, balance_micros: int | None = None) -> dict:
    """What an email about a top-up may say (plain JSON: it is stored with the notification)."""
    context = {
        "topup": topup.public_id,
        "kind": topup.kind,
        # `kind` is the notification's own in the email; the templates read this one.
        "topup_kind": topup.kind,
        "amount": format_usd(topup.amount_micros),
    }
    if balance_micros is not None:
        context["balance"] = format_usd(balance_micros)
    return context


def fail_topup(*, topup_id: int, now: datetime, error: str, status: str = TopUpStatus.FAILED):
    """Mark a manual top-up failed or canceled, unless it was paid in the meantime."""
    with transaction.atomic():
        topup = TopUp.objects.select_for_update().get(pk=topup_id)
        if topup.status not in (TopUpStatus.PENDING, TopUpStatus.REQUIRES_ACTION):
            return topup
        topup.status = status
        topup.error = error
        topup.completed_at = now
        topup.save(update_fields=["status", "error", "completed_at"])
        if status == TopUpStatus.FAILED:  # a canceled checkout is the customer's choice
            events.topup_event("topup.failed", topup=topup, now=now)
    return topup


def find_topup(*, public_id: str = "", payment_intent_id: str = "", checkout_session_id: str = ""):
    """Return the top-up a Stripe object points at, by whichever reference it carries."""
    if public_id:
        topup = TopUp.objects.filter(public_id=public_id).first()
        if topup is not None:
            return topup
    if payment_intent_id:
        topup = TopUp.objects.filter(payment_intent_id=payment_intent_id).first()
        if topup is not None:
            return topup
    if checkout_session_id:
        return TopUp.objects.filter(checkout_session_id=checkout_session_id).first()
    return None


def resume_topup(
    *, account: Account, topup_public_id: str, success_url: str, cancel_url: str
) -> str:
    """Let the customer pay, on-session, a top-up whose card needed authentication, or go back
    to the checkout page of a manual top-up they left unpaid.

    Return where to send them: the gateway's checkout page for the same top-up (Stripe asks for
    the authentication there). For a manual top-up the checkout is asked for again with the
    same idempotency key, so Stripe answers with the session it opened first (its keys last 24
    hours, as long as a session stays open and `expire_abandoned_topups` waits): never a second
    session that could be paid twice.
    """
    topup = TopUp.objects.filter(account=account, public_id=topup_public_id).first()
    if topup is None or not can_resume(topup):
        raise TopUpError("This top-up does not need anything from you.")
    gateway = get_gateway()
    if (
        topup.status == TopUpStatus.REQUIRES_ACTION
        and topup.payment_intent_id
        and gateway.cancel_payment_intent(payment_intent_id=topup.payment_intent_id)
    ):
        # The off-session intent is dropped; the checkout page makes the one that pays, and its
        # id is recorded when the payment is confirmed.
        TopUp.objects.filter(pk=topup.pk).update(payment_intent_id=None)
    try:
        link = gateway.start_topup_checkout(
            account=account,
            amount_micros=topup.amount_micros,
            topup_public_id=topup.public_id,
            idempotency_key=f"{topup.key}:checkout",
            success_url=success_url.replace("{TOPUP}", topup.public_id),
            cancel_url=cancel_url.replace("{TOPUP}", topup.public_id),
        )
    except ProviderUnavailable:
        raise TopUpError("The payment provider is not answering; please try again.") from None
    if link.session_id:
        TopUp.objects.filter(pk=topup.pk, checkout_session_id__isnull=True).update(
            checkout_session_id=link.session_id
        )
    return link.url


def can_resume(topup: TopUp) -> bool:
    """Return whether the customer can still pay the top-up on a checkout page."""
    return topup.status == TopUpStatus.REQUIRES_ACTION or (
        topup.status == TopUpStatus.PENDING and topup.kind == TopUpKind.MANUAL
    )


def cancel_topup(*, account: Account, topup_public_id: str, now: datetime) -> TopUp:
    """Cancel a manual top-up the customer no longer means to pay.

    A payment that still arrives for it (the checkout page was open in another tab) is credited
    all the same: `fulfil_topup` credits whatever was paid.
    """
    topup = TopUp.objects.filter(account=account, public_id=topup_public_id).first()
    if topup is None or topup.kind != TopUpKind.MANUAL:
        raise TopUpError("No such top-up.")
    if topup.status != TopUpStatus.PENDING:
        raise TopUpError(f"This top-up is already {topup.get_status_display().lower()}.")
    return fail_topup(
        topup_id=topup.pk, now=now, error="Canceled by the customer.", status=TopUpStatus.CANCELED
    )


# Stripe closes an unpaid Checkout Session after 24 hours; a top-up whose page was left is
# canceled then, even when the checkout.session.expired event never arrives (or, in test mode,
# there is no session to expire).
ABANDONED_AFTER = timedelta(hours=24)


def expire_abandoned_topups(*, now: datetime) -> int:
    """Cancel the manual top-ups left pending for a day; return how many."""
    abandoned = TopUp.objects.filter(
        kind=TopUpKind.MANUAL, status=TopUpStatus.PENDING, created_at__lte=now - ABANDONED_AFTER
    ).values_list("pk", flat=True)
    expired = 0
    for topup_id in abandoned:
        topup = fail_topup(
            topup_id=topup_id,
            now=now,
            error="The checkout page expired.",
            status=TopUpStatus.CANCELED,
        )
        expired += topup.status == TopUpStatus.CANCELED
    return expired
