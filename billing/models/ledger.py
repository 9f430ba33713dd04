"""The append-only credit ledger and credit grants (SPEC L1-L5).

Entries are never updated or deleted: the model refuses it and, on PostgreSQL, a trigger added
by migration 0002 refuses it in the database too. Corrections are new entries.
"""

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account


class EntryKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    AUTO_TOPUP = "auto_topup", "Auto-top-up"
    # The value is short: statement lines name it in a 20-character component, "ledger:<kind>".
    RECURRING_TOPUP = "recurring", "Recurring credit"
    SIGNUP_CREDIT = "signup_credit", "Signup credit"
    PROMOTIONAL = "promotional", "Promotional grant"
    ALLOWANCE = "allowance", "Included credit"
    USAGE = "usage", "Usage"
    COMMISSION = "commission", "Commission"
    REFUND = "refund", "Refund (credit back)"
    TOPUP_REFUND = "topup_refund", "Top-up refunded to card"
    ADJUSTMENT = "adjustment", "Adjustment"
    INVOICE_PAYMENT = "invoice_payment", "Invoice payment"
    EXPIRY = "expiry", "Expired credit"
    PLAN_FEE = "plan_fee", "Plan fee"


# Kinds whose positive amount becomes a credit grant the account can spend.
CREDIT_KINDS = frozenset(
    {
        EntryKind.TOPUP,
        EntryKind.AUTO_TOPUP,
        EntryKind.RECURRING_TOPUP,
        EntryKind.SIGNUP_CREDIT,
        EntryKind.PROMOTIONAL,
        EntryKind.ALLOWANCE,
        EntryKind.REFUND,
        EntryKind.ADJUSTMENT,
        EntryKind.INVOICE_PAYMENT,
    }
)


class AppendOnlyError(Exception):
    """Ledger rows are immutable; write a correcting entry instead."""


class LedgerEntry(models.Model):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount_micros = models.BigIntegerField(help_text="Signed: credits positive, debits negative.")
    balance_after_micros = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # What caused the entry: a call, an event batch, a payment, an invoice...
    cause_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cause_id = models.CharField(max_length=64, blank=True, default="")
    cause = GenericForeignKey("cause_type", "cause_id")
    grant = models.ForeignKey(
        "CreditGrant", null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    description = models.CharField(max_length=200, blank=True)
    # Claimed by insert: a second posting with the same key conflicts and posts nothing.
    idempotency_key = models.CharField(max_length=120, null=True, blank=True, unique=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["cause_type", "cause_id"]),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(amount_micros=0), name="entry_amount_not_zero"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.amount_micros} on {self.account_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Ledger entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Ledger entries cannot be deleted.")


class CreditGrant(models.Model):
    """Spendable credit from one source, consumed earliest-expiring, highest-priority first (L5).

    For a prepaid account the sum of `remaining_micros` equals the balance whenever it is
    positive; `billing.ledger` keeps both in step under the account's row lock.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credit_grants")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount_micros = models.BigIntegerField()
    remaining_micros = models.BigIntegerField()
    priority = models.SmallIntegerField(default=0, help_text="Higher is spent first.")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["account", "expires_at"],
                condition=Q(remaining_micros__gt=0),
                name="grant_spendable",
            ),
            models.Index(
                fields=["expires_at"], condition=Q(remaining_micros__gt=0), name="grant_expiring"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining_micros__gte=0)
                & Q(remaining_micros__lte=models.F("amount_micros")),
                name="grant_remaining_within_amount",
            ),
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="grant_amount_positive"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.remaining_micros}/{self.amount_micros}"


def cause_fields(cause: models.Model | None) -> dict:
    """Return the generic-link fields that point an entry at its cause."""
    if cause is None:
        return {"cause_type": None, "cause_id": ""}
    return {"cause_type": ContentType.objects.get_for_model(cause), "cause_id": str(cause.pk)}


class LedgerCheck(models.Model):
    """One run of the ledger invariant check (SPEC L3): when, and how many accounts drifted.

    Kept so that monitoring can alert on drift, and on a check that stopped running, without
    repeating the check (docs/operations.md, metrics).
    """

    checked_at = models.DateTimeField(db_index=True)
    accounts_checked = models.PositiveIntegerField()
    drift_accounts = models.PositiveIntegerField()

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self):
        return f"ledger check {self.checked_at:%Y-%m-%d %H:%M}: {self.drift_accounts} drift"
