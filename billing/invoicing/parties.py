"""Who a document is from and to: the seller from settings, the customer's billing details.

Documents copy both when they are issued (`Invoice.seller_details`, `Receipt.seller_details`,
and the customer's twins), so what was sent stays what was sent. The copies are plain dicts of
text, the shape `document_parties` reads.
"""

from datetime import datetime

from django.conf import settings

from accounts.models import Account
from billing.models import BillingDetails

MAX_ADDRESS_LINES = 6


class BillingDetailsError(ValueError):
    """Refused billing details; nothing was written."""


def seller_details() -> dict:
    """Return the operator's identity as documents print it (settings, README: Configuration)."""
    return {
        "legal_name": settings.SELLER_LEGAL_NAME or settings.BRAND_NAME,
        "address": [line.strip() for line in settings.SELLER_ADDRESS.splitlines() if line.strip()],
        "tax_id": settings.SELLER_TAX_ID,
        "email": settings.SUPPORT_EMAIL,
    }


def _customer(account_name: str, account_email: str, details: BillingDetails | None) -> dict:
    # Without billing details a document still names the account and where it is billed.
    return {
        "legal_name": (details.legal_name if details else "") or account_name,
        "address": details.address.splitlines() if details else [],
        "country": details.country if details else "",
        "tax_id": details.tax_id if details else "",
        "email": account_email,
    }


def customer_details(account: Account) -> dict:
    """Return the account's billing details as a document copies them."""
    details = BillingDetails.objects.filter(account=account).first()
    return _customer(account.name, account.email, details)


def customer_details_by_account(accounts: list[Account]) -> dict[int, dict]:
    """Return `customer_details` of many accounts with one query (period close, by chunk)."""
    found = {
        d.account_id: d
        for d in BillingDetails.objects.filter(account_id__in=[a.pk for a in accounts])
    }
    return {a.pk: _customer(a.name, a.email, found.get(a.pk)) for a in accounts}


def save_billing_details(
    *, account: Account, legal_name: str, address: str, country: str, tax_id: str, now: datetime
) -> BillingDetails:
    """Set the account's billing details; documents issued from now on print them."""
    lines = [line.strip() for line in address.splitlines() if line.strip()]
    if len(lines) > MAX_ADDRESS_LINES:
        raise BillingDetailsError(f"An address has at most {MAX_ADDRESS_LINES} lines.")
    details, _ = BillingDetails.objects.update_or_create(
        account=account,
        defaults={
            "legal_name": legal_name.strip(),
            "address": "\n".join(lines),
            "country": country.strip(),
            "tax_id": tax_id.strip(),
            "updated_at": now,
        },
    )
    return details
