"""Emails sent to an account's billing contacts, each recorded once (SPEC N1-N3)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Skipped (turned off)"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """One notification; `key` makes a retried task or a repeated crossing send once.

    Keys read like `low_balance:<account>:<crossing>` or `invoice_issued:<invoice number>`.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40)
    key = models.CharField(max_length=200, unique=True)
    context = models.JSONField(default=dict, blank=True)
    recipients = models.TextField(blank=True)
    status = models.CharField(
        max_length=8, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Failed sending attempts; after billing.notifications.sending.MAX_ATTEMPTS the row becomes
    # FAILED.
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            # The resend sweep looks for what is still pending.
            models.Index(
                fields=["created_at"], condition=Q(status="pending"), name="pending_notice"
            ),
        ]

    def __str__(self):
        return f"{self.kind} for {self.account_id} ({self.status})"
