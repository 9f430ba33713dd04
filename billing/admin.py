"""Staff's view of plans, prices, the ledger, invoices, payments and the audit trail.

Money records are read-only here: ledger entries, grants, audit records, payments, refunds and
notifications can be looked at, never edited or deleted. Plans are editable, but rates and model
prices only gain new effective-dated rows: a price that has taken effect cannot be changed, so
editing a plan never changes past charges (SPEC S1).
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BigIntegerField, Count, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from djstripe.models import PaymentIntent

from billing import staff
from billing.ledger.drift import ledger_drift
from billing.models import (
    ApprovalStatus,
    AuditRecord,
    CreditGrant,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoicePayment,
    InvoiceStatus,
    LedgerEntry,
    ModelPrice,
    Notification,
    PaymentMethod,
    Plan,
    PlanFee,
    Rate,
    RefundApproval,
    TopUp,
)
from billing.models.payments import PAID_STATUSES, Refund
from billing.money import MoneyError, cents_to_micros, format_usd, format_usd_exact, usd_to_micros
from billing.payments.refunds import refundable_micros
from billing.plans.fees import plan_fee_micros
from billing.staff.approval_requests import APPROVE_PERMISSION


def in_dollars(field: str, label: str = ""):
    """An admin list column or detail field showing a micro-dollar field as people read it.

    Exact, with the decimals the amount needs ('$31.00', '$0.124'): staff refund and correct
    amounts, so admin never rounds a sub-cent amount away as the customer's cents do.
    """

    def column(obj):
        value = getattr(obj, field)
        return "-" if value is None else format_usd_exact(value)

    column.__name__ = f"{field.removesuffix('_micros')}_usd"
    column.short_description = label or field.removesuffix("_micros").replace("_", " ").capitalize()
    column.admin_order_field = field
    return column


class ReadOnlyAdmin(admin.ModelAdmin):
    """Look, never touch."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Plans and prices ----------------------------------------------------------------------------


class PastPriceConfirmation(forms.ModelForm):
    """A rate or model price form that refuses a past `effective_from` unless confirmed (S1),
    and a destination rate whose prefix is not in E.164.

    The rule and its message live in `billing.staff.prices`; the admin records the confirmation
    in the audit trail when it saves the price (`PastPriceAudit`).
    """

    confirm_past_effective = forms.BooleanField(
        required=False,
        label="I confirm re-pricing usage from this moment",
        help_text="Needed only for a moment in the past: usage of that window reported from now "
        "on is priced at this price; usage already charged keeps its price.",
    )

    def clean(self):
        cleaned = super().clean()
        problem = staff.past_price_problem(
            effective_from=cleaned.get("effective_from"),
            now=timezone.now(),
            confirmed=cleaned.get("confirm_past_effective", False),
        )
        if problem:
            self.add_error("effective_from", problem)
        if "key" in self.fields and (
            problem := staff.rate_key_problem(
                component=cleaned.get("component"), key=cleaned.get("key", "")
            )
        ):
            self.add_error("key", problem)
        return cleaned


class PastPriceAudit:
    """Write the audit record of a price saved with a confirmed past moment, in the admin's
    transaction (the admin's add and change views run in one)."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        staff.record_past_price(price=obj, actor=request.user, now=timezone.now())


class RateInline(admin.TabularInline):
    """New rates can be added with a date they take effect; existing ones are history."""

    model = Rate
    form = PastPriceConfirmation
    fk_name = "plan"
    extra = 1
    can_delete = False
    fields = ["component", "key", "price", "effective_from", "confirm_past_effective"]

    def has_change_permission(self, request, obj=None):
        return False


class PlanFeeForm(forms.ModelForm):
    """A plan fee typed in dollars ("45" or "45.00"); stored in micro-dollars (SPEC F1)."""

    amount_usd = forms.CharField(label="Fee per period (USD)", max_length=20)

    class Meta:
        model = PlanFee
        fields = ["effective_from"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["amount_usd"].initial = format_usd_exact(self.instance.amount_micros)

    def clean_amount_usd(self):
        try:
            micros = usd_to_micros(self.cleaned_data["amount_usd"].strip().lstrip("$"))
        except MoneyError:
            raise forms.ValidationError("Enter an amount in USD, such as 45 or 45.00.") from None
        if micros < 0:
            raise forms.ValidationError("A fee cannot be negative.")
        return micros

    def save(self, commit=True):
        self.instance.amount_micros = self.cleaned_data["amount_usd"]
        return super().save(commit=commit)


class PlanFeeInline(admin.TabularInline):
    """Fees, like rates, change by a new row from a date; a fee already charged is history
    (fees are charged when a period starts, so a new one applies from the next period)."""

    model = PlanFee
    form = PlanFeeForm
    extra = 1
    can_delete = False
    fields = ["amount_usd", "effective_from"]

    # The column of the rows already saved (read-only), in dollars like the new row's field.
    @admin.display(description="Fee per period (USD)")
    def amount_usd(self, fee):
        return format_usd_exact(fee.amount_micros)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "billing_mode",
        "rounding",
        "minute_aggregation",
        "selectable_at_signup",
        "selectable_for_subaccount",
        "selectable_for_change",
        "fee_now",
    ]
    search_fields = ["code", "name"]
    inlines = [PlanFeeInline, RateInline]

    @admin.display(description="Fee per period now")
    def fee_now(self, plan):
        fee = plan_fee_micros(plan=plan, at=timezone.now())
        return format_usd(fee) if fee else "-"

    def has_delete_permission(self, request, obj=None):
        return False

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for rate in formset.new_objects:
            staff.record_past_price(price=rate, actor=request.user, now=timezone.now())


@admin.register(Rate)
class RateAdmin(PastPriceAudit, admin.ModelAdmin):
    form = PastPriceConfirmation
    list_display = ["__str__", "plan", "account", "component", "key", "price", "effective_from"]
    list_filter = ["component", "plan"]
    search_fields = ["key", "account__name", "account__public_id"]
    raw_id_fields = ["account"]

    # A rate can be corrected or withdrawn only before it takes effect. The model permission
    # is asked first: without it, any staff member (even in no group) could edit future rates.
    def has_change_permission(self, request, obj=None):
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or obj.effective_from > timezone.now()

    def has_delete_permission(self, request, obj=None):
        if not super().has_delete_permission(request, obj):
            return False
        return obj is not None and obj.effective_from > timezone.now()


@admin.register(ModelPrice)
class ModelPriceAdmin(RateAdmin):
    list_display = [
        "provider",
        "model",
        "kind",
        "input_per_million",
        "output_per_million",
        "effective_from",
    ]
    list_filter = ["provider", "kind"]
    search_fields = ["provider", "model"]
    raw_id_fields = []


# The ledger ------------------------------------------------------------------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "kind", "amount", "balance_after", "description"]
    list_filter = ["kind"]
    search_fields = ["account__public_id", "account__name", "idempotency_key", "description"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"

    @admin.display(ordering="amount_micros")
    def amount(self, obj):
        return format_usd(obj.amount_micros, places=6)

    @admin.display(ordering="balance_after_micros")
    def balance_after(self, obj):
        return format_usd(obj.balance_after_micros, places=6)


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    list_display = [
        "account",
        "kind",
        in_dollars("amount_micros"),
        in_dollars("remaining_micros"),
        "priority",
        "expires_at",
    ]
    exclude = ["amount_micros", "remaining_micros"]
    readonly_fields = list_display[2:4]
    list_filter = ["kind"]
    search_fields = ["account__public_id", "account__name"]


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    # actor_key: the platform key, when the operator's platform did it through the API.
    list_display = ["at", "staff_member", "action", "account", "reason", "changes"]
    list_filter = ["action"]
    search_fields = ["account__public_id", "account__name", "actor__email", "reason"]
    list_select_related = ["actor", "actor_key", "account"]
    # before and after are shown as readable changes, not as their JSON.
    exclude = ["before", "after"]
    readonly_fields = ["staff_member", "changes"]

    @admin.display(description="staff member", ordering="actor__email")
    def staff_member(self, obj):
        if obj.actor is None:
            return f"Platform key {obj.actor_key}"
        return f"{obj.actor.name} ({obj.actor.email})" if obj.actor.name else obj.actor.email

    @admin.display(description="before → after")
    def changes(self, obj):
        return (
            format_html_join(format_html("<br>"), "{}: {} → {}", staff.readable_changes(obj)) or "-"
        )

    def get_urls(self):
        return [
            path(
                "reconciliation/",
                self.admin_site.admin_view(reconciliation_view),
                name="billing_reconciliation",
            ),
            *super().get_urls(),
        ]


# Invoices ----------------------------------------------------------------------------------------


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ["position", "description", "quantity", "unit", "amount_micros"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class InvoicePaymentInline(InvoiceLineInline):
    model = InvoicePayment
    fields = ["attempt", "status", "amount_micros", "gateway_reference", "error", "created_at"]
    readonly_fields = fields


class InvoiceActionForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["token"] = uuid.uuid4().hex


# action -> (label, service, the permission the page needs; the service checks it too)
INVOICE_ACTIONS = {
    "void": ("Void (forgive with a reversing credit)", staff.void_invoice, "billing.void_invoice"),
    "uncollectible": ("Mark uncollectible", staff.mark_uncollectible, "billing.void_invoice"),
    "resend": ("Send the email again", staff.resend_invoice, "billing.view_invoice"),
}


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "account", "kind", "reason", "status", "total", "created_at"]
    list_filter = ["kind", "status", "reason"]
    search_fields = ["number", "account__public_id", "account__name"]
    list_select_related = ["account"]
    inlines = [InvoiceLineInline, InvoicePaymentInline]
    readonly_fields = [
        "number",
        "account",
        "kind",
        "reason",
        "status",
        "period_start",
        "period_end",
        "subtotal_micros",
        "total_micros",
        "amount_due_micros",
        "rounding_micros",
        "amount_paid_micros",
        "opening_balance_micros",
        "closing_balance_micros",
        "issued_at",
        "paid_at",
        "voided_at",
        "status_reason",
        "payment_attempts",
        "next_payment_attempt_at",
        # Not "actions": that name is ModelAdmin's list of changelist actions (a tuple), so
        # the change page crashed calling it.
        "staff_links",
    ]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(ordering="total_micros")
    def total(self, obj):
        return format_usd(obj.total_micros, places=6)

    @admin.display(description="actions")
    def staff_links(self, obj):
        links = [
            (reverse("admin:billing_invoice_pdf", args=[obj.pk]), "Download PDF"),
            *(
                (reverse("admin:billing_invoice_action", args=[obj.pk, name]), label)
                for name, (label, _, _) in INVOICE_ACTIONS.items()
            ),
        ]
        return format_html(
            " · ".join(['<a href="{}">{}</a>'] * len(links)),
            *[item for link in links for item in link],
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="billing_invoice_pdf",
            ),
            path(
                "<int:pk>/act/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="billing_invoice_action",
            ),
            *super().get_urls(),
        ]

    def pdf_view(self, request, pk):
        # Imported here: fpdf and its fonts cost every web and worker process about 25 MB,
        # and only this page and the customer's PDF view need them.
        from billing.invoicing.pdf import render_invoice_pdf

        invoice = get_object_or_404(Invoice, pk=pk)
        # admin_view only asks for is_staff; the invoice's own permission decides.
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied("You cannot see this invoice.")
        response = HttpResponse(render_invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response

    def action_view(self, request, pk, action):
        invoice = get_object_or_404(Invoice, pk=pk)
        if action not in INVOICE_ACTIONS:
            raise PermissionDenied("No such action.")
        label, service, permission = INVOICE_ACTIONS[action]
        # admin_view only asks for is_staff: refuse the page itself, not just the submission.
        if not self.has_view_permission(request, invoice) or not request.user.has_perm(permission):
            raise PermissionDenied(f"You lack the permission {permission}.")
        form = InvoiceActionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            kwargs = {
                "invoice": invoice,
                "actor": request.user,
                "key": f"{invoice.pk}:{form.cleaned_data['token']}",
                "now": timezone.now(),
            }
            if action != "resend":
                kwargs["reason"] = form.cleaned_data["reason"]
            try:
                outcome = service(**kwargs)
            except (staff.StaffActionError, PermissionDenied) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, outcome.message)
                return redirect("admin:billing_invoice_change", invoice.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label}: {invoice.number}",
            "form": form,
            "invoice": invoice,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/invoice_action.html", context)


# Payments, approvals, notifications ----------------------------------------------------------


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        "kind",
        in_dollars("amount_micros"),
        in_dollars("refunded_micros"),
        "status",
    ]
    exclude = ["amount_micros", "refunded_micros"]
    readonly_fields = [*list_display[3:5], "refund"]
    list_filter = ["kind", "status"]
    search_fields = ["account__public_id", "account__name", "public_id"]
    list_select_related = ["account", "grant"]

    @admin.display(description="Refund to the card")
    def refund(self, obj):
        left = refundable_micros(obj)
        if not left:
            return "-"
        url = reverse("admin:account_staff_action", args=[obj.account_id, "refund-topup"])
        return format_html(
            '<a href="{}?topup={}">Refund</a> (up to {})', url, obj.pk, format_usd_exact(left)
        )


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "topup", in_dollars("amount_micros"), "status", "actor"]
    exclude = ["amount_micros"]
    readonly_fields = list_display[2:3]
    list_filter = ["status"]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["account", "brand", "last4", "is_default", "removed_at"]
    search_fields = ["account__public_id", "gateway_id"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "kind", "status", "sent_at"]
    list_filter = ["kind", "status"]
    search_fields = ["account__public_id", "key"]


class ApprovalForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(RefundApproval)
class RefundApprovalAdmin(ReadOnlyAdmin):
    list_display = [
        "requested_at",
        "account",
        "action",
        in_dollars("amount_micros"),
        "requested_by",
        "status",
    ]
    exclude = ["amount_micros"]
    readonly_fields = list_display[3:4]
    list_filter = ["status", "action"]

    def get_list_display(self, request):
        """The last column says what this staff member can do with each request: decide it, or
        (their own) only wait for someone else to."""
        may_decide = request.user.has_perm(APPROVE_PERMISSION)

        @admin.display(description="")
        def decide(obj):
            if obj.status != ApprovalStatus.PENDING:
                return "-"
            if obj.requested_by_id == request.user.pk:
                return "Yours: waiting for another staff member"
            if not may_decide:
                return "Waiting"
            return format_html(
                '<a href="{}">Decide</a>', reverse("admin:billing_approval_decide", args=[obj.pk])
            )

        return [*self.list_display, decide]

    def get_urls(self):
        return [
            path(
                "<int:pk>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="billing_approval_decide",
            ),
            *super().get_urls(),
        ]

    def decide_view(self, request, pk):
        approval = get_object_or_404(RefundApproval, pk=pk)
        own = approval.requested_by_id == request.user.pk
        # admin_view only asks for is_staff: only approvers, and the requester (to follow their
        # request, never to decide it), may open the page.
        if not own and not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied(f"You lack the permission {APPROVE_PERMISSION}.")
        # An approver's second click on a decided request is answered by the service ("already
        # decided"); the page offers the form only while the request waits.
        form = None if own else ApprovalForm(request.POST or None)
        if form is not None and request.method == "POST" and form.is_valid():
            try:
                outcome = staff.decide_approval(
                    approval=approval,
                    approve=form.cleaned_data["decision"] == "approve",
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                    now=timezone.now(),
                )
            except (staff.StaffActionError, PermissionDenied) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, outcome.message)
                return redirect("admin:billing_refundapproval_changelist")
        amount = format_usd_exact(approval.amount_micros)
        context = {
            **self.admin_site.each_context(request),
            "title": (
                f"Your request: {amount} for {approval.account.name}"
                if own
                else f"Approve {amount} for {approval.account.name}"
            ),
            "form": form,
            "own": own,
            "approval": approval,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/approval_decide.html", context)


# Reconciliation ------------------------------------------------------------------------------


def reconciliation_view(request):
    """Finance's page: balances against the ledger, top-ups against Stripe, unpaid invoices."""
    if not request.user.has_perm("billing.view_reconciliation"):
        raise PermissionDenied("You lack the permission billing.view_reconciliation.")
    paid_topups = TopUp.objects.filter(status__in=PAID_STATUSES)
    # The test-mode payment page records "test_pi_..." references
    # (billing.payments.simulated.complete_test_topup), which Stripe never sees: they are test mode,
    # not payments missing from the mirror.
    test_mode = Q(payment_intent_id__isnull=True) | Q(payment_intent_id__startswith="test_")
    # Paid through Stripe but unknown to the Stripe mirror: a webhook or sync went missing.
    # dj-stripe 2.11 keeps a PaymentIntent's fields in `stripe_data` only (no `status` column).
    topups_without_stripe = paid_topups.exclude(test_mode).exclude(
        payment_intent_id__in=PaymentIntent.objects.filter(stripe_data__status="succeeded").values(
            "id"
        )
    )
    open_invoices = Invoice.objects.filter(
        kind=InvoiceKind.INVOICE, status=InvoiceStatus.OPEN
    ).select_related("account")
    context = {
        **admin.site.each_context(request),
        "title": "Reconciliation",
        "drift": ledger_drift(),
        "topup_totals": paid_topups.aggregate(count=Count("pk"), total=Sum("amount_micros")),
        "test_mode_topups": paid_topups.filter(test_mode).count(),
        "stripe_totals": _stripe_totals(),
        "topups_without_stripe": topups_without_stripe[:100],
        "open_invoices": open_invoices.order_by("created_at")[:200],
        "open_total": open_invoices.aggregate(total=Sum("amount_due_micros"))["total"] or 0,
        "past_due": open_invoices.filter(account__past_due_since__isnull=False)[:200],
    }
    return TemplateResponse(request, "admin/reconciliation.html", context)


def _stripe_totals() -> dict:
    """Succeeded payments as dj-stripe last synced them from Stripe (empty in test mode)."""
    # dj-stripe 2.11 keeps these fields in the `stripe_data` JSON, not in columns.
    succeeded = PaymentIntent.objects.filter(stripe_data__status="succeeded")
    received = Cast(KT("stripe_data__amount_received"), BigIntegerField())
    return {
        "count": succeeded.count(),
        "total_micros": cents_to_micros(succeeded.aggregate(total=Sum(received))["total"] or 0),
    }
