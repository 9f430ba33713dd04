"""Staff actions: the audit trail and refunds waiting for a second approval (SPEC P4, S1, L2)."""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from accounts.models import Account, ApiKey


class StaffAction(models.TextChoices):
    CREDIT_BACK = "credit_back", "Credit-back refund"
    REFUND_TOPUP = "refund_topup", "Money refund of a top-up"
    GRANT_CREDIT = "grant_credit", "Manual credit grant"
    ADJUST_BALANCE = "adjust_balance", "Manual adjustment"
    CHANGE_PLAN = "change_plan", "Plan change"
    REQUEST_APPROVAL = "request_approval", "Refund sent for approval"
    APPROVE_REFUND = "approve_refund", "Refund approved"
    REJECT_REFUND = "reject_refund", "Refund rejected"
    VOID_INVOICE = "void_invoice", "Invoice voided"
    MARK_UNCOLLECTIBLE = "mark_uncollectible", "Invoice marked uncollectible"
    RESEND_INVOICE = "resend_invoice", "Invoice email sent again"
    REPRICE_PAST = "reprice_past", "Price added from a past moment"
    APPROVE_ALLOWANCE = "approve_allowance", "Subaccount allowance approved"
    REFUND_CALL = "refund_call", "Refund of a call"
    SELF_SERVE_PLAN = "self_serve_plan", "Plan change by the customer"
    REFUND_EVENT = "refund_event", "Refund of an event"


class AuditRecord(models.Model):
    """Who did what to which account, when, why, and what changed. Never edited or deleted:
    the model refuses it and on PostgreSQL a trigger (migration) refuses it in the database."""

    # A staff user, or the operator's platform key when its API did the action (issue 15):
    # exactly one of the two.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=20, choices=StaffAction.choices)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_records"
    )
    target_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    target_id = models.CharField(max_length=64, blank=True)
    reason = models.TextField()
    # Staff's own words about the action; never shown to the customer (the reason may be).
    note = models.TextField(blank=True, default="")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    # The form's one-time token: a double submission is one action and one record.
    idempotency_key = models.CharField(max_length=120, unique=True)

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(actor__isnull=False, actor_key__isnull=True)
                | models.Q(actor__isnull=True, actor_key__isnull=False),
                name="auditrecord_one_actor",
            ),
        ]
        permissions = [
            ("grant_credit", "Can grant credit"),
            ("adjust_balance", "Can adjust a balance"),
            # Not "change_plan": that is the built-in permission to edit Plan rows.
            ("move_account_plan", "Can move an account to another plan"),
            ("approve_refund", "Can approve a large refund"),
            ("approve_allowance", "Can release a subaccount's included allowance"),
            ("void_invoice", "Can void or write off invoices"),
            ("view_reconciliation", "Can see the reconciliation page"),
        ]

    def __str__(self):
        if self.actor_id is None:
            who = f"platform key {self.actor_key_id}"
        else:
            who = self.actor.name or self.actor.email
        return f"{self.get_action_display()} by {who} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit records cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit records cannot be deleted.")


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved and carried out"
    REJECTED = "rejected", "Rejected"


class RefundApproval(models.Model):
    """A refund above the approval threshold, waiting for a second staff member (P4)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=20, choices=StaffAction.choices)
    amount_micros = models.BigIntegerField()
    topup = models.ForeignKey(
        "billing.TopUp", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField()
    note = models.TextField(blank=True, default="")
    # What a refund of usage refunds (a call's pk); a top-up refund names its top-up above.
    target_id = models.CharField(max_length=64, blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    key = models.CharField(max_length=120, unique=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self):
        return f"{self.get_action_display()} of {self.amount_micros} ({self.status})"
