"""Scheduled jobs (SPEC O3). Each reads the clock once and makes one call into a service.

django-q2 runs them on schedule (registered by `register_schedules`, from a migration and from
`manage.py setup_schedules`); each also has a management command that runs it by hand, as of
now. All are idempotent and safe to run twice or concurrently (django-q2 delivers at least once).

A `Schedule` row names its job by dotted path and outlives a release, so these paths are stable
(billing.jobs.*, and usage.jobs.* for usage's job): each job takes keyword-only arguments and
ignores the ones it does not know. A job path that moved resolves through billing.moved_paths.
"""

import logging

from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.utils import timezone
from django_q.models import Schedule

from accounts.mail import one_line_subject
from billing.invoicing.invoices import invoice_thresholds as issue_threshold_invoices
from billing.invoicing.period_close import close_periods as close_due_periods
from billing.ledger.drift import check_ledger as check_ledger_drift
from billing.ledger.expiry import expire_credit as expire_due_credit
from billing.moved_paths import moved
from billing.notifications.sending import send_pending_notifications
from billing.payments.auto_topup import retry_auto_topups as retry_due_auto_topups
from billing.payments.collection import collect_due_invoices, collect_invoice
from billing.payments.recurring_credit import buy_recurring_credit as buy_due_recurring_credit
from billing.payments.refunds import retry_pending_refunds
from billing.payments.topups import expire_abandoned_topups as cancel_abandoned_topups

logger = logging.getLogger(__name__)


def invoice_thresholds(**_) -> str:
    now = timezone.now()
    invoices = issue_threshold_invoices(now=now)
    for invoice in invoices:
        collect_invoice(invoice_id=invoice.pk, now=now)
    return f"{len(invoices)} threshold invoice(s)"


def close_periods(**_) -> str:
    now = timezone.now()
    closed = close_due_periods(now=now)
    collected = collect_due_invoices(now=now)
    return f"{closed} period(s) closed, {collected} invoice(s) charged"


def expire_credit(**_) -> str:
    return f"credit expired on {expire_due_credit(now=timezone.now())} account(s)"


def collect_invoices(**_) -> str:
    return f"{collect_due_invoices(now=timezone.now())} invoice(s) charged"


def retry_auto_topups(**_) -> str:
    return f"{retry_due_auto_topups(now=timezone.now())} auto-top-up(s) started or asked again"


def buy_recurring_credit(**_) -> str:
    return f"{buy_due_recurring_credit(now=timezone.now())} recurring credit purchase(s) started"


def retry_refunds(**_) -> str:
    return f"{retry_pending_refunds(now=timezone.now())} refund(s) asked again"


def expire_abandoned_topups(**_) -> str:
    return f"{cancel_abandoned_topups(now=timezone.now())} abandoned top-up(s) canceled"


def check_ledger(**_) -> str:
    drift = check_ledger_drift(now=timezone.now())
    if drift:
        body = "\n".join(
            f"{d.public_id}: cached {d.cached_micros}, ledger {d.ledger_micros}, "
            f"grants {d.grants_micros}"
            for d in drift
        )
        subject = one_line_subject(f"Meterline: {len(drift)} account(s) drift from their ledger")
        logger.error("%s\n%s", subject, body)
        if settings.STAFF_ALERT_EMAILS:
            send_mail(subject, body, None, settings.STAFF_ALERT_EMAILS)
        else:
            mail_admins(subject, body)
    return f"{len(drift)} account(s) drift"


def send_notifications(**_) -> str:
    return f"{send_pending_notifications(now=timezone.now())} notification(s) sent again"


# name -> (function, minutes between runs)
SCHEDULES = {
    "Threshold invoicing": ("billing.jobs.invoice_thresholds", 30),
    "Period close": ("billing.jobs.close_periods", 60),
    "Reservation expiry": ("usage.jobs.release_holds", 5),
    "Credit expiry": ("billing.jobs.expire_credit", 60),
    "Dunning retries": ("billing.jobs.collect_invoices", 15),
    "Ledger check": ("billing.jobs.check_ledger", 24 * 60),
    "Notification resend": ("billing.jobs.send_notifications", 10),
    "Auto-top-up retries": ("billing.jobs.retry_auto_topups", 15),
    # Every 15 minutes, like auto-top-up retries: it buys periods that began and retries declines.
    "Recurring credit": ("billing.jobs.buy_recurring_credit", 15),
    "Refund retries": ("billing.jobs.retry_refunds", 15),
    # Stored answers are kept 24 hours at least (usage.api.idempotency); hourly is plenty.
    "Idempotency key purge": ("usage.jobs.purge_idempotency_keys", 60),
    # Every minute: the first retries of a webhook are due seconds and minutes after a failure.
    "Webhook deliveries": ("webhooks.jobs.retry_deliveries", 1),
    # Hourly: a checkout left unpaid shows "Canceled" within an hour of its 24 hours.
    "Abandoned top-up expiry": ("billing.jobs.expire_abandoned_topups", 60),
}


def __getattr__(name: str):
    # Schedule rows and tasks from before a job moved (billing.jobs.release_holds) still
    # resolve: django-q2's pydoc.locate looks them up as attributes of this module
    # (billing.moved_paths).
    return moved(f"{__name__}.{name}")


def register_schedules(schedule_model=Schedule) -> int:
    """Create or update the django-q2 schedules; running it again changes nothing.

    A migration passes its historical model; everyone else gets the current one.
    """
    for name, (func, minutes) in SCHEDULES.items():
        schedule_model.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1},
        )
    return len(SCHEDULES)
