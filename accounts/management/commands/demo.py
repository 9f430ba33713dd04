import os
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from accounts.demo.build import build_demo
from accounts.demo.data import (
    CUSTOMER_EMAIL,
    DEMO_PASSWORD,
    FINANCE_EMAIL,
    STAFF_EMAIL,
    SUPPORT_EMAIL,
    create_customer_curl,
    demo_platform_key,
)
from accounts.demo.history import HISTORY_DAYS
from accounts.demo.webhooks import start_receiver


class Command(BaseCommand):
    help = "Run the embedded demo: migrate SQLite, load plans and demo data, start web and worker."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where the server listens.")
        parser.add_argument(
            "--no-serve", action="store_true", help="Prepare the data and exit (for tests)."
        )
        parser.add_argument(
            "--days",
            type=int,
            default=HISTORY_DAYS,
            help=f"Days of usage history to make (default {HISTORY_DAYS}; the restore drill "
            "uses 30).",
        )

    def handle(self, *args, **options):
        if connection.vendor == "sqlite":
            settings.VAR_DIR.mkdir(exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        summary = build_demo(days=options["days"])
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        for line in summary:
            self.stdout.write(f"  {line}")
        host = options["addr"]
        token = demo_platform_key(now=timezone.now())
        self.stdout.write(
            f"\nPlatform key: {token}\nCreate a customer by your own id (docs/integration.md):\n"
            f"  {create_customer_curl(base_url=f'http://{host}', token=token)}\n"
        )
        if options["no_serve"]:
            return
        if "SITE_URL" not in os.environ:
            # Links in emails (and the worker that sends them) point where this demo listens,
            # not at the default port.
            settings.SITE_URL = f"http://{host}"
        self.stdout.write(
            f"\nOpen http://{host}/ and sign in as {CUSTOMER_EMAIL} "
            f"(password {DEMO_PASSWORD}); staff: {STAFF_EMAIL}, {SUPPORT_EMAIL} (Support) and "
            f"{FINANCE_EMAIL} (Finance) at http://{host}/admin/\n"
        )
        # The demo's webhook receiver listens on 127.0.0.1, which the SSRF guard refuses
        # unless told otherwise: here and in the worker that delivers.
        settings.WEBHOOKS_ALLOW_PRIVATE = True
        receiver_url = start_receiver(write=self.stdout.write)
        self.stdout.write(
            f"Webhooks go to the demo receiver at {receiver_url}; each one is printed here. "
            "Open an account to see one within a minute:\n"
            "  uv run manage.py create_account --email new@example.test --plan voice-prepaid\n"
        )
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env={**os.environ, "SITE_URL": settings.SITE_URL, "WEBHOOKS_ALLOW_PRIVATE": "true"},
        )
        try:
            call_command("runserver", host, use_reloader=False)
        except KeyboardInterrupt:
            pass
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        finally:
            worker.terminate()
            worker.wait(timeout=10)
