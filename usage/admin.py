"""Rated usage in admin: read-only, with each item's price explanation (U11)."""

from django.contrib import admin

from billing.admin import ReadOnlyAdmin
from usage.models import Call, Reservation, UsageEvent


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = [
        "call_id",
        "account",
        "status",
        "billable_seconds",
        "cost_micros",
        "refunded_micros",
        "created_at",
    ]
    list_filter = ["status", "direction"]
    search_fields = ["call_id", "account__public_id", "account__name"]
    list_select_related = ["account"]


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "account", "type", "model", "cost_micros", "occurred_at"]
    list_filter = ["type"]
    search_fields = ["event_id", "account__public_id", "model"]
    list_select_related = ["account"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "account", "call_id", "amount_micros", "status", "expires_at"]
    list_filter = ["status"]
