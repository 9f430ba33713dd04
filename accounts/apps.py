from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from django.urls import register_converter

        from accounts import signals  # noqa: F401 - connects the receivers
        from accounts.public_ids import PublicIdConverter

        # Before any URLconf is read: every dashboard path names its ids with this converter.
        register_converter(PublicIdConverter, "public_id")
