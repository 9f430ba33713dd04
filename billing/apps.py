from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        # Imported here, not at the top: these modules import models, which Django can load
        # only once every app is registered, and ready() is the first moment that holds.
        from billing import checks  # noqa: F401 - registers the system checks
        from billing.alerts import balance as balance_alerts
        from billing.ledger import watchers
        from billing.payments import auto_topup, webhooks  # noqa: F401 - connects the receivers

        # The ledger tells these of every balance change, in this order: the low-balance
        # email is recorded before the auto-top-up that answers it.
        watchers.register(balance_alerts)
        watchers.register(auto_topup)
