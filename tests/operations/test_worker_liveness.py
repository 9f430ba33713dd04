"""A stopped task worker is noticed: `/readyz` fails and staff get one email per late job
(issue 18, items 2 and 3), with a real `manage.py qcluster` and django-q2's own heartbeat."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from django_q.tasks import async_task

from billing.jobs import SCHEDULES, register_schedules
from operations.models import JobIncident, JobRun
from tests.operations.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ops_settings(settings):
    settings.WORKER_HEARTBEAT_SECONDS = 2
    settings.JOB_LIVENESS_CHECK_SECONDS = 0
    settings.STAFF_ALERT_EMAILS = ["ops@example.test"]
    return settings


def _ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_stopping_the_worker_fails_readyz_and_emails_each_late_job_once(
    client, ops_settings, task_worker
):
    register_schedules()
    # A cluster killed by the test before this one reports for up to 3 s more.
    _status, body = wait_for(
        lambda: (r := _ready(client))[0] == 503 and r,
        seconds=10,
        what="/readyz ready before any worker started",
    )
    assert body["checks"]["worker"]["ok"] is False
    assert all(body["checks"][name]["ok"] for name in ("database", "cache", "migrations"))

    worker = task_worker()
    wait_for(lambda: _ready(client)[0] == 200, seconds=60, what="/readyz not ready", log=worker.log)

    # A scheduled job's task, queued as django-q2's scheduler queues it (group = the schedule's
    # name): the worker's signals record its run.
    async_task("usage.jobs.release_holds", group="Reservation expiry")
    run = wait_for(
        lambda: JobRun.objects.filter(
            name="Reservation expiry", last_succeeded_at__isnull=False
        ).first(),
        seconds=60,
        what="the job's success was not recorded",
        log=worker.log,
    )
    assert run.func == "usage.jobs.release_holds"
    assert run.last_started_at <= run.last_succeeded_at
    assert run.last_duration_seconds is not None and run.last_duration_seconds >= 0
    assert run.last_result == "0 hold(s) released"
    assert mail.outbox == []

    worker.kill()
    _status, body = wait_for(
        lambda: (r := _ready(client))[0] == 503 and r,
        seconds=20,
        what="/readyz still ready after the worker died",
    )
    assert body["checks"]["worker"]["ok"] is False

    # No worker runs the jobs: once twice its interval has passed, each job is late. The daily
    # ledger check is late only after two days.
    later = timezone.now() + timedelta(hours=3)
    hourly_or_faster = {name for name, (_, minutes) in SCHEDULES.items() if minutes * 2 < 180}
    with time_machine.travel(later, tick=False):
        _ready(client)
        _ready(client)
    subjects = sorted(message.subject for message in mail.outbox)
    assert len(subjects) == len(hourly_or_faster)
    for name in hourly_or_faster:
        assert sum(f"'{name}'" in subject for subject in subjects) == 1
    assert all(message.to == ["ops@example.test"] for message in mail.outbox)
    assert JobIncident.objects.filter(emailed_at__isnull=False).count() == len(hourly_or_faster)

    # Still late a day later: the same incidents, no second email.
    with time_machine.travel(later + timedelta(hours=1), tick=False):
        _ready(client)
    assert len(mail.outbox) == len(hourly_or_faster) + 0
