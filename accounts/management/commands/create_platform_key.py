import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.keys import issue_api_key
from accounts.models import KeyKind


class Command(BaseCommand):
    help = "Create an operator (platform) key that reports usage for any account."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="Platform key")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, **options):
        name = options["name"].strip()
        if not name:
            raise CommandError("A key needs a name.")
        issued = issue_api_key(kind=KeyKind.PLATFORM, name=name, now=timezone.now())
        if options["json"]:
            self.stdout.write(json.dumps({"key": issued.token}))
        else:
            self.stdout.write(f"Platform key: {issued.token}")
