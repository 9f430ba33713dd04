from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self):
        from operations import job_runs, sentry

        # The task worker tells django-q2's signals of every task it starts and finishes; the
        # scheduled ones are recorded as job runs (job liveness, docs/operations.md).
        job_runs.connect()
        # Tasks that raise reach Sentry through django-q2's error reporter (no-op without a DSN).
        sentry.install_task_reporter()
