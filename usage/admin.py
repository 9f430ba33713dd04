"""Rated usage in admin: read-only, with each item's price explanation (U11), and a call's or an
event's "Refund" page (issue 16), which makes one call into usage.ingest.staff_refunds."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accounts.admin import StaffActionForm, staff_action_page
from billing import staff
from billing.admin import ReadOnlyAdmin, in_dollars
from billing.money import format_usd, format_usd_exact, usd_input
from usage.ingest.staff_refunds import refund_usage_by_staff, refundable_micros
from usage.models import Call, Reservation, UsageEvent
from usage.rating.explain import call_steps, event_steps
from usage.support_search import find_accounts


class UsageRefundForm(StaffActionForm):
    """Refund (part of) one call or event. The reason is the customer's: it shows on their
    statement and CSV next to the refund. The note is staff's: only admin and the audit trail
    show it."""

    permission = "billing.credit_back"

    def __init__(self, *args, item: Call | UsageEvent, **kwargs):
        super().__init__(*args, account=item.account, **kwargs)
        self.item = item
        left = refundable_micros(item)
        self.fields["amount"].help_text = (
            f"Up to {format_usd_exact(left)} (charged {format_usd_exact(item.charged_micros)}, "
            f"refunded {format_usd_exact(item.refunded_micros)}). Lower it to refund a part."
        )
        if not self.is_bound:
            self.initial["amount"] = usd_input(left)
        # What is left is checked by the service, after it has answered a double submission
        # with "Already done." (checked here, the second click would read as an error).

    def run(self, *, actor, now) -> staff.Outcome:
        return refund_usage_by_staff(
            item=self.item,
            amount_micros=self.cleaned_data["amount"],
            reason=self.cleaned_data["reason"],
            note=self.cleaned_data["note"],
            actor=actor,
            key=self.key(),
            now=now,
        )


class RefundableAdmin(ReadOnlyAdmin):
    """A call's or an event's admin: a "Refund" link on its page and in the list, to a page
    that refunds it whole or in part (issue 16)."""

    id_field = ""  # the platform's id of the item, as staff and the customer know it

    @admin.display(description="price explanation")
    def price_explanation(self, obj):
        """The steps the customer reads in their usage log, not the rating's JSON."""
        steps = call_steps(obj) if isinstance(obj, Call) else event_steps(obj)
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li><strong>{}</strong> {}</li>",
                [(step["label"], step["text"]) for step in steps],
            ),
        )

    @admin.display(description="Refund")
    def refund(self, obj):
        left = refundable_micros(obj)
        if not left:
            return (
                f"Refunded {format_usd_exact(obj.refunded_micros)}" if obj.refunded_micros else "-"
            )
        return format_html(
            '<a href="{}">Refund</a> (up to {})',
            reverse(f"admin:{self._refund_url_name()}", args=[obj.pk]),
            format_usd_exact(left),
        )

    def _refund_url_name(self) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_refund"

    def get_urls(self):
        return [
            path(
                "<int:pk>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name=self._refund_url_name(),
            ),
            *super().get_urls(),
        ]

    def refund_view(self, request, pk):
        item = get_object_or_404(self.model.objects.select_related("account"), pk=pk)
        # admin_view only asks for is_staff; the page shows the account and the item.
        if not self.has_view_permission(request, item):
            raise PermissionDenied(f"You cannot see this {self.model._meta.verbose_name}.")
        if not request.user.has_perm(UsageRefundForm.permission):
            raise PermissionDenied(f"You lack the permission {UsageRefundForm.permission}.")
        opts = self.model._meta
        return staff_action_page(
            self,
            request,
            form=UsageRefundForm(request.POST or None, item=item),
            account=item.account,
            title=(
                f"Refund {opts.verbose_name} {getattr(item, self.id_field)}: {item.account.name}"
            ),
            done=(f"admin:{opts.app_label}_{opts.model_name}_change", item.pk),
        )


@admin.register(Call)
class CallAdmin(RefundableAdmin):
    id_field = "call_id"
    list_display = [
        "call_id",
        "account",
        "status",
        "billable_seconds",
        in_dollars("cost_micros"),
        in_dollars("refunded_micros"),
        "refund",
        "created_at",
    ]
    _money = ["cost_micros", "charged_micros", "uncollected_micros", "refunded_micros"]
    exclude = [*_money, "explanation"]
    list_filter = ["status", "direction"]
    search_fields = ["call_id", "account__public_id", "account__name"]
    list_select_related = ["account"]
    readonly_fields = [
        "refund",
        "price_explanation",
        *(in_dollars(field) for field in _money),
    ]


@admin.register(UsageEvent)
class UsageEventAdmin(RefundableAdmin):
    id_field = "event_id"
    list_display = [
        "event_id",
        "account",
        "type",
        "model",
        in_dollars("cost_micros"),
        in_dollars("refunded_micros"),
        "refund",
        "occurred_at",
    ]
    _money = [
        "standard_price_micros",
        "flex_price_micros",
        "cost_micros",
        "charged_micros",
        "uncollected_micros",
        "refunded_micros",
    ]
    exclude = [*_money, "explanation"]
    readonly_fields = [
        "refund",
        "price_explanation",
        *(in_dollars(field) for field in _money),
    ]
    list_filter = ["type"]
    search_fields = ["event_id", "account__public_id", "model"]
    list_select_related = ["account"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "account",
        "call_id",
        in_dollars("amount_micros"),
        "status",
        "expires_at",
    ]
    exclude = ["amount_micros"]
    readonly_fields = list_display[3:4]
    list_filter = ["status"]


def support_search_view(request):
    """The support home's one search box (on the admin index): the account a customer's email,
    name, account or external id, key prefix, call or event id or invoice number points at.
    One account found opens its page; several are listed."""
    if not request.user.has_perm("accounts.view_account"):
        raise PermissionDenied("You cannot look up accounts.")
    query = request.GET.get("q", "").strip()
    found = find_accounts(query=query)
    if len(found) == 1:
        return redirect("admin:accounts_account_change", found[0].account.pk)
    rows = [
        {
            "account": f.account,
            "matched": f.matched,
            "plan": f.account.subscription.plan.code if hasattr(f.account, "subscription") else "-",
            "balance": format_usd(f.account.balance_micros, places=6),
        }
        for f in found
    ]
    context = {
        **admin.site.each_context(request),
        "title": f"Accounts matching “{query}”" if query else "Find an account",
        "query": query,
        "rows": rows,
    }
    return TemplateResponse(request, "admin/support_search.html", context)
