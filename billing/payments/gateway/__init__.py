"""The payment provider Meterline talks to, chosen in one place (SPEC P1-P6).

`settings.PAYMENT_GATEWAY` names the implementation of
`billing.payments.gateway.protocol.PaymentGateway`: config/settings.py sets Stripe when the site
has Stripe keys, and the test-mode gateway only where simulated payments are allowed.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from billing.payments.gateway.protocol import PaymentGateway


def get_gateway() -> PaymentGateway:
    """Return the gateway `settings.PAYMENT_GATEWAY` names.

    There is no default: a site that lost the setting must not fall into simulated payments.
    """
    path = getattr(settings, "PAYMENT_GATEWAY", "")
    if not path:
        raise ImproperlyConfigured(
            "PAYMENT_GATEWAY is not set: name the payment gateway's class (config/settings.py)."
        )
    return import_string(path)()
