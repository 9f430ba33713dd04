"""Locking accounts for a balance change (SPEC L4), and what was read with the lock.

Whoever takes an account's row lock gets a `LockedAccount` back and passes it, as a parameter,
to everything that changes money under that lock: the ledger (billing.ledger.posting), the
balance watchers (billing.ledger.watchers), credit holds. Nothing about the lock travels on
model instances.

WARNING (locking): rows are locked with SELECT ... FOR UPDATE inside the caller's transaction;
several accounts are always locked in primary-key order (`lock_accounts`), the one order every
caller uses, so two transactions never wait on each other.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from accounts.models import Account
from billing.ledger.grants import GrantBook
from billing.models import AlertSettings, AutoTopUpSettings


@dataclass(frozen=True)
class BalanceWatch:
    """What the balance watchers need, read with the lock by a caller on the usage hot path
    (usage.charging.lock), so that a charge that crosses nothing costs them no query."""

    # The account's own rows; None when it has none.
    alert_settings: AlertSettings | None
    auto_topup: AutoTopUpSettings | None
    # The plan's defaults, used where the account has no setting of its own.
    plan_low_balance_threshold_micros: int
    plan_zero_balance_alert: bool


@dataclass(frozen=True)
class LockedAccount:
    """An account whose row the current transaction holds locked.

    `account` is the row as locked; the ledger keeps its cached amounts current as it posts.
    `grants` follows the account's spendable credit for the life of the lock. `watch` is what
    the balance watchers would otherwise read themselves (None: not read with the lock).
    """

    account: Account
    grants: GrantBook
    watch: BalanceWatch | None = None

    @property
    def pk(self) -> int:
        return self.account.pk


def lock_account(account_id: int) -> LockedAccount:
    """Lock the account row and return it; call inside transaction.atomic()."""
    account = Account.objects.select_for_update().get(pk=account_id)
    return LockedAccount(account=account, grants=GrantBook(account=account))


def lock_accounts(account_ids: Iterable[int]) -> dict[int, LockedAccount]:
    """Lock several accounts in primary-key order, the one order every caller uses."""
    ids = sorted(set(account_ids))
    accounts = Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {
        account.pk: LockedAccount(account=account, grants=GrantBook(account=account))
        for account in accounts
    }
