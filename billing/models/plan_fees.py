"""Plan fees (SPEC F1): a recurring fee per period, effective-dated like rates, and each charge.

A fee is charged in advance when a period starts (period close), and a plan change in the
middle of a period prorates it by the second (billing.plans.fees). Every charge is one
`PlanFeeCharge` row: the unique constraint on (account, period start) for the period's fee is
what makes two concurrent period closes charge it once.
"""

from django.db import models
from django.db.models import Q

from accounts.models import Account
from billing.models.invoices import Invoice
from billing.models.plans import Plan
from billing.money import format_usd_exact


class PlanFee(models.Model):
    """A plan's fee per period in micro-dollars, from a moment on (like `Rate`)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="fees")
    amount_micros = models.BigIntegerField(help_text="USD micros per period.")
    effective_from = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "effective_from"], name="one_plan_fee_per_moment"
            ),
            models.CheckConstraint(condition=Q(amount_micros__gte=0), name="plan_fee_not_negative"),
        ]

    def __str__(self):
        fee = format_usd_exact(self.amount_micros)
        return f"{self.plan.code} fee {fee} from {self.effective_from:%Y-%m-%d}"


class FeeChargeKind(models.TextChoices):
    PERIOD = "period", "Fee of a period, in advance"
    CHANGE = "change", "Proration of a plan change"


class FeePaidBy(models.TextChoices):
    CARD = "card", "Saved card (a plan-fee invoice)"
    CREDIT = "credit", "Credit balance"
    INVOICE = "invoice", "Postpaid invoice"


class PlanFeeCharge(models.Model):
    """One fee charged (or, for a plan change, credited when negative) to an account.

    Paid when `paid_at` is set: at once from credit, else when its invoice is paid
    (billing.payments.collection), which also releases the period's included allowance.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="plan_fees")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=FeeChargeKind.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Signed: a proration that credits more of the old fee than it charges of the new is < 0.
    amount_micros = models.BigIntegerField()
    paid_by = models.CharField(max_length=8, choices=FeePaidBy.choices)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="plan_fees"
    )
    # A change to a fee-paying plan in the middle of a period: the new plan's included credit
    # and seconds for the rest of the period, prorated like its fee, granted when it is paid.
    included_credit_micros = models.BigIntegerField(default=0)
    included_seconds = models.BigIntegerField(default=0)
    key = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "period_start"],
                condition=Q(kind="period"),
                name="one_plan_fee_per_period",
            ),
        ]

    def __str__(self):
        return f"{self.kind} fee {self.amount_micros} of {self.account_id} from {self.period_start}"
