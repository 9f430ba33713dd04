"""Writing off credit whose expiry has passed (SPEC L5): the hourly job, and one locked account."""

from datetime import datetime

from django.db import transaction

from accounts.models import Account
from billing.ledger.locks import lock_account
from billing.ledger.posting import _GrantBook
from billing.ledger.watchers import balance_changed
from billing.models import CreditGrant, LedgerEntry


def expire_credit(*, now: datetime) -> int:
    """Write off every grant whose expiry has passed; return how many accounts were touched.

    Safe to run twice or concurrently: each account is handled under its own lock, and a grant
    already written off has nothing left to expire.
    """
    account_ids = (
        CreditGrant.objects.filter(remaining_micros__gt=0, expires_at__lte=now)
        .values_list("account_id", flat=True)
        .distinct()
    )
    touched = 0
    for account_id in sorted(set(account_ids)):
        with transaction.atomic():
            touched += expire_account_credit(account=lock_account(account_id), now=now)
    return touched


def expire_account_credit(*, account: Account, now: datetime) -> bool:
    """Write off the locked account's credit whose expiry has passed; return whether any did."""
    book = _GrantBook(account=account, now=now)
    entries: list[LedgerEntry] = []
    balance = book.expire_due(balance=account.balance_micros, entries=entries)
    if not entries:
        return False
    book.save()
    LedgerEntry.objects.bulk_create(entries)
    Account.objects.filter(pk=account.pk).update(balance_micros=balance)
    before = account.balance_micros
    account.balance_micros = balance
    balance_changed(account=account, before_micros=before, now=now)
    return True
