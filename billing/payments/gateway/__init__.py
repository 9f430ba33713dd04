"""The payment provider Meterline talks to, chosen in one place (SPEC P1-P6)."""

from django.conf import settings
from django.utils.module_loading import import_string

from billing.payments.gateway.protocol import PaymentGateway


def get_gateway() -> PaymentGateway:
    path = (
        getattr(settings, "PAYMENT_GATEWAY", "")
        or "billing.payments.gateway.test_mode.TestModeGateway"
    )
    return import_string(path)()
