"""What happens when a balance moves: the registry of balance watchers.

The ledger calls `balance_changed` after every change of a balance, still holding the account's
row lock, inside the transaction that changed it. Watchers decide from the old and new balance
whether a threshold was crossed, record that under the same lock (so 50 concurrent deductions
crossing a threshold see one crossing), and queue their side effect (an email, a card charge)
with `transaction.on_commit`, so nothing leaves the database for a rolled-back change. They must
be cheap when nothing crosses: this runs on the usage hot path.

The ledger knows no watcher: the apps that watch balances register here when Django starts
(billing.apps: low-balance alerts, then auto-top-up, in that order). The ledger is the lowest
layer of billing, and this keeps it from importing anything above it.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from billing.ledger.locks import LockedAccount


class BalanceWatcher(Protocol):
    def balance_changed(self, *, locked: LockedAccount, before_micros: int, now: datetime) -> None:
        """React to one locked account's balance moving from `before_micros`."""

    def balances_changed(
        self, *, changes: Sequence[tuple[LockedAccount, int]], now: datetime
    ) -> None:
        """React to many locked accounts at once ((account, balance before) pairs), reading
        their state in one query: for jobs that move thousands of balances (period close)."""


_watchers: list[BalanceWatcher] = []


def register(watcher: BalanceWatcher) -> None:
    """Add a watcher, once; watchers run in the order they were registered."""
    if watcher not in _watchers:
        _watchers.append(watcher)


def registered() -> tuple[BalanceWatcher, ...]:
    return tuple(_watchers)


def balance_changed(*, locked: LockedAccount, before_micros: int, now: datetime) -> None:
    for watcher in _watchers:
        watcher.balance_changed(locked=locked, before_micros=before_micros, now=now)


def balances_changed(*, changes: Sequence[tuple[LockedAccount, int]], now: datetime) -> None:
    if not changes:
        return
    for watcher in _watchers:
        watcher.balances_changed(changes=changes, now=now)
