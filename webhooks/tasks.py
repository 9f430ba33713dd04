"""The webhook task, as the task worker calls it: one stable dotted path (as billing.tasks).

Queued as `webhooks.tasks.deliver` (webhooks.delivery.TASK); it takes keyword-only arguments
and ignores unknown ones, so work queued by another release still runs.
"""

from django.utils import timezone

from webhooks import delivery


def deliver(*, delivery_id: int, **_) -> str:
    """Make one attempt of a due delivery; a delivery not due (taken, done) is left alone."""
    return delivery.deliver(delivery_id=delivery_id, now=timezone.now())
