"""Sending recorded notifications (SPEC N3): render, send once, retry what failed."""

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.brand import brand, email_sender
from accounts.mail import one_line_subject
from accounts.models import Account
from billing.models.alert_settings import AlertSettings
from billing.models.notifications import Notification, NotificationStatus
from billing.notifications.links import billing_page_url
from billing.task_queue import enqueue

logger = logging.getLogger(__name__)

# kind -> the AlertSettings field that turns it off. Kinds not listed are always sent: money
# that could not be taken (failed invoice payment or auto-top-up, a card that needs the
# customer) and budgets, which the customer set up to be told about.
OPTIONAL_KINDS = {
    "low_balance": "email_low_balance",
    "zero_balance": "email_zero_balance",
    "allowance_used": "email_allowance",
    "invoice_issued": "email_invoices",
    "invoice_paid": "email_invoices",
    "topup_receipt": "email_receipts",
    "auto_topup_succeeded": "email_receipts",
}


# Kinds addressed to the operator's staff (STAFF_ALERT_EMAILS, else ADMINS), not to the
# account's billing contacts: something about the account that staff must act on.
STAFF_KINDS = frozenset({"refund_failed"})

# Kinds addressed to the staff named in the notification's own context (its "approvers"): a
# request that waits for a second staff member's approval goes to those who may give it.
APPROVER_KINDS = frozenset({"approval_waiting"})


MAX_ATTEMPTS = 5


# A pending notification older than this was lost by the queue (or failed): send it again.
RESEND_AFTER = timedelta(minutes=10)


def _send_inline(notification_ids: list[int]) -> None:
    # Runs in an on_commit callback of the caller's transaction: a failed email must not turn
    # a committed charge or invoice into an error. The row stays pending for the resend sweep.
    for notification_id in notification_ids:
        try:
            send_notification(notification_id)
        except Exception:
            logger.exception("Notification %s could not be sent", notification_id)


def send_notifications(notification_ids: list[int]) -> str:
    """Send several notifications (task billing.tasks.send_notifications); one failure does
    not stop the others."""
    sent = 0
    for notification_id in notification_ids:
        try:
            if send_notification(notification_id) == "sent":
                sent += 1
        except Exception:
            logger.exception("Notification %s could not be sent", notification_id)
    return f"{sent} of {len(notification_ids)} sent"


def send_notification(notification_id: int) -> str:
    """Send one notification (task billing.tasks.send_notification) unless it was sent,
    skipped or given up on already.

    Return "sent", "skipped" (the kind is turned off, or nobody is there to receive it) or
    "nothing to send". Raise what the mail backend raised after recording the failure: the task
    shows as failed, and `send_pending_notifications` tries the pending row again (the queue
    does not: `ack_failures` acknowledges a task that raised).
    """
    try:
        return _send(notification_id)
    except Exception as exc:
        Notification.objects.filter(pk=notification_id, status=NotificationStatus.PENDING).update(
            attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        Notification.objects.filter(
            pk=notification_id, status=NotificationStatus.PENDING, attempts__gte=MAX_ATTEMPTS
        ).update(status=NotificationStatus.FAILED)
        raise


def _send(notification_id: int) -> str:
    with transaction.atomic():
        # The row lock makes two deliveries of the task send once: the second waits, then
        # finds the notification sent. It locks the notification only (`of`): locking the
        # joined account too, after the notification, deadlocked with a deduction that holds
        # the account and retracts this pending notification (seen in CI on PostgreSQL).
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("account")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None or notification.status != NotificationStatus.PENDING:
            return "nothing to send"
        account = notification.account
        if not wants_email(account=account, kind=notification.kind) or not recipients(notification):
            notification.status = NotificationStatus.SKIPPED
            notification.save(update_fields=["status"])
            return "skipped"
        message = build_message(notification)
        message.send()
        notification.status = NotificationStatus.SENT
        notification.sent_at = timezone.now()
        notification.recipients = ", ".join(message.to)
        notification.save(update_fields=["status", "sent_at", "recipients"])
    return "sent"


def recipients(notification: Notification) -> list[str]:
    """Return who receives a notification: staff for STAFF_KINDS, the approvers named in the
    context for APPROVER_KINDS, else the billing contacts."""
    if notification.kind in APPROVER_KINDS:
        return list(notification.context.get("approvers", []))
    if notification.kind in STAFF_KINDS:
        return list(settings.STAFF_ALERT_EMAILS) or [email for _, email in settings.ADMINS]
    return notification.account.billing_emails


def wants_email(*, account: Account, kind: str) -> bool:
    """Return whether the account's billing contacts receive this kind of email."""
    field = OPTIONAL_KINDS.get(kind)
    if field is None:
        return True
    choice = AlertSettings.objects.filter(account=account).values_list(field, flat=True).first()
    return choice is None or choice  # no settings yet: every email is on


# What some kinds of email add to their context, from data billing does not read itself:
# registered by the app that owns the data when Django starts (usage: the run-out estimate of
# low-balance and receipt emails, from its daily rollups). billing sits below usage.
ContextProvider = Callable[[Notification], dict]
_context_providers: dict[str, list[ContextProvider]] = {}


def add_context(*, kinds: Iterable[str], provider: ContextProvider) -> None:
    """Have `provider(notification)` add to the context of these kinds of email."""
    for kind in kinds:
        providers = _context_providers.setdefault(kind, [])
        if provider not in providers:
            providers.append(provider)


def build_message(notification: Notification) -> EmailMultiAlternatives:
    """Render a notification's subject, text and HTML parts for the account's billing contacts."""
    account = notification.account
    context = {
        **notification.context,
        "kind": notification.kind,
        "account": account,
        "site_url": settings.SITE_URL,
        "dashboard_url": f"{settings.SITE_URL}/app/a/{account.public_id}/",
        "billing_url": billing_page_url(account),
        "preferences_url": f"{billing_page_url(account)}#alerts",
        "brand": brand(),
    }
    for provider in _context_providers.get(notification.kind, ()):
        context.update(provider(notification))
    base = f"billing/email/{notification.kind}"
    subject = one_line_subject(render_to_string(f"{base}_subject.txt", context))
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{base}.txt", context),
        from_email=email_sender(),
        to=recipients(notification),
        headers={"X-Meterline-Notification": notification.key},
    )
    message.attach_alternative(render_to_string(f"{base}.html", context), "text/html")
    return message


def send_pending_notifications(*, now: datetime) -> int:
    """Send again what is still pending after RESEND_AFTER (a lost task, a failed SMTP call).

    The scheduled job; safe to run concurrently with the tasks, since each send locks its row.
    Return how many were sent.
    """
    ids = list(
        Notification.objects.filter(
            status=NotificationStatus.PENDING, created_at__lte=now - RESEND_AFTER
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )
    sent = 0
    for notification_id in ids:
        try:
            if send_notification(notification_id) == "sent":
                sent += 1
        except Exception:
            logger.exception("Notification %s could not be sent", notification_id)
    return sent


def queue_send(notification_id: int) -> None:
    """Hand the sending to the task worker; without a worker (tests, commands) send inline."""
    if getattr(settings, "NOTIFICATIONS_SYNC", False):
        _send_inline([notification_id])
        return
    # A refused task leaves the row pending for send_pending_notifications.
    enqueue("billing.tasks.send_notification", notification_id=notification_id)


def queue_send_many(notification_ids: list[int]) -> None:
    if getattr(settings, "NOTIFICATIONS_SYNC", False):
        _send_inline(notification_ids)
        return
    enqueue("billing.tasks.send_notifications", notification_ids=notification_ids)
