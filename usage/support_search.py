"""The support search: which accounts a customer's words point at (issue 16, item 6).

A customer writes with whatever they have at hand: their email, their company name, the account
id from the dashboard, the operator's own id for them, an API key's prefix, a call or event id
from their logs, an invoice number. One box takes any of these. It lives in usage, the top app,
because a call and an event id are usage's and the rest is below it.
"""

from dataclasses import dataclass

from django.db.models import Q

from accounts.models import Account, ApiKey
from billing.models import Invoice
from usage.models import Call, UsageEvent

MAX_FOUND = 50


@dataclass(frozen=True)
class Found:
    account: Account
    matched: str  # what the words matched, for staff: "call id", "email", ...


def find_accounts(*, query: str) -> list[Found]:
    """Return the accounts the words point at, the exact matches (ids, numbers) first, then
    names and emails containing them; each account once, at most MAX_FOUND."""
    words = query.strip()
    if not words:
        return []
    exact = [
        ("account id", Account.objects.filter(public_id=words)),
        ("external id", Account.objects.filter(external_id=words)),
        ("call id", Account.objects.filter(pk__in=_owner(Call, call_id=words))),
        ("event id", Account.objects.filter(pk__in=_owner(UsageEvent, event_id=words))),
        ("invoice number", Account.objects.filter(pk__in=_owner(Invoice, number__iexact=words))),
        (
            "API key",
            Account.objects.filter(pk__in=_owner(ApiKey, key_id__startswith=words))
            if len(words) >= 6  # a shorter prefix matches half the keys
            else Account.objects.none(),
        ),
        ("email", Account.objects.filter(email__iexact=words)),
    ]
    partial = [
        (
            "email",
            Account.objects.filter(
                Q(email__icontains=words)
                | Q(extra_billing_emails__icontains=words)
                | Q(memberships__user__email__icontains=words)
            ),
        ),
        ("name", Account.objects.filter(name__icontains=words)),
    ]
    found: dict[int, Found] = {}
    for matched, accounts in [*exact, *partial]:
        # distinct(): an account with several matching members would fill the slice alone.
        accounts = accounts.select_related("subscription__plan").distinct()
        for account in accounts.order_by("name", "pk")[:MAX_FOUND]:
            found.setdefault(account.pk, Found(account=account, matched=matched))
        if len(found) >= MAX_FOUND:
            break
    return list(found.values())[:MAX_FOUND]


def _owner(model, **lookup):
    return model.objects.filter(**lookup).values("account_id")
