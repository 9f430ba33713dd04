"""What has been charged but not yet invoiced or stated (SPEC I1-I3)."""

from django.db import models

from accounts.models import Account


class UnbilledLine(models.Model):
    """Usage charged since the account's last invoice or statement, by line.

    Rating adds to these rows in the same transaction as the charge; invoicing moves them into
    invoice lines and deletes them under the account lock. Their sum is
    `Account.unbilled_micros`, which the threshold sweep reads (I2).

    `component` is a rate component (call, llm, voice_engine, destination, chat, sms,
    input_tokens, output_tokens, commission) or one of: uncollected (prepaid usage the balance
    could not cover, negative), credits_applied (postpaid usage paid by credit grants, negative),
    refunds (credit-backs of calls: all of it on a prepaid statement, on a postpaid invoice the
    part that repaid debt not yet invoiced; negative), carried_forward (an amount under the
    minimum charge carried from an earlier invoice, I4). See docs/billing-rules.md.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="unbilled_lines")
    component = models.CharField(max_length=20)
    provider = models.CharField(max_length=50, blank=True, default="")
    model = models.CharField(max_length=100, blank=True, default="")
    items = models.BigIntegerField(default=0)
    quantity = models.BigIntegerField(default=0, help_text="Seconds, messages, tokens, requests.")
    amount_micros = models.BigIntegerField(default=0)
    savings_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "component", "provider", "model"], name="one_unbilled_line"
            ),
        ]

    def __str__(self):
        return f"{self.component} {self.model}: {self.amount_micros}"


class InvoiceKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    STATEMENT = "statement", "Statement"


class InvoiceReason(models.TextChoices):
    THRESHOLD = "threshold", "Billing threshold reached"
    PERIOD = "period", "End of period"
    PLAN_FEE = "plan_fee", "Plan fee"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    VOID = "void", "Void"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"


# The only status changes an invoice may make (I1).
ALLOWED_TRANSITIONS = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN, InvoiceStatus.VOID}),
    InvoiceStatus.OPEN: frozenset(
        {InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}
    ),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
}


class InvoiceNumberSequence(models.Model):
    """The last invoice number of a year, locked while numbers are handed out (gapless)."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.year}: {self.last_number}"


class Invoice(models.Model):
    """An invoice (postpaid) or a statement (prepaid) with its lines (SPEC I1).

    `total_micros` is the exact sum of the lines; `amount_due_micros` is that total rounded
    half-up to whole cents, once, and `rounding_micros` shows the difference.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    kind = models.CharField(max_length=10, choices=InvoiceKind.choices)
    reason = models.CharField(max_length=10, choices=InvoiceReason.choices)
    status = models.CharField(
        max_length=14, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Claimed by insert: one invoice per account and period, or per threshold crossing.
    idempotency_key = models.CharField(max_length=120, unique=True)
    subtotal_micros = models.BigIntegerField(default=0, help_text="Usage before adjustments.")
    total_micros = models.BigIntegerField(default=0)
    amount_due_micros = models.BigIntegerField(default=0)
    rounding_micros = models.BigIntegerField(default=0)
    amount_paid_micros = models.BigIntegerField(default=0)
    opening_balance_micros = models.BigIntegerField(null=True, blank=True)
    closing_balance_micros = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    issued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.TextField(blank=True)
    # Both parties as they were when the invoice was issued (billing.invoicing.parties).
    seller_details = models.JSONField(default=dict, blank=True)
    customer_details = models.JSONField(default=dict, blank=True)
    # Dunning (P5)
    payment_attempts = models.PositiveSmallIntegerField(default=0)
    next_payment_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(
                fields=["next_payment_attempt_at"],
                condition=models.Q(status="open"),
                name="invoice_collectable",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_due_micros__gte=0), name="invoice_due_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(status="draft") | models.Q(number__isnull=False),
                name="issued_invoice_has_number",
            ),
        ]

    def __str__(self):
        return self.number or f"draft {self.kind} {self.pk}"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    component = models.CharField(max_length=20)
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=100, blank=True)
    description = models.CharField(max_length=200)
    items = models.BigIntegerField(default=0)
    quantity = models.BigIntegerField(default=0)
    unit = models.CharField(max_length=10, blank=True)
    amount_micros = models.BigIntegerField()
    savings_micros = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="one_line_per_position"),
        ]

    def __str__(self):
        return f"{self.description}: {self.amount_micros}"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REQUIRES_ACTION = "requires_action", "Requires action"


class InvoicePayment(models.Model):
    """One attempt to collect an invoice, recorded as pending before the gateway is called."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    attempt = models.PositiveSmallIntegerField()
    idempotency_key = models.CharField(max_length=120, unique=True)
    amount_micros = models.BigIntegerField()
    status = models.CharField(
        max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    gateway_reference = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "attempt"], name="one_payment_per_attempt"),
        ]

    def __str__(self):
        return f"{self.invoice} attempt {self.attempt}: {self.status}"
