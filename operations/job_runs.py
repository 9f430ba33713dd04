"""Record each scheduled job's runs from django-q2's own signals (job liveness, issue 18).

django-q2 names a scheduled task's group after its schedule, so the worker's `pre_execute`
(in the worker process, as the task starts) and the monitor's `post_execute` (after the result
is saved) tell which job ran, when, how long and whether it succeeded. The jobs themselves
(billing.jobs, usage.jobs) know nothing of this, and a job run by hand as a command is not a
scheduled run.
"""

import logging

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.signals import post_execute, pre_execute

from operations.models import JobIncident, JobRun

logger = logging.getLogger(__name__)

# How much of a job's result to keep: its summary line, not a traceback's worth of text.
RESULT_CHARS = 1000


def _scheduled_job(task: dict) -> str | None:
    """Return the schedule's name if the task was queued by a schedule, else None."""
    name = task.get("group")
    if not name or not Schedule.objects.filter(name=name).exists():
        return None
    return name


def record_start(*, name: str, func: str, now) -> None:
    """Note that the job named `name` started at `now`."""
    updated = JobRun.objects.filter(name=name).update(last_started_at=now, func=func)
    if not updated:
        JobRun.objects.get_or_create(
            name=name, defaults={"func": func, "tracked_since": now, "last_started_at": now}
        )


def record_finish(*, name: str, func: str, success: bool, started_at, stopped_at, result) -> None:
    """Note how the job's run ended; a success resolves the job's open incidents."""
    duration = (stopped_at - started_at).total_seconds() if started_at and stopped_at else None
    fields = {
        "func": func,
        "last_duration_seconds": duration,
        "last_result": str(result)[:RESULT_CHARS],
        ("last_succeeded_at" if success else "last_failed_at"): stopped_at,
    }
    with transaction.atomic():
        job, _ = JobRun.objects.get_or_create(name=name, defaults={"tracked_since": stopped_at})
        JobRun.objects.filter(pk=job.pk).update(**fields)
        if success:
            JobIncident.objects.filter(job=job, resolved_at__isnull=True).update(
                resolved_at=stopped_at
            )


def _on_pre_execute(sender, func=None, task=None, **kwargs):
    try:
        name = _scheduled_job(task or {})
        if name:
            record_start(name=name, func=str(task.get("func", "")), now=timezone.now())
    except Exception:
        # Bookkeeping must never stop the job itself from running.
        logger.exception("Could not record the start of a scheduled job")


def _on_post_execute(sender, task=None, **kwargs):
    try:
        task = task or {}
        name = _scheduled_job(task)
        if name:
            record_finish(
                name=name,
                func=str(task.get("func", "")),
                success=bool(task.get("success")),
                started_at=task.get("started"),
                stopped_at=task.get("stopped") or timezone.now(),
                result=task.get("result", ""),
            )
    except Exception:
        logger.exception("Could not record the end of a scheduled job")


def connect() -> None:
    pre_execute.connect(_on_pre_execute, dispatch_uid="operations.job_runs.pre_execute")
    post_execute.connect(_on_post_execute, dispatch_uid="operations.job_runs.post_execute")
