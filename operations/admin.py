from django.contrib import admin
from django.utils import timezone

from operations.liveness import job_statuses
from operations.models import JobIncident, JobRun


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    """Each scheduled job's last runs, and whether it is late (read-only: the worker writes)."""

    list_display = (
        "name",
        "func",
        "last_started_at",
        "last_succeeded_at",
        "last_failed_at",
        "last_duration_seconds",
        "late",
    )
    readonly_fields = [f.name for f in JobRun._meta.fields]

    @admin.display(boolean=True, description="Late")
    def late(self, obj):
        # A few schedule rows read per job row: the list holds a dozen jobs.
        late = {s.name: s.late for s in job_statuses(now=timezone.now())}
        return late.get(obj.name, False)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(JobIncident)
class JobIncidentAdmin(admin.ModelAdmin):
    list_display = ("job", "late_since", "detected_at", "emailed_at", "resolved_at")
    list_filter = ("resolved_at",)
    readonly_fields = [f.name for f in JobIncident._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
