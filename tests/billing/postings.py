"""Posting to an account the way most tests want: lock it, post, see the new balance.

Production code locks first and passes the `LockedAccount` (billing.ledger.locks); tests that
only need money on or off a balance call these with the plain account instead. Each takes the
lock in its own transaction (a savepoint inside a test's), posts through the real ledger, and
copies the cached amounts back onto the account the test holds.
"""

from collections.abc import Sequence

from django.db import transaction

from accounts.models import Account
from billing.ledger import posting
from billing.ledger.locks import lock_account
from billing.models import LedgerEntry
from billing.payments import refunds


def _synced(account: Account, locked) -> None:
    account.balance_micros = locked.account.balance_micros
    account.unbilled_micros = locked.account.unbilled_micros


def post_entry(*, account: Account, **fields) -> LedgerEntry:
    """billing.ledger.posting.post_entry on the account, locked here."""
    with transaction.atomic():
        locked = lock_account(account.pk)
        entry = posting.post_entry(locked=locked, **fields)
    _synced(account, locked)
    return entry


def post_entries(*, account: Account, postings: Sequence, **fields) -> list[LedgerEntry]:
    """billing.ledger.posting.post_entries on the account, locked here."""
    with transaction.atomic():
        locked = lock_account(account.pk)
        entries = posting.post_entries(locked=locked, postings=postings, **fields)
    _synced(account, locked)
    return entries


def credit_back(*, account: Account, **fields) -> LedgerEntry:
    """billing.payments.refunds.credit_back on the account, locked here."""
    with transaction.atomic():
        locked = lock_account(account.pk)
        entry = refunds.credit_back(locked=locked, **fields)
    _synced(account, locked)
    return entry
