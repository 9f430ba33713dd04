"""Two task workers, as on two hosts, against one database and broker: a due schedule runs once
(issue 18, item 7; docs/operations.md, "Several hosts")."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule, Task

from operations.models import JobRun
from tests.operations.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Not a name of billing.jobs.SCHEDULES: the migration registered those, due since it ran.
NAME = "Hold release, two workers"


def test_two_workers_run_a_due_schedule_once(task_worker):
    # Only this schedule: the registered ones would keep both workers busy meanwhile.
    Schedule.objects.all().delete()
    Schedule.objects.create(
        name=NAME,
        func="usage.jobs.release_holds",
        schedule_type=Schedule.MINUTES,
        minutes=60,
        repeats=-1,
        next_run=timezone.now() - timedelta(seconds=1),
    )
    workers = [task_worker(), task_worker()]

    def logs():
        return "\n".join(worker.log() for worker in workers)

    # Each cluster's sentinel looks at the schedules every 30 s; wait until both have looked
    # at least once after the row was due (its run moved an hour on).
    wait_for(
        lambda: JobRun.objects.filter(name=NAME, last_succeeded_at__isnull=False).exists(),
        seconds=90,
        what="the schedule did not run",
        log=logs,
    )
    wait_for(
        lambda: sum("running" in w.log() for w in workers) == 2,
        seconds=30,
        what="both clusters did not start",
        log=logs,
    )
    # Both sentinels look at the schedules once more (every 30 s) before we count.
    time.sleep(35)

    runs = Task.objects.filter(group=NAME)
    assert runs.count() == 1, logs()
    schedule = Schedule.objects.get(name=NAME)
    assert schedule.next_run > timezone.now() + timedelta(minutes=55)
