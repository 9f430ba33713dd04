"""Links to the dashboard that emails and the API's refusals (402: add funds, raise a budget)
carry, so that every message points at the same page."""

from django.conf import settings

from accounts.models import Account


def billing_page_url(account: Account) -> str:
    """Return the address of the account's billing page: top-ups, cards, alerts, budgets."""
    return f"{settings.SITE_URL}/app/a/{account.public_id}/billing/"


def receipt_page_url(account: Account, number: str) -> str:
    """Return the address of one of the account's receipts."""
    return f"{settings.SITE_URL}/app/a/{account.public_id}/invoices/receipts/{number}/"


def invoice_page_url(account: Account, number: str) -> str:
    """Return the address of one of the account's invoices."""
    return f"{settings.SITE_URL}/app/a/{account.public_id}/invoices/{number}/"
