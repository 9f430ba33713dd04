"""An account's alert thresholds, the state of its alerts and its email choices (SPEC N1-N3, D3).

One row per account, created on first need (`billing.alerts.balance.alert_settings_for`). The armed
flags and counters change only under the account's row lock, in the transaction that moved the
balance or recorded the usage, so concurrent deductions see one crossing between them.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account


class AlertSettings(models.Model):
    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="alert_settings")
    # Low balance (N1). Empty means the plan's default (20 USD on voice-prepaid, 5 on llm-api).
    low_balance_threshold_micros = models.BigIntegerField(
        null=True, blank=True, help_text="Email when a deduction leaves less than this (micros)."
    )
    # Armed: the next deduction below the threshold (or to zero) sends the email. Disarmed by
    # that email; armed again only when the balance is back at or above the threshold (above
    # zero for the zero-balance email), so a balance hovering around it sends one email.
    low_balance_armed = models.BooleanField(default=True)
    zero_balance_armed = models.BooleanField(default=True)
    # How many times each alert fired: the crossing number is part of the notification key.
    low_balance_crossings = models.PositiveIntegerField(default=0)
    zero_balance_crossings = models.PositiveIntegerField(default=0)

    # Allowance alerts (N2): the period last looked at and the highest level emailed in it.
    allowance_period_start = models.DateTimeField(null=True, blank=True)
    allowance_alerted_percent = models.PositiveSmallIntegerField(default=0)

    # Kept by usage.spending.budgets, so that usage of accounts without budgets never looks for
    # them.
    has_budgets = models.BooleanField(default=False)

    # Which optional emails the billing contacts receive. Emails about money that could not be
    # taken (a failed invoice payment or auto-top-up, a card that needs authentication) and
    # budgets the customer set are always sent.
    email_low_balance = models.BooleanField("Low balance", default=True)
    email_zero_balance = models.BooleanField("Out of credit", default=True)
    email_allowance = models.BooleanField("Included allowance 80% and 100% used", default=True)
    email_invoices = models.BooleanField("Invoice issued and paid", default=True)
    email_receipts = models.BooleanField("Top-up and auto-top-up receipts", default=True)

    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "alert settings"
        verbose_name_plural = "alert settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(low_balance_threshold_micros__isnull=True)
                | Q(low_balance_threshold_micros__gte=0),
                name="alert_threshold_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(allowance_alerted_percent__lte=100),
                name="allowance_alert_is_a_percentage",
            ),
        ]

    def __str__(self):
        return f"alert settings of {self.account_id}"
