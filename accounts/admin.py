"""Staff's view of users, accounts, memberships and keys, with the money actions.

The money actions (credit-back, top-up refund, grant, adjustment, plan change, approving a
subaccount's included allowance) are form pages under each account
(`<account>/staff/<action>/`); each form carries a one-time token that is the action's
idempotency key, and each makes one call into billing.staff.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.models import (
    Account,
    ApiKey,
    Invitation,
    Membership,
    TierRequest,
    TierRequestStatus,
    User,
)
from accounts.tier_requests import TierRequestError, grant_tier_request, refuse_tier_request
from billing import staff
from billing.models import Plan, TopUp
from billing.models.payments import PAID_STATUSES
from billing.money import MoneyError, format_usd, format_usd_exact, usd_input, usd_to_micros
from billing.payments.refunds import refundable_micros


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "public_id",
        "plan",
        "billing_mode",
        "balance",
        "past_due_since",
        "parent",
    ]
    list_filter = ["billing_mode", "subscription__plan"]
    search_fields = ["name", "email", "public_id", "api_keys__key_id"]
    readonly_fields = [
        "public_id",
        "balance",
        "held_micros",
        "unbilled_micros",
        "past_due_since",
        "billing_mode",
        "plan",
        "period",
        "created_at",
        "staff_actions",
        "usage_lists",
        "recent_usage",
        "recent_invoices",
        "recent_topups",
        "dashboard_link",
    ]
    fields = [
        "name",
        "email",
        "extra_billing_emails",
        "parent",
        *readonly_fields,
    ]
    raw_id_fields = ["parent"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription__plan", "parent")

    @admin.display(description="plan")
    def plan(self, obj):
        return obj.subscription.plan.code if hasattr(obj, "subscription") else "-"

    @admin.display(description="balance", ordering="balance_micros")
    def balance(self, obj):
        return format_usd(obj.balance_micros, places=6)

    @admin.display(description="customer dashboard")
    def dashboard_link(self, obj):
        url = reverse("dashboard:account", args=[obj.public_id])
        return format_html('<a href="{}">{}</a>', url, "Open as the customer sees it")

    @admin.display(description="current period")
    def period(self, obj):
        subscription = getattr(obj, "subscription", None)
        if subscription is None:
            return "-"
        # Periods are half-open: the end is the first moment of the next one.
        start, end = subscription.current_period_start, subscription.current_period_end
        return f"from {start:%-d %b %Y %H:%M} until {end:%-d %b %Y %H:%M}"

    @admin.display(description="lists")
    def usage_lists(self, obj):
        """Link the account's lists, each paginated and filtered to it (inlined in full, they
        made the page tens of thousands of pixels tall). Calls and events have a "Refund" link
        on each row."""
        if obj.pk is None:
            return "-"
        lists = [
            ("usage_call", "Calls"),
            ("usage_usageevent", "Events"),
            ("billing_ledgerentry", "Ledger"),
            ("billing_invoice", "Invoices"),
            ("billing_topup", "Top-ups"),
            ("billing_auditrecord", "Staff actions"),
        ]
        return format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            [
                (f"{reverse(f'admin:{name}_changelist')}?account__id__exact={obj.pk}", label)
                for name, label in lists
            ],
        )

    @admin.display(description="recent usage")
    def recent_usage(self, obj):
        calls = [
            (
                reverse("admin:usage_call_change", args=[c.pk]),
                f"call {c.call_id}",
                c.created_at,
                _amount_and_refund(c.cost_micros, c.refunded_micros),
            )
            for c in obj.calls.order_by("-created_at", "-pk")[:RECENT]
        ]
        events = [
            (
                reverse("admin:usage_usageevent_change", args=[e.pk]),
                f"{e.type} event {e.event_id}",
                e.occurred_at,
                _amount_and_refund(e.cost_micros, e.refunded_micros),
            )
            for e in obj.usage_events.order_by("-occurred_at", "-pk")[:RECENT]
        ]
        rows = sorted([*calls, *events], key=lambda row: row[2], reverse=True)[:RECENT]
        return _recent_list(
            [(url, f"{label}, {at:%-d %b %Y %H:%M}", amount) for url, label, at, amount in rows]
        )

    @admin.display(description="recent invoices")
    def recent_invoices(self, obj):
        invoices = obj.invoices.order_by("-created_at", "-pk")[:RECENT]
        return _recent_list(
            [
                (
                    reverse("admin:billing_invoice_change", args=[i.pk]),
                    f"{i.number or 'draft'} ({i.get_status_display()})",
                    format_usd_exact(i.total_micros),
                )
                for i in invoices
            ]
        )

    @admin.display(description="recent top-ups")
    def recent_topups(self, obj):
        topups = obj.topups.order_by("-created_at", "-pk")[:RECENT]
        return _recent_list(
            [
                (
                    reverse("admin:billing_topup_change", args=[t.pk]),
                    f"{t.created_at:%-d %b %Y} ({t.get_status_display()})",
                    _amount_and_refund(t.amount_micros, t.refunded_micros),
                )
                for t in topups
            ]
        )

    @admin.display(description="money actions")
    def staff_actions(self, obj):
        if obj.pk is None:
            return "-"
        links = [
            (reverse("admin:account_staff_action", args=[obj.pk, name]), form.title)
            for name, form in ACTION_FORMS.items()
        ]
        return format_html(
            " · ".join(['<a href="{}">{}</a>'] * len(links)),
            *[item for link in links for item in link],
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/staff/<str:action>/",
                self.admin_site.admin_view(self.staff_action_view),
                name="account_staff_action",
            ),
            *super().get_urls(),
        ]

    def staff_action_view(self, request, pk, action):
        account = get_object_or_404(Account, pk=pk)
        form_class = ACTION_FORMS.get(action)
        if form_class is None:
            raise PermissionDenied("No such action.")
        # admin_view only asks for is_staff: without these checks any staff member, even one
        # in no group, could open the page and read the account's name and balance.
        if not self.has_view_permission(request, account):
            raise PermissionDenied("You cannot see this account.")
        if not request.user.has_perm(form_class.permission):
            raise PermissionDenied(f"You lack the permission {form_class.permission}.")
        return staff_action_page(
            self,
            request,
            # A link may fill in the form (a top-up's page names the top-up); staff confirm it.
            form=form_class(request.POST or None, account=account, initial=request.GET.dict()),
            account=account,
            title=f"{form_class.title}: {account.name}",
            done=("admin:accounts_account_change", account.pk),
        )


# How many of each list the account page shows; the rest are one link away ("lists").
RECENT = 5


def _amount_and_refund(amount_micros: int, refunded_micros: int) -> str:
    text = format_usd_exact(amount_micros)
    return f"{text}, refunded {format_usd_exact(refunded_micros)}" if refunded_micros else text


def _recent_list(rows: list[tuple[str, str, str]]):
    """Rows of (link, what, amount) as a short list, or "-"."""
    if not rows:
        return "-"
    return format_html(
        "<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a>: {}</li>', rows)
    )


def staff_action_page(model_admin, request, *, form, account: Account, title: str, done: tuple):
    """Show a staff money action's form, or run it once it is valid and go to `done` (a URL
    name and its argument); the one page of every staff action, whichever admin offers it.
    The caller has checked that the user may see the page and take the action."""
    if request.method == "POST" and form.is_valid():
        try:
            outcome = form.run(actor=request.user, now=timezone.now())
        except (staff.StaffActionError, PermissionDenied) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, outcome.message)
            return redirect(*done)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "account": account,
        "balance": format_usd(account.balance_micros, places=6),
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "admin/staff_action.html", context)


# Action forms ------------------------------------------------------------------------------


class StaffActionForm(forms.Form):
    """A money action's form. `token` is created when the form is shown and is the action's
    idempotency key: submitting the same page twice does the action once."""

    title = ""
    permission = ""  # the page is refused (403) to staff without it; billing.staff checks too
    # The billing.staff function the form calls, wrapped so it does not become a method.
    action = None
    token = forms.CharField(widget=forms.HiddenInput)
    amount = forms.CharField(label="Amount (USD)", help_text="For example 25.00")
    reason = forms.CharField(
        label="Reason for the customer",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The customer may read it (on their statement and its CSV).",
    )
    note = forms.CharField(
        label="Internal note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For staff only (ticket, what happened): kept in the audit trail, never "
        "shown to the customer.",
    )

    def __init__(self, *args, account: Account, **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account
        if not self.is_bound:
            self.initial["token"] = uuid.uuid4().hex

    def clean_amount(self) -> int:
        try:
            micros = usd_to_micros(self.cleaned_data["amount"])
        except MoneyError as exc:
            raise forms.ValidationError(str(exc)) from None
        if micros <= 0 and not getattr(self, "signed", False):
            raise forms.ValidationError("Enter a positive amount.")
        return micros

    def key(self) -> str:
        return f"{self.account.pk}:{self.cleaned_data['token']}"

    def arguments(self) -> dict:
        """Return what this action is done to, and how much: all but reason, actor, key, now."""
        return {"account": self.account, "amount_micros": self.cleaned_data["amount"]}

    def run(self, *, actor, now) -> staff.Outcome:
        return self.action(
            **self.arguments(),
            reason=self.cleaned_data["reason"],
            note=self.cleaned_data["note"].strip(),
            actor=actor,
            key=self.key(),
            now=now,
        )


class CreditBackForm(StaffActionForm):
    title = "Credit-back refund"
    permission = "billing.credit_back"
    action = staticmethod(staff.credit_back)


class GrantCreditForm(StaffActionForm):
    title = "Grant credit"
    permission = "billing.grant_credit"
    action = staticmethod(staff.grant_credit)
    expires_at = forms.DateTimeField(required=False, help_text="Optional, e.g. 2027-01-31 00:00")

    def arguments(self) -> dict:
        return {**super().arguments(), "expires_at": self.cleaned_data.get("expires_at")}


class AdjustBalanceForm(StaffActionForm):
    title = "Adjust balance"
    permission = "billing.adjust_balance"
    action = staticmethod(staff.adjust_balance)
    signed = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"].help_text = "Positive adds credit, negative takes it away."


class TopUpChoice(forms.ModelChoiceField):
    """A paid top-up as staff pick it to refund: when, how much, what is left to refund."""

    def label_from_instance(self, obj: TopUp) -> str:
        return (
            f"{obj.created_at:%-d %b %Y %H:%M} · {format_usd_exact(obj.amount_micros)} paid · "
            f"{format_usd_exact(obj.refunded_micros)} refunded · "
            f"{format_usd_exact(refundable_micros(obj))} refundable"
        )


class RefundTopUpForm(StaffActionForm):
    title = "Refund a top-up to the card"
    permission = "billing.refund_topup"
    action = staticmethod(staff.refund_topup)
    topup = TopUpChoice(
        queryset=TopUp.objects.none(),
        widget=forms.RadioSelect,
        label="Top-up",
        help_text="Refundable: paid, not yet refunded and still unspent.",
    )
    field_order = ["topup", "amount", "reason", "note"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        topups = (
            TopUp.objects.filter(account=self.account, status__in=PAID_STATUSES)
            .select_related("grant")
            .order_by("-created_at", "-pk")
        )
        self.fields["topup"].queryset = topups
        # Opened from a top-up's own page (?topup=<pk>): offer what is left of it.
        chosen = str(self.initial.get("topup", ""))
        topup = topups.filter(pk=int(chosen)).first() if chosen.isdigit() else None
        if topup is not None and not self.is_bound:
            self.initial["amount"] = usd_input(refundable_micros(topup))

    def arguments(self) -> dict:
        return {"topup": self.cleaned_data["topup"], "amount_micros": self.cleaned_data["amount"]}


class ChangePlanForm(StaffActionForm):
    title = "Change plan"
    permission = "billing.move_account_plan"
    action = staticmethod(staff.change_plan)
    amount = None
    plan = forms.ModelChoiceField(queryset=Plan.objects.order_by("code"))
    when = forms.ChoiceField(
        choices=[("next_period", "From the next period"), ("now", "Now")],
        help_text="Now: usage from this moment is rated at the new plan's rates and past "
        "charges keep their prices; this period keeps the included minutes it began with "
        "(the old plan's, or none), and the new plan's included minutes and rollover start "
        "next period. From the next period: all of it changes when the period closes.",
    )

    def arguments(self) -> dict:
        return {
            "account": self.account,
            "plan": self.cleaned_data["plan"],
            "when": self.cleaned_data["when"],
        }


class ApproveAllowanceForm(StaffActionForm):
    title = "Approve included allowance"
    permission = "billing.approve_allowance"
    action = staticmethod(staff.approve_allowance)
    amount = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = (
            "A subaccount a customer opened gets its plan's included minutes or credit only "
            "once staff approve it (or its plan fee is paid). Say why it may have them."
        )

    def arguments(self) -> dict:
        return {"account": self.account}


ACTION_FORMS: dict[str, type[StaffActionForm]] = {
    "credit-back": CreditBackForm,
    "grant": GrantCreditForm,
    "adjust": AdjustBalanceForm,
    "refund-topup": RefundTopUpForm,
    "change-plan": ChangePlanForm,
    "approve-allowance": ApproveAllowanceForm,
}


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "key_id", "kind", "account", "tier", "last_used_at", "revoked_at"]
    list_filter = ["kind", "tier"]
    search_fields = ["key_id", "name", "account__name", "account__public_id"]
    readonly_fields = ["key_id", "kind", "account", "created_by", "created_at", "last_used_at"]
    fields = ["name", "tier", "revoked_at", *readonly_fields]

    def has_add_permission(self, request):
        # Keys are issued by `manage.py create_platform_key` or the dashboard, where the
        # secret can be shown once; admin never sees a secret.
        return False


@admin.register(TierRequest)
class TierRequestAdmin(admin.ModelAdmin):
    """Customers' requests for a higher rate-limit tier (SPEC D4): grant or refuse them here.

    Granting moves the key to the requested tier at once; the customer sees the answer on the
    API keys page.
    """

    list_display = ["api_key", "account", "from_tier", "tier", "status", "created_at", "decided_by"]
    list_filter = ["status", "tier"]
    list_select_related = ["api_key", "account", "decided_by"]
    search_fields = ["api_key__key_id", "account__name", "account__public_id"]
    readonly_fields = [
        "account",
        "api_key",
        "from_tier",
        "tier",
        "reason",
        "status",
        "requested_by",
        "created_at",
        "decided_at",
        "decided_by",
    ]
    fields = [*readonly_fields, "note"]
    actions = ["grant_requests", "refuse_requests"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _decide(self, request, queryset, decide, verb):
        done = 0
        for tier_request in queryset.filter(status=TierRequestStatus.PENDING):
            try:
                decide(request_id=tier_request.pk, staff_user=request.user, now=timezone.now())
            except TierRequestError as error:
                self.message_user(request, str(error), messages.WARNING)
            else:
                done += 1
        self.message_user(request, f"{done} request(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Grant: move the keys to the requested tier now")
    def grant_requests(self, request, queryset):
        self._decide(request, queryset, grant_tier_request, "granted")

    @admin.action(description="Refuse the requests")
    def refuse_requests(self, request, queryset):
        self._decide(request, queryset, refuse_tier_request, "refused")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "account", "role", "created_at", "expires_at", "accepted_at"]
    list_filter = ["role"]
    search_fields = ["email", "account__name", "account__public_id"]
    readonly_fields = [
        "account",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "sent_at",
        "accepted_at",
        "accepted_by",
    ]
    fields = [*readonly_fields, "revoked_at"]

    def has_add_permission(self, request):
        # Invitations carry a token shown once: owners and admins send them from the Team page.
        return False
