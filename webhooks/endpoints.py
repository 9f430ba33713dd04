"""Managing webhook endpoints: create, change, rotate the secret, delete, resend a delivery.

The admin and the API (`usage.api.webhook_endpoints`) each make one call here. A secret is
returned only by `create_endpoint` and `rotate_secret`: it is shown once.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from accounts.models import User
from webhooks.addresses import RefusedUrl, check_url
from webhooks.delivery import RETRY_FOR, queue_deliveries
from webhooks.event_types import EVENT_TYPES
from webhooks.models import Delivery, DeliveryStatus, SigningSecret, WebhookEndpoint
from webhooks.signing import new_secret

# How long a rotated-out secret still signs, so receivers can switch without a gap.
OLD_SECRET_SIGNS_FOR = timedelta(hours=24)
URL_MAX_LENGTH = 2000


class InvalidEndpoint(ValueError):
    """The endpoint's settings are refused; the message says why."""


@dataclass(frozen=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str


def clean_url(url: str) -> str:
    """Return the URL if webhooks may go there, else raise InvalidEndpoint."""
    url = (url or "").strip()
    if len(url) > URL_MAX_LENGTH:
        raise InvalidEndpoint(f"The URL is longer than {URL_MAX_LENGTH} characters.")
    try:
        check_url(url)
    except RefusedUrl as exc:
        raise InvalidEndpoint(str(exc)) from None
    return url


def clean_event_types(event_types: list[str] | None) -> list[str]:
    """Return the types sorted and deduplicated (empty: all), or raise for an unknown one."""
    unknown = sorted(set(event_types or ()) - EVENT_TYPES.keys())
    if unknown:
        raise InvalidEndpoint(f"Unknown event type(s): {', '.join(unknown)}.")
    return sorted(set(event_types or ()))


@transaction.atomic
def create_endpoint(
    *,
    url: str,
    now: datetime,
    description: str = "",
    event_types: list[str] | None = None,
    enabled: bool = True,
    created_by: User | None = None,
) -> EndpointWithSecret:
    """Create an endpoint with its first signing secret; return both (the secret, once)."""
    endpoint = WebhookEndpoint.objects.create(
        url=clean_url(url),
        description=description,
        event_types=clean_event_types(event_types),
        enabled=enabled,
        created_at=now,
        created_by=created_by,
        disabled_at=None if enabled else now,
    )
    secret = SigningSecret.objects.create(endpoint=endpoint, secret=new_secret(), created_at=now)
    return EndpointWithSecret(endpoint, secret.secret)


@transaction.atomic
def update_endpoint(
    *, endpoint: WebhookEndpoint, changes: dict, now: datetime, reason: str = ""
) -> WebhookEndpoint:
    """Apply `changes` (url, description, event_types, enabled) to the endpoint.

    Enabling one starts afresh: its failure clock is reset and its pending deliveries are
    queued again after commit. `reason` says who disabled it, for the admin.
    """
    unknown = changes.keys() - {"url", "description", "event_types", "enabled"}
    if unknown:
        raise InvalidEndpoint(f"Cannot change {', '.join(sorted(unknown))}.")
    if "url" in changes:
        endpoint.url = clean_url(changes["url"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "event_types" in changes:
        endpoint.event_types = clean_event_types(changes["event_types"])
    enabling = changes.get("enabled") is True and not endpoint.enabled
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = changes["enabled"]
        endpoint.failing_since = None
        endpoint.disabled_at = None if endpoint.enabled else now
        endpoint.disabled_reason = "" if endpoint.enabled else reason
    endpoint.save()
    if enabling:
        resume = list(
            endpoint.deliveries.filter(status=DeliveryStatus.PENDING).values_list("pk", flat=True)
        )
        endpoint.deliveries.filter(pk__in=resume).update(next_attempt_at=now)
        transaction.on_commit(lambda: queue_deliveries(resume))
    return endpoint


@transaction.atomic
def rotate_secret(*, endpoint: WebhookEndpoint, now: datetime) -> str:
    """Give the endpoint a new secret; the ones signing now sign for 24 more hours at most."""
    grace_end = now + OLD_SECRET_SIGNS_FOR
    SigningSecret.objects.filter(endpoint=endpoint, expires_at__isnull=True).update(
        expires_at=grace_end
    )
    return SigningSecret.objects.create(
        endpoint=endpoint, secret=new_secret(), created_at=now
    ).secret


def delete_endpoint(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its secrets and deliveries; the events stay in the outbox."""
    endpoint.delete()


@transaction.atomic
def resend_delivery(*, delivery: Delivery, now: datetime) -> None:
    """Send a delivery again now, whatever its state: staff's manual resend.

    It becomes pending and due, with a fresh three days of retries if this one fails too.
    """
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING,
        next_attempt_at=now,
        retry_until=now + RETRY_FOR,
        delivered_at=None,
    )
    transaction.on_commit(lambda: queue_deliveries([delivery.pk]))
