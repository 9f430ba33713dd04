"""Who a document is from and to, and the receipts of payments (SPEC I1, P1, P2, P5).

Invoices and receipts keep a snapshot of both parties as they were when the document was issued
(`seller_details`, `customer_details`): a customer who moves, or an operator who changes its
address, never rewrites a document already sent.
"""

from django.db import models
from django.db.models import Q

from accounts.models import Account
from billing.models.invoices import InvoicePayment
from billing.models.payments import TopUp


class BillingDetails(models.Model):
    """The customer's legal identity on its documents, edited on the Billing page."""

    account = models.OneToOneField(
        Account, on_delete=models.CASCADE, related_name="billing_details"
    )
    legal_name = models.CharField(max_length=200, blank=True)
    address = models.TextField(max_length=500, blank=True, help_text="One line per line.")
    country = models.CharField(max_length=100, blank=True)
    tax_id = models.CharField(max_length=50, blank=True)
    updated_at = models.DateTimeField()

    def __str__(self):
        return self.legal_name or str(self.account)


class ReceiptNumberSequence(models.Model):
    """The last receipt number of a series, locked while numbers are handed out (gapless)."""

    series = models.CharField(max_length=20, unique=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.series}: {self.last_number}"


class Receipt(models.Model):
    """Proof of one payment by card: a top-up (manual or automatic) or an invoice payment.

    One receipt per payment, claimed by the unique one-to-one fields; numbered in the
    transaction that records the payment, so a rolled-back payment takes no number.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="receipts")
    number = models.CharField(max_length=30, unique=True)
    topup = models.OneToOneField(
        TopUp, null=True, blank=True, on_delete=models.PROTECT, related_name="receipt"
    )
    invoice_payment = models.OneToOneField(
        InvoicePayment, null=True, blank=True, on_delete=models.PROTECT, related_name="receipt"
    )
    description = models.CharField(max_length=200)
    amount_micros = models.BigIntegerField()
    paid_at = models.DateTimeField()
    seller_details = models.JSONField(default=dict)
    customer_details = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-paid_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(topup__isnull=False) & Q(invoice_payment__isnull=True))
                | (Q(topup__isnull=True) & Q(invoice_payment__isnull=False)),
                name="receipt_for_one_payment",
            ),
            models.CheckConstraint(
                condition=Q(amount_micros__gt=0), name="receipt_amount_positive"
            ),
        ]

    def __str__(self):
        return self.number
