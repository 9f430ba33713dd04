from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string


class JobCommand(BaseCommand):
    """A management command that runs one scheduled job by hand, as of now."""

    job = ""  # dotted path of a scheduled job (billing.jobs, usage.jobs)

    def handle(self, *args, **options):
        self.stdout.write(import_string(self.job)())
