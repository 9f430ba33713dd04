from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.ledger.drift import check_ledger


class Command(BaseCommand):
    help = "Check that every account's balance equals the sum of its ledger entries and grants."

    def handle(self, *args, **options):
        drift = check_ledger(now=timezone.now())
        for d in drift:
            self.stderr.write(
                f"{d.public_id}: cached {d.cached_micros}, ledger {d.ledger_micros}, "
                f"grants {d.grants_micros}"
            )
        if drift:
            raise CommandError(f"{len(drift)} account(s) drift from their ledger.")
        self.stdout.write("Ledger OK: every balance equals the sum of its entries.")
