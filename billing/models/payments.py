"""Top-ups, refunds to the card, auto-top-up and recurring credit settings (SPEC P1, P2, P4).

Every row here is written before the payment provider is asked to do anything, so the row's key
can be sent to Stripe as the idempotency key and a crash followed by a retry moves money once.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, new_public_id


class TopUpKind(models.TextChoices):
    MANUAL = "manual", "Manual top-up"
    AUTO = "auto", "Auto-top-up"
    RECURRING = "recurring", "Recurring credit"


# Top-ups charged to the saved card off-session (billing.payments.auto_topup's charge task, with its
# decline and authentication handling), not paid by the customer in Checkout.
OFF_SESSION_KINDS = (TopUpKind.AUTO, TopUpKind.RECURRING)


class TopUpStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    REQUIRES_ACTION = "requires_action", "Needs the customer to authenticate"
    SUCCEEDED = "succeeded", "Paid"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    REFUNDED = "refunded", "Refunded"


# Statuses in which the credit was posted to the ledger.
PAID_STATUSES = frozenset({TopUpStatus.SUCCEEDED, TopUpStatus.REFUNDED})


class TopUp(models.Model):
    """One purchase of credit, manual (Checkout or the test-mode page) or automatic (off-session).

    `key` is unique and sent to Stripe as the idempotency key of the call that charges it; for an
    auto-top-up it names the account, the crossing and the attempt, so a crossing charges once.
    The ledger entry that credits it has the idempotency key `topup:<pk>` (`fulfil_topup`).
    """

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="topups")
    kind = models.CharField(max_length=12, choices=TopUpKind.choices)
    status = models.CharField(
        max_length=16, choices=TopUpStatus.choices, default=TopUpStatus.PENDING
    )
    amount_micros = models.BigIntegerField()
    refunded_micros = models.BigIntegerField(
        default=0, help_text="Refunded to the card, including refunds still in progress."
    )
    key = models.CharField(max_length=120, unique=True)
    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    grant = models.ForeignKey(
        "CreditGrant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    entry = models.ForeignKey(
        "LedgerEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_micros__gte=0)
                & Q(refunded_micros__lte=models.F("amount_micros")),
                name="topup_refund_within_amount",
            ),
            # "None while one is pending" (P2), held by the database as well as by the lock.
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(kind="auto", status="pending"),
                name="one_pending_auto_topup",
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.public_id} ({self.status})"

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_public_id("top")
        super().save(*args, **kwargs)

    @property
    def is_paid(self) -> bool:
        return self.status in PAID_STATUSES


class RefundStatus(models.TextChoices):
    PENDING = "pending", "In progress"
    SUCCEEDED = "succeeded", "Refunded"
    FAILED = "failed", "Failed"


class Refund(models.Model):
    """Money given back to the card for (part of) a top-up (P4).

    Written, with the ledger debit that takes the credit back, before Stripe is asked; `key`
    is Stripe's idempotency key. A refund that Stripe refuses puts the credit back.
    """

    topup = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="refunds")
    amount_micros = models.BigIntegerField()
    status = models.CharField(
        max_length=10, choices=RefundStatus.choices, default=RefundStatus.PENDING
    )
    key = models.CharField(max_length=120, unique=True)
    stripe_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    reason = models.TextField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When the provider was last asked; a pending refund asked long ago is asked again.
    attempted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [
            ("refund_topup", "Can refund a top-up to the card"),
            ("credit_back", "Can credit usage back to a balance"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self):
        return f"Refund {self.key} ({self.status})"


class AutoTopUpSettings(models.Model):
    """A customer's auto-top-up and its state between crossings (P2).

    The state fields change only under the account's row lock (`billing.payments.auto_topup`):
    `armed` says the next deduction below the threshold starts a charge; `crossings` numbers those
    charges so each has its own idempotency key.
    """

    account = models.OneToOneField(
        Account, on_delete=models.CASCADE, related_name="auto_topup_settings"
    )
    enabled = models.BooleanField(default=False)
    threshold_micros = models.BigIntegerField()
    amount_micros = models.BigIntegerField(
        null=True, blank=True, help_text="Charge this much each time..."
    )
    target_micros = models.BigIntegerField(
        null=True, blank=True, help_text="...or enough to bring the balance to this."
    )
    monthly_cap_micros = models.BigIntegerField(
        null=True, blank=True, help_text="At most this much auto-top-up per calendar month."
    )
    # State
    armed = models.BooleanField(default=True)
    crossings = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts of this crossing.")
    consecutive_failures = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "auto-top-up settings"
        verbose_name_plural = "auto-top-up settings"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(enabled=True, next_attempt_at__isnull=False),
                name="auto_topup_retry_due",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_micros__isnull=False, target_micros__isnull=True)
                | Q(amount_micros__isnull=True, target_micros__isnull=False),
                name="auto_topup_amount_or_target",
            ),
            models.CheckConstraint(
                condition=Q(threshold_micros__gte=0)
                & (Q(amount_micros__isnull=True) | Q(amount_micros__gt=0))
                & (
                    Q(target_micros__isnull=True)
                    | Q(target_micros__gt=models.F("threshold_micros"))
                )
                & (Q(monthly_cap_micros__isnull=True) | Q(monthly_cap_micros__gt=0)),
                name="auto_topup_amounts_valid",
            ),
        ]

    def __str__(self):
        return f"Auto-top-up of {self.account_id} ({'on' if self.enabled else 'off'})"


class RecurringCreditSettings(models.Model):
    """A customer's recurring purchase of credit: `amount_micros` bought every billing period."""

    account = models.OneToOneField(
        Account, on_delete=models.CASCADE, related_name="recurring_credit_settings"
    )
    enabled = models.BooleanField(default=False)
    amount_micros = models.BigIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "recurring credit settings"
        verbose_name_plural = "recurring credit settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_micros__gt=0), name="recurring_credit_amount_positive"
            ),
        ]

    def __str__(self):
        return f"Recurring credit of {self.account_id} ({'on' if self.enabled else 'off'})"


class RecurringCreditPurchase(models.Model):
    """One billing period's recurring purchase; inserting it claims the period (unique).

    Its attempts are top-ups of kind `recurring` with the key
    `recurring-credit:<account>:<period start>:<attempt>`; `topup` is the latest. The back-off
    fields mirror `AutoTopUpSettings` and are moved by the same decline handling
    (`billing.payments.auto_topup`), under the account's row lock.
    """

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="recurring_credit_purchases"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    amount_micros = models.BigIntegerField()
    topup = models.ForeignKey(
        TopUp, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_start", "-pk"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(next_attempt_at__isnull=False),
                name="recurring_credit_retry_due",
            ),
        ]
        constraints = [
            # The idempotency claim: one purchase per account and period, however often or
            # concurrently the job runs.
            models.UniqueConstraint(
                fields=["account", "period_start"], name="one_recurring_credit_per_period"
            ),
            models.CheckConstraint(
                condition=Q(amount_micros__gt=0), name="recurring_purchase_amount_positive"
            ),
        ]

    def __str__(self):
        return f"Recurring credit of {self.account_id} for {self.period_start:%Y-%m-%d}"
