"""Included minutes of a period (SPEC U9): what a plan includes, what rolled over, what is used.

The table is still `usage_allowance`: the model moved from the usage app to billing (the plan
decides the allowance, and period close writes it), and its rows did not move.
"""

from django.db import models
from django.db.models import Q

from accounts.models import Account


class Allowance(models.Model):
    """Included seconds of call and chat time for one period of one account (U9)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="allowances")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    included_seconds = models.BigIntegerField()
    rollover_seconds = models.BigIntegerField(default=0)
    used_seconds = models.BigIntegerField(default=0)

    class Meta:
        db_table = "usage_allowance"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "period_start"], name="one_allowance_per_period"
            ),
            models.CheckConstraint(
                condition=Q(used_seconds__gte=0)
                & Q(used_seconds__lte=models.F("included_seconds") + models.F("rollover_seconds")),
                name="allowance_used_within_included",
            ),
        ]

    def __str__(self):
        return f"allowance {self.used_seconds}/{self.total_seconds} s"

    @property
    def total_seconds(self) -> int:
        return self.included_seconds + self.rollover_seconds

    @property
    def remaining_seconds(self) -> int:
        return self.total_seconds - self.used_seconds
