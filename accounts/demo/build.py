"""Build the demo dataset for `manage.py demo`: users, accounts on every example plan, and 90
days of history (accounts.demo.history), once.

Emails of that history are recorded as sent without being printed (locmem backend during the
build), so the console is not flooded when the demo starts.
"""

from datetime import datetime

from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from accounts.demo.data import (
    CUSTOMER_EMAIL,
    DEMO_PASSWORD,
    STAFF_EMAIL,
    STAFF_ROLES,
    demo_role_user,
    demo_user,
)
from accounts.demo.history import HISTORY_DAYS, History
from accounts.models import Account, Membership
from billing.plans.example_plans import load_example_plans


def build_demo(*, now: datetime | None = None, days: int = HISTORY_DAYS) -> list[str]:
    """Create the demo users, accounts and `days` of their history once; describe what exists."""
    now = now or timezone.now()
    load_example_plans()
    staff = demo_user(STAFF_EMAIL, is_staff=True, is_superuser=True, name="Demo Staff")
    customer = demo_user(CUSTOMER_EMAIL, name="Demo Customer")
    lines = [f"staff: {staff.email} / {DEMO_PASSWORD}"]
    for email, (group_name, _) in STAFF_ROLES.items():
        lines.append(f"{group_name.lower()} staff: {demo_role_user(email).email} / {DEMO_PASSWORD}")
    lines.append(f"customer: {customer.email}")
    if not Membership.objects.filter(user=customer).exists():
        # The history's emails are recorded as sent, not printed; charges run inline.
        # One transaction: all of it or nothing (and SQLite writes it in one go). No query
        # log (DEBUG): on SQLite it runs a second statement per query to quote its
        # parameters, about a sixth of the build's time.
        with (
            override_settings(
                DEBUG=False,
                EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
                NOTIFICATIONS_SYNC=True,
                PAYMENTS_SYNC=True,
            ),
            transaction.atomic(),
        ):
            History(now=now, staff=staff, customer=customer, days=days).build()
    for account in Account.objects.filter(memberships__user=customer).order_by("name"):
        lines.append(f"account {account.public_id}: {account.name}")
    return lines
