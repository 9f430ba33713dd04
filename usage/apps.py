from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self):
        # Imported here, not at the top: these modules import models, which Django can load
        # only once every app is registered, and ready() is the first moment that holds.
        from billing.models import StaffAction
        from billing.notifications import sending
        from billing.staff.approvals import register_carrier
        from usage.ingest.staff_refunds import (
            carry_out_approved_call_refund,
            carry_out_approved_event_refund,
        )
        from usage.pages.runway import RUNWAY_KINDS, runway_email_context

        # billing's emails cannot read usage's rollups themselves (usage sits above billing).
        sending.add_context(kinds=RUNWAY_KINDS, provider=runway_email_context)
        # An approved staff refund of a call or an event is carried out by usage, which billing
        # cannot import.
        register_carrier(StaffAction.REFUND_CALL, carry_out_approved_call_refund)
        register_carrier(StaffAction.REFUND_EVENT, carry_out_approved_event_refund)
