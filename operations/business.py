"""The business gauges of `/metrics`, as plain figures: each a few indexed counts.

Every figure is a question an operator alerts on: money work waiting (notifications, top-ups,
refunds, webhook deliveries), credit held, customers paused for non-payment, webhook endpoints
that fail, scheduled jobs that stopped succeeding, and the last ledger check's drift.
"""

from datetime import datetime

from django.db.models import Count, Min, Q

from accounts.models import Account
from billing.models import LedgerCheck, Notification, Refund, TopUp
from billing.models.notifications import NotificationStatus
from billing.models.payments import RefundStatus, TopUpKind, TopUpStatus
from operations.liveness import job_statuses
from usage.models import Reservation, ReservationStatus
from webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint

# (name, help, label names, [(label values, value), ...])
Figure = tuple[str, str, list[str], list[tuple[list[str], float]]]


def _age_seconds(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then else 0.0


def business_figures(*, now: datetime) -> list[Figure]:
    figures: list[Figure] = []

    pending = Notification.objects.filter(status=NotificationStatus.PENDING).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    figures.append(
        (
            "meterline_notifications_pending",
            "Emails recorded and not yet sent.",
            [],
            [([], pending["n"])],
        )
    )
    figures.append(
        (
            "meterline_notifications_pending_oldest_age_seconds",
            "Age of the oldest email not yet sent (0 when none waits).",
            [],
            [([], _age_seconds(now, pending["oldest"]))],
        )
    )

    by_kind = dict(
        TopUp.objects.filter(status=TopUpStatus.PENDING)
        .values("kind")
        .annotate(n=Count("pk"))
        .values_list("kind", "n")
    )
    figures.append(
        (
            "meterline_topups_pending",
            "Top-ups waiting for the payment provider's answer, by kind.",
            ["kind"],
            [([kind], by_kind.get(kind, 0)) for kind in TopUpKind.values],
        )
    )
    figures.append(
        (
            "meterline_refunds_pending",
            "Refunds to a card asked of the payment provider and not yet confirmed.",
            [],
            [([], Refund.objects.filter(status=RefundStatus.PENDING).count())],
        )
    )

    holds = Reservation.objects.filter(status=ReservationStatus.HELD).aggregate(
        n=Count("pk"), oldest=Min("expires_at")
    )
    figures.append(
        ("meterline_holds_open", "Call authorizations holding credit.", [], [([], holds["n"])])
    )
    figures.append(
        (
            "meterline_holds_overdue_seconds",
            "How long past its expiry the oldest open hold is (0 when none is overdue); the "
            "hold-release job should keep this under a few minutes.",
            [],
            [([], _age_seconds(now, holds["oldest"]) if holds["oldest"] else 0.0)],
        )
    )
    figures.append(
        (
            "meterline_accounts_past_due",
            "Accounts whose billable usage is paused for an unpaid invoice.",
            [],
            [([], Account.objects.filter(past_due_since__isnull=False).count())],
        )
    )

    deliveries = Delivery.objects.filter(status=DeliveryStatus.PENDING).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    figures.append(
        (
            "meterline_webhook_deliveries_pending",
            "Webhook deliveries not yet answered with a 2xx (being retried, or waiting for a "
            "disabled endpoint).",
            [],
            [([], deliveries["n"])],
        )
    )
    figures.append(
        (
            "meterline_webhook_deliveries_pending_oldest_age_seconds",
            "Age of the oldest pending webhook delivery (0 when none waits).",
            [],
            [([], _age_seconds(now, deliveries["oldest"]))],
        )
    )
    endpoints = WebhookEndpoint.objects.aggregate(
        failing=Count("pk", filter=Q(enabled=True, failing_since__isnull=False)),
        disabled=Count("pk", filter=Q(enabled=False)),
    )
    figures.append(
        (
            "meterline_webhook_endpoints",
            "Webhook endpoints whose last attempt failed (failing) or that are disabled.",
            ["state"],
            [(["failing"], endpoints["failing"]), (["disabled"], endpoints["disabled"])],
        )
    )

    statuses = job_statuses(now=now)
    figures.append(
        (
            "meterline_job_last_success_age_seconds",
            "Seconds since each scheduled job last succeeded (since tracking began if never).",
            ["job"],
            [([s.name], s.success_age_seconds(now)) for s in statuses],
        )
    )
    figures.append(
        (
            "meterline_job_interval_seconds",
            "Each scheduled job's interval.",
            ["job"],
            [([s.name], float(s.interval_seconds)) for s in statuses],
        )
    )
    figures.append(
        (
            "meterline_job_last_duration_seconds",
            "How long each scheduled job's last finished run took.",
            ["job"],
            [([s.name], s.last_duration_seconds or 0.0) for s in statuses],
        )
    )
    figures.append(
        (
            "meterline_job_late",
            "1 when a scheduled job has not succeeded within twice its interval.",
            ["job"],
            [([s.name], 1.0 if s.late else 0.0) for s in statuses],
        )
    )

    check = LedgerCheck.objects.order_by("-checked_at").first()
    figures.append(
        (
            "meterline_ledger_drift_accounts",
            "Accounts whose balance disagreed with their ledger at the last ledger check.",
            [],
            [([], check.drift_accounts if check else 0)],
        )
    )
    figures.append(
        (
            "meterline_ledger_check_age_seconds",
            "Seconds since the last ledger check finished (0 before the first).",
            [],
            [([], _age_seconds(now, check.checked_at) if check else 0.0)],
        )
    )
    return figures
