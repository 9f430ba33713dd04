"""System checks of billing settings, run by `manage.py check --deploy`."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from billing.payments.gateway import get_gateway


@register(Tags.security, deploy=True)
def simulated_payments_in_production(app_configs, **kwargs):
    if get_gateway().simulated and not settings.DEBUG:
        return [
            Warning(
                "Payments are simulated (PAYMENTS_TEST_MODE): customers can add credit without "
                "paying.",
                hint=(
                    "Set STRIPE_SECRET_KEY (and its webhook endpoint, docs/payments.md) to take "
                    "real payments."
                ),
                id="billing.W001",
            )
        ]
    return []
