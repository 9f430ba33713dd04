"""Queueing and sending notifications (SPEC N3).

`outbox.notify` records the notification under a unique key (a second call with the same key does
nothing) and queues the sending task on commit; `sending.send_notification` renders the kind's HTML
and text templates (`templates/billing/email/<kind>.html` and `.txt`, subject in
`<kind>_subject.txt`) and sends them to the account's billing contacts. Sending is idempotent: a
notification already sent is not sent again, so a task delivered twice by the queue sends once.

Context values are plain JSON stored with the row; money in it is already formatted for people
(`billing.money.format_usd`), so the templates print it as it is. The send adds the account, its
dashboard links, and what other apps registered for the kind (`sending.add_context`: the
run-out estimate of usage.pages.runway).

Optional kinds (OPTIONAL_KINDS) follow the account's choices in `AlertSettings`: a kind turned
off is recorded SKIPPED and not sent. A send that fails (SMTP down) stays PENDING with the error
and is tried again by `send_pending_notifications` (the "Notification resend" job, every 10
minutes), up to MAX_ATTEMPTS. The queue itself never retries it: with `ack_failures` a task that
raised is acknowledged, and a task lost with the Redis broker is gone; the pending row is what
brings it back. Kinds in STAFF_KINDS go to the operator's staff (STAFF_ALERT_EMAILS, else
ADMINS) instead of the account's billing contacts.
"""


def __getattr__(name: str):
    # Task paths queued when this package was a module (billing.notifications.send_notification)
    # still resolve: django-q2's pydoc.locate looks them up as attributes of this package
    # (billing.moved_paths).
    from billing.moved_paths import moved

    return moved(f"{__name__}.{name}")
