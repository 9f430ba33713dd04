from django.apps import AppConfig
from django.urls import register_converter


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        # Imported here, not at the top: these modules import models, which Django can load
        # only once every app is registered, and ready() is the first moment that holds.
        from accounts import signals  # noqa: F401 - connects the receivers
        from accounts.public_ids import PublicIdConverter

        # Before any URLconf is read: every dashboard path names its ids with this converter.
        register_converter(PublicIdConverter, "public_id")
