"""Monthly spending budgets set by the customer, per account or per API key (SPEC G4).

What a budget measures is in docs/billing-rules.md ("Budgets"): the account's spend in the
current billing period. A key budget applies that limit to one key only.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, ApiKey


class Budget(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="budgets")
    api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
        help_text="Empty: the budget applies to every key of the account.",
    )
    name = models.CharField(max_length=100)
    amount_micros = models.BigIntegerField(help_text="Spend per billing period (micros).")
    hard = models.BooleanField(
        default=False,
        help_text="Hard: billable usage is refused (402) once reached. Soft: an email only.",
    )
    # Start of the billing period in which the spend reached the amount. Equal to the current
    # period's start means reached now: a hard budget refuses, and its email was sent.
    reached_period_start = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["account", "reached_period_start"],
                condition=Q(hard=True),
                name="hard_budget_reached",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="budget_amount_positive"),
        ]

    def __str__(self):
        return self.name
