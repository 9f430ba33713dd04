"""Queueing background tasks so that a broker outage never fails the caller (SPEC O2).

With REDIS_URL set, django-q2's broker is Redis. When Redis cannot take a task, `async_task`
raises, usually inside an on-commit callback of a request whose charge or top-up is already
committed: the platform got a 500 for a success, and the callbacks queued after it (an
auto-top-up charge after a low-balance email) never ran.

Every task queued through here has a row that still says it is to be done, and a scheduled job
that queues it again: a pending `Notification` (`send_pending_notifications`, every 10 minutes)
and a pending auto-top-up (`retry_auto_topups`, every 15 minutes). Losing the queueing is
therefore only a delay, so it is logged and the caller goes on. Callers without such a job
look at the answer and do the work themselves.
"""

import logging

from django_q.tasks import async_task

logger = logging.getLogger(__name__)

# Keywords async_task takes as its own options instead of passing them to the task.
_DJANGO_Q_OPTIONS = frozenset(
    {
        "hook",
        "group",
        "save",
        "sync",
        "cached",
        "ack_failure",
        "iter_count",
        "iter_cached",
        "chain",
        "broker",
        "cluster",
        "timeout",
        "q_options",
        "task_name",
    }
)


def enqueue(func: str, **kwargs) -> bool:
    """Queue `func(**kwargs)` for the task worker; return False (and log) if the broker refused.

    `func` is the stable dotted path of an entry point in billing.tasks, never a service's:
    a queued task may run after a deploy that moved the service.
    """
    if _DJANGO_Q_OPTIONS & kwargs.keys():
        # django-q2 would swallow these silently and the task would run without them.
        raise ValueError(f"Task arguments named like django-q2 options: {sorted(kwargs)}")
    try:
        async_task(func, **kwargs)
    except Exception:
        logger.exception("Could not queue %s(%r); it will be picked up again later", func, kwargs)
        return False
    return True
