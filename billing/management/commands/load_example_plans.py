from django.core.management.base import BaseCommand

from billing.plans.example_plans import load_example_plans


class Command(BaseCommand):
    help = "Create or update the six example plans of SPEC section 10 (idempotent)."

    def handle(self, *args, **options):
        plans = load_example_plans()
        for plan in plans:
            self.stdout.write(f"{plan.code}: {plan.name}")
