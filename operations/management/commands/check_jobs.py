from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from operations.liveness import alert_late_jobs, job_statuses


class Command(BaseCommand):
    help = (
        "List the scheduled jobs that have not succeeded within twice their interval, email "
        "staff once per incident, and exit non-zero if any is late (for cron or monitoring)."
    )

    def handle(self, *args, **options):
        now = timezone.now()
        alert_late_jobs(now=now)
        late = [s for s in job_statuses(now=now) if s.late]
        for status in late:
            self.stderr.write(
                f"{status.name}: no success since {status.late_since:%Y-%m-%d %H:%M:%S} UTC "
                f"(runs every {status.interval_seconds // 60} min)"
            )
        if late:
            raise CommandError(f"{len(late)} scheduled job(s) late.")
        self.stdout.write("Every scheduled job succeeded within twice its interval.")
