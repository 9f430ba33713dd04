"""The background tasks, as the task worker calls them: one stable address each (SPEC O2).

A task is queued by dotted path and may wait in the broker across a deploy, so its path and its
arguments are a contract with work already queued. Queue these paths, never a service's
(`enqueue("billing.tasks.send_notification", notification_id=...)`): each entry point takes
keyword-only arguments, ignores those it does not know (a task queued by another release), and
makes one call into its service, which is free to move. Paths that work queued before a move
may still name resolve through billing.moved_paths.

Each is safe to run twice or concurrently: django-q2 delivers at least once. The queue never
retries a task that failed (`ack_failures`), and with Redis a task whose worker was killed is
lost, so each task's work has a database row a scheduled job picks up again: a pending
notification (notification resend), a pending auto-top-up charge (auto-top-up retries), the
unpaid invoices a card change made due (dunning). A card change the broker refuses runs inline
(billing.payments.cards.queue_card_changed).
"""

from billing.notifications import sending
from billing.payments import cards, off_session


def charge_auto_topup(*, topup_id: int, **_) -> str:
    """Charge a pending off-session top-up (auto-top-up, recurring credit) to the saved card and
    apply the answer."""
    return off_session.charge_auto_topup(topup_id)


def card_changed(*, account_id: int, **_) -> str:
    """After a card was added or made default: retry unpaid invoices, re-arm auto-top-up."""
    return cards.card_changed(account_id)


def send_notification(*, notification_id: int, **_) -> str:
    """Send one recorded notification, if it is still pending."""
    return sending.send_notification(notification_id)


def send_notifications(*, notification_ids: list[int], **_) -> str:
    """Send several recorded notifications, each if it is still pending."""
    return sending.send_notifications(notification_ids)
