"""Links to the dashboard that emails carry."""

from django.conf import settings

from accounts.models import Account


def billing_page_url(account: Account) -> str:
    return f"{settings.SITE_URL}/app/a/{account.public_id}/billing/"


def invoice_page_url(account: Account, number: str) -> str:
    return f"{settings.SITE_URL}/app/a/{account.public_id}/invoices/{number}/"
