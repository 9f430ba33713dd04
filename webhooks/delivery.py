"""Delivering the outbox: sign, send, record the attempt, retry on a back-off for three days.

At least once: a delivery is pending until an endpoint answers 2xx. A worker takes a due
delivery by moving its `next_attempt_at` ahead by a lease (a conditional update: of two workers
only one takes it), sends, and records the attempt with the next due time. A task the broker
lost, or a worker killed mid-request, leaves the delivery pending and due: the sweep
(`retry_due_deliveries`, every minute) queues it again. Receivers dedupe by `webhook-id`.
"""

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from accounts.mail import mail_staff, one_line_subject
from webhooks import transport
from webhooks.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OutboundEvent,
    WebhookEndpoint,
)
from webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

# Waits after the 1st, 2nd, ... failed attempt; the last one repeats until RETRY_FOR has passed.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)
RETRY_FOR = timedelta(days=3)
# An endpoint that has failed every attempt for this long is disabled and staff are told.
DISABLE_AFTER = timedelta(days=3)
# Longer than a request may take, so a live worker's delivery is never taken from it.
LEASE = timedelta(seconds=60)
SWEEP_BATCH = 500
TASK = "webhooks.tasks.deliver"


def retry_delay(attempts: int) -> timedelta:
    """Return the wait after the `attempts`-th failed attempt (1-based)."""
    return RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]


def body_of(event: OutboundEvent) -> bytes:
    """Return the bytes sent for an event: the same for every attempt and every endpoint."""
    return json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """Return the endpoint's secrets that sign at `now`, newest first."""
    return [
        s.secret
        for s in endpoint.secrets.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    ]


def queue_deliveries(delivery_ids: list[int]) -> None:
    """Hand the deliveries to the task worker; inline where there is none (WEBHOOKS_SYNC).

    Never raises: a delivery the broker refused stays due, and the sweep queues it again.
    """
    for delivery_id in delivery_ids:
        try:
            if getattr(settings, "WEBHOOKS_SYNC", False):
                deliver(delivery_id=delivery_id, now=timezone.now())
            else:
                async_task(TASK, delivery_id=delivery_id)
        except Exception:
            logger.exception("Could not deliver or queue webhook delivery %s", delivery_id)


def deliver(*, delivery_id: int, now: datetime) -> str:
    """Make one attempt of a due delivery and record it; return what happened."""
    taken = (
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .filter(endpoint__enabled=True, next_attempt_at__lte=now)
        .update(next_attempt_at=now + LEASE)
    )
    if not taken:
        return "not due"
    delivery = Delivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = body_of(delivery.event)
    headers = signed_headers(
        secrets=signing_secrets(endpoint, now=now),
        msg_id=delivery.event.event_id,
        sent_at=now,
        body=body,
    )
    answer = transport.post(
        url=endpoint.url, body=body, headers=headers, timeout_seconds=transport.TIMEOUT_SECONDS
    )
    return record_attempt(delivery=delivery, answer=answer, now=now)


def record_attempt(*, delivery: Delivery, answer: transport.Answer, now: datetime) -> str:
    """Store the attempt and move the delivery on: delivered, due again later, or failed."""
    attempts = delivery.attempts + 1
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            status_code=answer.status_code,
            latency_ms=answer.latency_ms,
            response_excerpt=answer.excerpt,
            error=answer.error,
        )
        endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
        if answer.succeeded:
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.DELIVERED,
                attempts=F("attempts") + 1,
                delivered_at=now,
                next_attempt_at=None,
            )
            endpoints.update(failing_since=None)
            return "delivered"
        next_at = now + retry_delay(attempts)
        gave_up = next_at > delivery.retry_until
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=None if gave_up else next_at,
        )
        endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    disable_failing_endpoints(now=now)
    outcome = answer.error or f"HTTP {answer.status_code}"
    return f"failed ({outcome}); {'gave up' if gave_up else f'next attempt at {next_at:%H:%M:%S}'}"


def retry_due_deliveries(*, now: datetime) -> int:
    """Queue every pending delivery that is due (a retry, or a task the broker lost); disable
    endpoints that failed for three days first. Return how many were queued."""
    disable_failing_endpoints(now=now)
    due = list(
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING, endpoint__enabled=True, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    queue_deliveries(due)
    return len(due)


def disable_failing_endpoints(*, now: datetime) -> list[WebhookEndpoint]:
    """Disable each enabled endpoint that has failed since DISABLE_AFTER ago and email staff
    once about each; return those this call disabled."""
    disabled = []
    for endpoint in WebhookEndpoint.objects.filter(
        enabled=True, failing_since__lte=now - DISABLE_AFTER
    ):
        # The conditional update is the claim: a concurrent sweep disables no row and sends
        # no second email.
        claimed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False,
            disabled_at=now,
            disabled_reason=(
                f"Every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
            ),
        )
        if claimed:
            disabled.append(endpoint)
            _email_staff_disabled(endpoint, now=now)
    return disabled


def _email_staff_disabled(endpoint: WebhookEndpoint, *, now: datetime) -> None:
    pending = endpoint.deliveries.filter(status=DeliveryStatus.PENDING).count()
    subject = one_line_subject(f"Meterline: webhook endpoint {endpoint.url} was disabled")
    body = (
        f"The webhook endpoint {endpoint.public_id} ({endpoint.url}) answered no delivery "
        f"with a 2xx since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC, three days or more, so "
        f"it was disabled at {now:%Y-%m-%d %H:%M} UTC. {pending} delivery(ies) wait for it.\n\n"
        "Fix the receiver, then enable the endpoint again in the admin (Outbound webhooks → "
        "Webhook endpoints) or with PATCH /api/v1/webhook_endpoints/{id} "
        '{"enabled": true}; its pending deliveries are then sent again.'
    )
    logger.error("%s", subject)
    try:
        mail_staff(subject, body)
    except Exception:
        # The endpoint stays disabled either way; the log line above says so.
        logger.exception("Could not email staff about disabled endpoint %s", endpoint.public_id)
