"""Recording notifications: once per key, sent after the transaction that recorded them commits."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.db.bulk_insert import insert_objects
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
    rows = [
        Notification(account=n.account, kind=n.kind, key=n.key, context=n.context, created_at=now)
        for n in notices
    ]
    insert_objects(Notification, rows)
    ids = [row.pk for row in rows]
    if ids:
        transaction.on_commit(lambda: queue_send_many(ids))
    return len(ids)
