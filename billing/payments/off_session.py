"""Charging a saved card off-session for a top-up: auto-top-up and recurring credit (SPEC P2).

The charge runs after commit, in a task, through the payment gateway (Stripe off-session, or
the test-mode cards); its answer, or a webhook's, is applied here once: paid top-ups go through
the same `fulfil_topup` as any other, a decline backs off (billing.payments.backoff) and tells
the customer, and a card that needs authentication gets the customer an email with a link,
never a retry.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account
from billing import events
from billing.ledger.locks import lock_account
from billing.models import (
    TopUp,
    TopUpStatus,
)
from billing.money import format_usd
from billing.notifications.outbox import notify
from billing.payments.backoff import BACKOFF, retry_state, update_row
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import ChargeOutcome
from billing.payments.topups import fulfil_topup
from billing.task_queue import enqueue

# A pending charge older than this had its task lost: the retry job asks again, same key.
STALE_PENDING = timedelta(minutes=15)


WAITING_STATUSES = (TopUpStatus.PENDING, TopUpStatus.REQUIRES_ACTION)


def queue_charge(topup_id: int) -> None:
    """Charge after commit: in a worker, or inline where there is none (tests, PAYMENTS_SYNC)."""
    if getattr(settings, "PAYMENTS_SYNC", False):
        charge_auto_topup(topup_id)
        return
    # A refused task leaves the top-up pending; retry_auto_topups asks again after STALE_PENDING.
    enqueue("billing.tasks.charge_auto_topup", topup_id=topup_id)


def charge_auto_topup(topup_id: int) -> str:
    """Charge a pending off-session top-up once (task billing.tasks.charge_auto_topup; its key
    makes a repeat ask Stripe again for the same answer) and apply the result."""
    now = timezone.now()
    topup = TopUp.objects.select_related("account").get(pk=topup_id)
    if topup.status != TopUpStatus.PENDING:
        return f"{topup.get_kind_display()} {topup.public_id} is {topup.status}"
    outcome = get_gateway().charge_saved_card(
        account=topup.account,
        amount_micros=topup.amount_micros,
        idempotency_key=topup.key,
        description=f"{topup.get_kind_display()} {topup.public_id}",
        metadata={"topup": topup.public_id, "account": topup.account.public_id},
    )
    record_charge_outcome(topup_id=topup.pk, outcome=outcome, now=now)
    return f"{topup.get_kind_display()} {topup.public_id}: {outcome.status}"


def record_charge_outcome(*, topup_id: int, outcome: ChargeOutcome, now: datetime) -> None:
    """Apply the gateway's answer (or a webhook's) to an off-session top-up. Idempotent."""
    if outcome.status == "succeeded":
        fulfil_topup(topup_id=topup_id, now=now, payment_intent_id=outcome.reference)
    elif outcome.status == "requires_action":
        charge_requires_action(topup_id=topup_id, now=now, payment_intent_id=outcome.reference)
    elif outcome.status == "failed":
        charge_failed(
            topup_id=topup_id, now=now, error=outcome.error, payment_intent_id=outcome.reference
        )
    elif outcome.reference:
        # Still processing: the webhook will say how it ended.
        TopUp.objects.filter(pk=topup_id, payment_intent_id__isnull=True).update(
            payment_intent_id=outcome.reference
        )


def _lock_waiting_topup(topup_id: int) -> tuple[Account, TopUp] | None:
    account_id = TopUp.objects.values_list("account_id", flat=True).get(pk=topup_id)
    account = lock_account(account_id).account
    topup = TopUp.objects.select_for_update().get(pk=topup_id)
    if topup.status not in WAITING_STATUSES:
        return None
    return account, topup


def charge_failed(*, topup_id: int, now: datetime, error: str, payment_intent_id: str = "") -> None:
    """A declined auto-top-up or recurring purchase: back off, and tell the customer."""
    with transaction.atomic():
        locked = _lock_waiting_topup(topup_id)
        if locked is None:
            return
        account, topup = locked
        topup.status = TopUpStatus.FAILED
        topup.error = error or "The card was declined."
        topup.completed_at = now
        if payment_intent_id and not topup.payment_intent_id:
            topup.payment_intent_id = payment_intent_id
        topup.save(update_fields=["status", "error", "completed_at", "payment_intent_id"])
        row = retry_state(topup).first()
        retry_at = None
        if row is not None:
            failures = row.consecutive_failures + 1
            retry_at = now + BACKOFF[failures - 1] if failures <= len(BACKOFF) else None
            update_row(row, now, consecutive_failures=failures, next_attempt_at=retry_at)
        events.topup_event("auto_topup.failed", topup=topup, now=now, next_attempt_at=retry_at)
        notify(
            account=account,
            kind="auto_topup_failed",
            key=f"auto_topup_failed:{topup.public_id}",
            context={
                "topup": topup.public_id,
                "amount": format_usd(topup.amount_micros),
                "reason": "declined",
                "topup_kind": topup.kind,
                "error": topup.error,
                "retry_at": retry_at.isoformat() if retry_at else "",
            },
            now=now,
        )


def charge_requires_action(*, topup_id: int, now: datetime, payment_intent_id: str = "") -> None:
    """The card needs the customer: email them a link instead of retrying."""
    with transaction.atomic():
        locked = _lock_waiting_topup(topup_id)
        if locked is None:
            return
        account, topup = locked
        if topup.status == TopUpStatus.REQUIRES_ACTION:
            return
        topup.status = TopUpStatus.REQUIRES_ACTION
        topup.error = "The card needs authentication."
        if payment_intent_id and not topup.payment_intent_id:
            topup.payment_intent_id = payment_intent_id
        topup.save(update_fields=["status", "error", "payment_intent_id"])
        retry_state(topup).update(next_attempt_at=None, updated_at=now)
        path = reverse("payments:resume_topup", args=[account.public_id, topup.public_id])
        events.topup_event(
            "auto_topup.action_required",
            topup=topup,
            now=now,
            action_url=f"{settings.SITE_URL}{path}",
        )
        notify(
            account=account,
            kind="auto_topup_action_required",
            key=f"auto_topup_action:{topup.public_id}",
            context={
                "topup": topup.public_id,
                "amount": format_usd(topup.amount_micros),
                "topup_kind": topup.kind,
                "action_url": f"{settings.SITE_URL}{path}",
            },
            now=now,
        )
