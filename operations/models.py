"""What operations keeps about the running site: each scheduled job's last runs, and the
incidents of jobs that stopped succeeding (issue 18, job liveness)."""

from django.db import models


class JobRun(models.Model):
    """The latest start, success and failure of one scheduled job (a django-q2 schedule)."""

    # The schedule's name (django-q2 gives a scheduled task its schedule's name as its group).
    name = models.CharField(max_length=100, unique=True)
    func = models.CharField(max_length=256, blank=True)
    # When liveness first knew of the job: a job that never succeeded is late from here.
    tracked_since = models.DateTimeField()
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    # Wall time of the last finished run, success or failure.
    last_duration_seconds = models.FloatField(null=True, blank=True)
    last_result = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class JobIncident(models.Model):
    """A job found late: it has not succeeded within twice its interval.

    One incident per job and last success: the unique constraint is the claim that makes the
    staff email go out once, whichever web process or command notices first.
    """

    job = models.ForeignKey(JobRun, on_delete=models.CASCADE, related_name="incidents")
    # The job's last success when it was found late (its tracked_since if it never succeeded).
    late_since = models.DateTimeField()
    interval_seconds = models.PositiveIntegerField()
    detected_at = models.DateTimeField()
    emailed_at = models.DateTimeField(null=True, blank=True)
    # Set by the job's next success.
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "late_since"], name="one_incident_per_lapse")
        ]

    def __str__(self):
        return f"{self.job.name} late since {self.late_since:%Y-%m-%d %H:%M}"
