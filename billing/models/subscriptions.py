"""An account's subscription to a plan and its current period (SPEC S2)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from billing.models.plans import Plan


class AllowanceUnlock(models.TextChoices):
    """Why a locked included allowance was released (billing.plans.allowances.unlock_allowance)."""

    STAFF_APPROVAL = "staff_approval", "Approved by staff"
    PLAN_FEE_PAID = "plan_fee_paid", "Plan fee paid"


class Subscription(models.Model):
    """One per account. Periods are monthly from the anchor day, half-open [start, end).

    `current_period_end` is indexed so that period close finds due accounts in one query.
    """

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    anchor_day = models.PositiveSmallIntegerField(
        help_text="Day of month the period starts (clamped to the month's last day)."
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField(db_index=True)
    rollover_enabled = models.BooleanField(
        default=False, help_text="Unused included allowance is added to the next period (U9)."
    )
    # A plan change staff scheduled for the next period (S2).
    pending_plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Included minutes and credit of a subaccount a customer opened wait for staff approval
    # or a paid plan fee: while locked, the period starts with none of either (usage is paid
    # usage), and period close grants no included credit. One home for what it means:
    # billing.plans.allowances (period_included_seconds, period_included_credit_micros).
    allowance_locked = models.BooleanField(default=False)
    allowance_unlocked_at = models.DateTimeField(null=True, blank=True)
    allowance_unlock_reason = models.CharField(
        max_length=16, choices=AllowanceUnlock.choices, blank=True, default=""
    )
    # The moment the last invoice or statement was cut; the next one covers ledger entries
    # from here on, so every entry is stated exactly once.
    last_closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(anchor_day__gte=1) & Q(anchor_day__lte=31), name="anchor_day_in_month"
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="period_ends_after_it_starts",
            ),
        ]

    def __str__(self):
        return f"{self.account} on {self.plan.code}"
