"""Outbound webhooks: the operator's endpoints, their signing secrets, the outbox of events and
each delivery of an event to an endpoint with its attempts (issue 15, Standard Webhooks)."""

from django.db import models
from django.db.models import Q

from accounts.models import Account, User, new_public_id


class WebhookEndpoint(models.Model):
    """A URL of the operator's platform that receives the events it subscribed to."""

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=255, blank=True)
    # Empty: every event type, including types added later.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The first failed attempt since the last success; three days of it disable the endpoint.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        return self.url

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_public_id("we")
        super().save(*args, **kwargs)


class SigningSecret(models.Model):
    """A `whsec_…` secret that signs an endpoint's deliveries until `expires_at` (never, if null).

    Kept in clear: signing needs it. After a rotation the old secret signs for 24 more hours,
    so receivers can switch without losing a delivery.
    """

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="secrets")
    secret = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"secret of {self.endpoint} from {self.created_at:%Y-%m-%d %H:%M}"


class OutboundEvent(models.Model):
    """The outbox: one event, written in the transaction of its cause (`webhooks.events.emit`)."""

    event_id = models.CharField(max_length=40, unique=True, editable=False)
    type = models.CharField(max_length=64, db_index=True)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(db_index=True)
    # The whole body as sent: {"id", "type", "created_at", "data"}.
    payload = models.JSONField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "event"

    def __str__(self):
        return f"{self.type} {self.event_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (retries ran out)"


class Delivery(models.Model):
    """One event for one endpoint: pending until a 2xx answer, retried on a back-off schedule."""

    event = models.ForeignKey(OutboundEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    created_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due; a worker that takes the delivery moves it ahead (a lease).
    # No attempt is scheduled past retry_until: the delivery fails instead.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    retry_until = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_once_per_endpoint")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_due",
            )
        ]

    def __str__(self):
        return f"{self.event} to {self.endpoint}"


class DeliveryAttempt(models.Model):
    """One HTTP request of a delivery and what came back."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_rows")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-pk"]

    def __str__(self):
        return f"{self.status_code or self.error} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
