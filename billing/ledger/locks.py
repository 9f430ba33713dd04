"""Locking accounts for a balance change (SPEC L4).

WARNING (locking): accounts are locked with SELECT ... FOR UPDATE, several at once always in
primary-key order, the one order every caller uses, so two transactions never wait on each other.
"""

from collections.abc import Iterable

from accounts.models import Account


def lock_account(account_id: int) -> Account:
    """Lock and return the account row; call inside transaction.atomic()."""
    return Account.objects.select_for_update().get(pk=account_id)


def lock_accounts(account_ids: Iterable[int]) -> dict[int, Account]:
    """Lock several accounts in primary-key order, the one order every caller uses."""
    ids = sorted(set(account_ids))
    accounts = Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {account.pk: account for account in accounts}
