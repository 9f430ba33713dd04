"""Job liveness: which scheduled jobs have not succeeded within twice their interval, and the
staff email that says so once per incident (issue 18).

A dead task worker cannot report its own death, so this runs outside it: every `/readyz` and
`/metrics` request calls `alert_late_jobs` (throttled per process), and so does
`manage.py check_jobs` for a cron line. The claim that makes the email go out once is the
unique constraint of `JobIncident`; the email is sent after the claim commits.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db import IntegrityError, transaction
from django_q.models import Schedule

from operations.models import JobIncident, JobRun

logger = logging.getLogger(__name__)

# Seconds between runs for django-q2's fixed schedule types (MINUTES uses the row's `minutes`).
_TYPE_SECONDS = {
    Schedule.HOURLY: 3600,
    Schedule.DAILY: 24 * 3600,
    Schedule.WEEKLY: 7 * 24 * 3600,
    Schedule.BIWEEKLY: 14 * 24 * 3600,
    Schedule.MONTHLY: 31 * 24 * 3600,
    Schedule.BIMONTHLY: 62 * 24 * 3600,
    Schedule.QUARTERLY: 92 * 24 * 3600,
    Schedule.YEARLY: 366 * 24 * 3600,
}


@dataclass(frozen=True)
class JobStatus:
    name: str
    func: str
    interval_seconds: int
    last_started_at: datetime | None
    last_succeeded_at: datetime | None
    last_duration_seconds: float | None
    # The last success, or when tracking began if the job never succeeded.
    late_since: datetime
    late: bool

    def success_age_seconds(self, now: datetime) -> float:
        return (now - self.late_since).total_seconds()


def _interval_seconds(schedule: Schedule) -> int | None:
    if schedule.schedule_type == Schedule.MINUTES:
        return (schedule.minutes or 1) * 60
    return _TYPE_SECONDS.get(schedule.schedule_type)


def job_statuses(*, now: datetime) -> list[JobStatus]:
    """Return every repeating schedule with its last runs and whether it is late."""
    schedules = [
        s
        for s in Schedule.objects.exclude(repeats=0).exclude(name__isnull=True).order_by("name")
        if _interval_seconds(s)
    ]
    known = {run.name: run for run in JobRun.objects.all()}
    missing = [
        JobRun(name=s.name, func=s.func, tracked_since=now)
        for s in schedules
        if s.name not in known
    ]
    if missing:
        # A job first seen now is late only after twice its interval from now.
        JobRun.objects.bulk_create(missing, ignore_conflicts=True)
        known = {run.name: run for run in JobRun.objects.all()}
    statuses = []
    for schedule in schedules:
        run = known[schedule.name]
        interval = _interval_seconds(schedule)
        late_since = run.last_succeeded_at or run.tracked_since
        statuses.append(
            JobStatus(
                name=schedule.name,
                func=schedule.func,
                interval_seconds=interval,
                last_started_at=run.last_started_at,
                last_succeeded_at=run.last_succeeded_at,
                last_duration_seconds=run.last_duration_seconds,
                late_since=late_since,
                late=now - late_since > timedelta(seconds=2 * interval),
            )
        )
    return statuses


def alert_late_jobs(*, now: datetime) -> list[JobIncident]:
    """Open an incident for each late job and email staff about the new ones, once each.

    Return the incidents this call emailed.
    """
    for status in job_statuses(now=now):
        if not status.late:
            continue
        try:
            with transaction.atomic():
                JobIncident.objects.create(
                    job=JobRun.objects.get(name=status.name),
                    late_since=status.late_since,
                    interval_seconds=status.interval_seconds,
                    detected_at=now,
                )
        except IntegrityError:
            pass  # already open: someone else noticed this lapse first
    emailed = []
    for incident in JobIncident.objects.filter(
        emailed_at__isnull=True, resolved_at__isnull=True
    ).select_related("job"):
        # Whoever moves emailed_at from NULL sends; a concurrent checker updates no row.
        if not JobIncident.objects.filter(pk=incident.pk, emailed_at__isnull=True).update(
            emailed_at=now
        ):
            continue
        try:
            _send_incident_email(incident, now=now)
        except Exception:
            # Give the claim back so that the next check tries again.
            JobIncident.objects.filter(pk=incident.pk).update(emailed_at=None)
            logger.exception("Could not email the job-liveness alert for %s", incident.job.name)
            continue
        emailed.append(incident)
    return emailed


def _send_incident_email(incident: JobIncident, *, now: datetime) -> None:
    job = incident.job
    minutes = incident.interval_seconds // 60
    since = f"{incident.late_since:%Y-%m-%d %H:%M} UTC"
    subject = f"Meterline: scheduled job '{job.name}' has not succeeded since {since}"
    body = (
        f"The scheduled job '{job.name}' ({job.func}) runs every {minutes} minute(s) and has not "
        f"succeeded since {incident.late_since:%Y-%m-%d %H:%M:%S} UTC "
        f"({int((now - incident.late_since).total_seconds() // 60)} minutes ago).\n"
        f"Last start: {job.last_started_at or 'never'}; "
        f"last failure: {job.last_failed_at or 'none'}.\n\n"
        "Check that a task worker (manage.py qcluster) is running and can reach the database "
        "and the broker; /readyz says whether a worker was seen. This alert is sent once; the "
        "job's next success closes the incident."
    )
    logger.error("%s", subject)
    if settings.STAFF_ALERT_EMAILS:
        send_mail(subject, body, None, settings.STAFF_ALERT_EMAILS)
    else:
        mail_admins(subject, body)
