from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        # Connect the Stripe webhook receivers (dj-stripe event signals).
        from billing import checks  # noqa: F401
        from billing.payments import webhooks  # noqa: F401
