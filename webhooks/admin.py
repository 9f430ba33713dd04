"""Staff's view of outbound webhooks: endpoints (secret shown once, rotate, enable, disable),
the events of the outbox, and each delivery with its attempts and a manual resend.

Nothing here is money, so Support and Finance see all of it (webhooks/0001) and may resend a
delivery; creating and changing endpoints takes the endpoint permissions (superusers).
"""

import json

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from webhooks import endpoints
from webhooks.event_types import EVENT_TYPES
from webhooks.models import Delivery, DeliveryAttempt, OutboundEvent, WebhookEndpoint

EDITABLE = ("url", "description", "event_types", "enabled")


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(name, f"{name}: {text}") for name, text in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event type, including types added later.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = EDITABLE

    def clean_url(self):
        try:
            return endpoints.clean_url(self.cleaned_data["url"])
        except endpoints.InvalidEndpoint as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ("url", "description", "types", "enabled", "failing_since", "disabled_at")
    list_filter = ("enabled",)
    search_fields = ("url", "description", "public_id")
    readonly_fields = (
        "public_id",
        "created_at",
        "created_by",
        "signing_secrets",
        "failing_since",
        "disabled_at",
        "disabled_reason",
    )
    actions = ["rotate_secret", "enable", "disable"]

    @admin.display(description="event types")
    def types(self, obj):
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="signing secrets")
    def signing_secrets(self, obj):
        # When each secret was made and until when it signs; never the secret itself.
        rows = [
            f"from {s.created_at:%Y-%m-%d %H:%M} UTC"
            + (f", signs until {s.expires_at:%Y-%m-%d %H:%M} UTC" if s.expires_at else "")
            for s in obj.secrets.all()
        ]
        return "; ".join(rows) or "-"

    def save_model(self, request, obj, form, change):
        now = timezone.now()
        if change:
            endpoints.update_endpoint(
                endpoint=WebhookEndpoint.objects.get(pk=obj.pk),
                changes={f: form.cleaned_data[f] for f in form.changed_data if f in EDITABLE},
                now=now,
                reason=f"Disabled by {request.user}",
            )
            return
        created = endpoints.create_endpoint(
            **{f: form.cleaned_data[f] for f in EDITABLE}, now=now, created_by=request.user
        )
        obj.pk, obj.public_id = created.endpoint.pk, created.endpoint.public_id
        _show_secret(request, created.endpoint, created.secret)

    @admin.action(description="Rotate the signing secret (the old one signs for 24 hours)")
    def rotate_secret(self, request, queryset):
        for endpoint in queryset:
            secret = endpoints.rotate_secret(endpoint=endpoint, now=timezone.now())
            _show_secret(request, endpoint, secret)

    @admin.action(description="Enable (and send what waits for it)")
    def enable(self, request, queryset):
        for endpoint in queryset:
            endpoints.update_endpoint(
                endpoint=endpoint, changes={"enabled": True}, now=timezone.now()
            )
        messages.success(request, f"{len(queryset)} endpoint(s) enabled.")

    @admin.action(description="Disable")
    def disable(self, request, queryset):
        for endpoint in queryset:
            endpoints.update_endpoint(
                endpoint=endpoint,
                changes={"enabled": False},
                now=timezone.now(),
                reason=f"Disabled by {request.user}",
            )
        messages.success(request, f"{len(queryset)} endpoint(s) disabled.")


def _show_secret(request, endpoint: WebhookEndpoint, secret: str) -> None:
    messages.warning(
        request,
        format_html(
            "Signing secret of {}: <code>{}</code> — copy it now, it is not shown again.",
            endpoint.url,
            secret,
        ),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("attempted_at", "status_code", "latency_ms", "response_excerpt", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    )
    list_filter = ("status", "endpoint")
    search_fields = ("event__event_id", "event__type", "endpoint__url")
    list_select_related = ("event", "endpoint")
    inlines = [AttemptInline]
    actions = ["resend"]

    @admin.action(description="Resend now", permissions=["change"])
    def resend(self, request, queryset):
        for delivery in queryset:
            endpoints.resend_delivery(delivery=delivery, now=timezone.now())
        messages.success(request, f"{len(queryset)} delivery(ies) queued to be sent again.")


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ("endpoint", "status", "attempts", "next_attempt_at", "delivered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OutboundEvent)
class OutboundEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "account", "created_at")
    list_filter = ("type",)
    search_fields = ("event_id", "account__public_id", "account__external_id")
    list_select_related = ("account",)
    inlines = [DeliveryInline]

    def get_readonly_fields(self, request, obj=None):
        return ["event_id", "type", "account", "created_at", "body"]

    def get_fields(self, request, obj=None):
        return self.get_readonly_fields(request, obj)

    @admin.display(description="body")
    def body(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))
