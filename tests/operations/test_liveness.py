"""Job liveness without a worker: when a job is late, one email per lapse, and its next success
closes the incident (issue 18, item 3)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from billing.jobs import register_schedules
from operations.job_runs import record_finish, record_start
from operations.liveness import alert_late_jobs, job_statuses
from operations.models import JobIncident

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOLDS = "Reservation expiry"  # every 5 minutes: late after 10


@pytest.fixture
def schedules(db, settings):
    settings.STAFF_ALERT_EMAILS = ["ops@example.test"]
    register_schedules()


def succeed(name: str, at: datetime) -> None:
    record_start(name=name, func="usage.jobs.release_holds", now=at)
    record_finish(
        name=name,
        func="usage.jobs.release_holds",
        success=True,
        started_at=at,
        stopped_at=at + timedelta(seconds=2),
        result="0 hold(s) released",
    )


def late_names(now):
    return {s.name for s in job_statuses(now=now) if s.late}


def test_a_job_is_late_only_after_twice_its_interval_without_success(schedules):
    job_statuses(now=T0)  # tracking begins
    succeed(HOLDS, T0)

    assert HOLDS not in late_names(T0 + timedelta(minutes=10))
    assert HOLDS in late_names(T0 + timedelta(minutes=10, seconds=3))
    status = next(s for s in job_statuses(now=T0) if s.name == HOLDS)
    assert status.interval_seconds == 300
    assert status.last_duration_seconds == 2


def others_succeed(at: datetime) -> None:
    """Every other job succeeds at `at`, so that only the hold release can be late."""
    for name in late_names(at + timedelta(days=3)) - {HOLDS}:
        succeed(name, at)


def check(minutes: int):
    at = T0 + timedelta(minutes=minutes)
    others_succeed(at)
    return alert_late_jobs(now=at)


def test_each_lapse_emails_once_and_the_next_success_closes_it(schedules):
    job_statuses(now=T0)
    succeed(HOLDS, T0)

    first = check(11)
    again = check(40)

    assert [i.job.name for i in first] == [HOLDS]
    assert again == []
    assert len(mail.outbox) == 1
    assert HOLDS in mail.outbox[0].subject and mail.outbox[0].to == ["ops@example.test"]

    succeed(HOLDS, T0 + timedelta(minutes=41))
    assert JobIncident.objects.get().resolved_at is not None
    assert check(45) == []

    later = check(52)  # late again: a new incident
    assert [i.job.name for i in later] == [HOLDS]
    assert len(mail.outbox) == 2
    assert JobIncident.objects.count() == 2


def test_a_failed_email_is_tried_again_by_the_next_check(schedules, monkeypatch):
    job_statuses(now=T0)
    from operations import liveness

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("SMTP down")

    monkeypatch.setattr(liveness, "send_mail", refuse)
    assert alert_late_jobs(now=T0 + timedelta(hours=1)) == []
    assert JobIncident.objects.filter(emailed_at__isnull=True).exists()

    monkeypatch.undo()
    emailed = alert_late_jobs(now=T0 + timedelta(hours=1, minutes=1))
    assert emailed and len(mail.outbox) == len(emailed)


def test_check_jobs_exits_non_zero_while_a_job_is_late(schedules, time_machine):
    time_machine.move_to(T0, tick=False)
    call_command("check_jobs")  # tracking begins now: nothing late yet
    time_machine.move_to(T0 + timedelta(hours=3), tick=False)

    with pytest.raises(CommandError, match="scheduled job"):
        call_command("check_jobs")
    assert mail.outbox
