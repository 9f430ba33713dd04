"""Queueing and sending notifications (SPEC N3).

`notify` records the notification under a unique key (a second call with the same key does
nothing) and queues the sending task on commit; `send_notification` renders the kind's HTML and
text templates (`templates/billing/email/<kind>.html` and `.txt`, subject in `<kind>_subject.txt`)
and sends them to the account's billing contacts. Sending is idempotent: a notification already
sent is not sent again, so a task delivered twice by the queue sends once.

Context values are plain JSON stored with the row; money in it is already formatted for people
(`billing.money.format_usd`), so the templates print it as it is. The send adds the account, its
dashboard links and, for the kinds in RUNWAY_KINDS, the run-out estimate (`usage.pages.runway`).

Optional kinds (OPTIONAL_KINDS) follow the account's choices in `AlertSettings`: a kind turned
off is recorded SKIPPED and not sent. A send that fails (SMTP down) stays PENDING with the error
and is tried again by the queue's retry and by `send_pending_notifications`, up to MAX_ATTEMPTS.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.models.notifications import Notification, NotificationStatus
from billing.notifications.sending import queue_send, queue_send_many

logger = logging.getLogger(__name__)


def notify(
    *, account: Account, kind: str, key: str, context: dict, now: datetime
) -> Notification | None:
    """Record a notification once per key and send it after the transaction commits."""
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                account=account, kind=kind, key=key, context=context, created_at=now
            )
    except IntegrityError:
        return None  # already recorded: a repeat of the same crossing, invoice or period
    transaction.on_commit(lambda: queue_send(notification.pk))
    return notification


@dataclass(frozen=True)
class Notice:
    """One notification for `notify_many`; the arguments of `notify` but `now`."""

    account: Account
    kind: str
    key: str
    context: dict


def notify_many(*, notices: Sequence[Notice], now: datetime) -> int:
    """Record many notifications with one insert and queue one task for them; return how many.

    For jobs that notify thousands of accounts in one transaction (period close): keys already
    recorded are left alone, as with `notify`.
    """
    if not notices:
        return 0
    Notification.objects.bulk_create(
        [
            Notification(
                account=n.account, kind=n.kind, key=n.key, context=n.context, created_at=now
            )
            for n in notices
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    # Inserted with ignore_conflicts, the rows have no ids: read back the ones still to send.
    # A key recorded by an earlier run and still pending is simply queued again (sending is
    # idempotent).
    ids = list(
        Notification.objects.filter(
            key__in=[n.key for n in notices], status=NotificationStatus.PENDING
        ).values_list("pk", flat=True)
    )
    if ids:
        transaction.on_commit(lambda: queue_send_many(ids))
    return len(ids)


def notify_new(*, notices: Sequence[Notice], now: datetime) -> int:
    """Record notifications whose keys name something made in this very transaction.

    For keys no earlier row can hold, such as `invoice_issued:<number>` of an invoice number
    handed out a moment ago (numbers are never reused): they are inserted in one go without
    the conflict check of `notify_many`, and queued as one task on commit. Should such a key
    exist after all, the insert fails and the caller's transaction rolls back: no email is
    ever lost or doubled. Return how many were recorded.
    """
    from billing.db.bulk_insert import insert_objects

    rows = [
        Notification(account=n.account, kind=n.kind, key=n.key, context=n.context, created_at=now)
        for n in notices
    ]
    insert_objects(Notification, rows)
    ids = [row.pk for row in rows]
    if ids:
        transaction.on_commit(lambda: queue_send_many(ids))
    return len(ids)
