"""The hourly job that writes off credit whose expiry has passed (SPEC L5)."""

from datetime import datetime

from django.db import transaction

from accounts.models import Account
from billing.ledger.locks import lock_account
from billing.ledger.posting import expire_account_credit
from billing.models import CreditGrant


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
            touched += expire_account_credit(locked=lock_account(account_id), now=now)
    return touched


def write_off_expired_credit(*, account_id: int, now: datetime) -> Account:
    """Lock the account, write off its credit past expiry and return the account as locked.

    For a read that decides spending (authorize) and found credit past its expiry still in the
    cached balance: it is never spendable, and the first to find it writes it off rather than
    leaving it to the hourly job (a charge does the same under its own lock).
    """
    with transaction.atomic():
        locked = lock_account(account_id)
        expire_account_credit(locked=locked, now=now)
        return locked.account
