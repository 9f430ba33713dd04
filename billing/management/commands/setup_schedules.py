from django.core.management.base import BaseCommand

from billing.jobs import register_schedules


class Command(BaseCommand):
    help = "Register the scheduled jobs with django-q2 (idempotent)."

    def handle(self, *args, **options):
        self.stdout.write(f"{register_schedules()} schedules registered.")
