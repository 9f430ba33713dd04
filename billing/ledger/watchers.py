"""What happens when a balance moves: low-balance alerts (N1) and auto-top-up (P2).

`billing.ledger` calls `balance_changed` after every change of a balance, still holding the
account's row lock, inside the transaction that changed it. Watchers decide from the old and
new balance whether a threshold was crossed, record that under the same lock (so 50 concurrent
deductions crossing a threshold see one crossing), and queue their side effect (an email, a
card charge) with `transaction.on_commit`, so nothing leaves the database for a rolled-back
change. They must be cheap when nothing crosses: this runs on the usage hot path.
"""

from collections.abc import Sequence
from datetime import datetime

from accounts.models import Account


def balance_changed(*, account: Account, before_micros: int, now: datetime) -> None:
    from billing.alerts import balance as alerts
    from billing.payments import auto_topup

    alerts.balance_changed(account=account, before_micros=before_micros, now=now)
    auto_topup.balance_changed(account=account, before_micros=before_micros, now=now)


def balances_changed(*, changes: Sequence[tuple[Account, int]], now: datetime) -> None:
    """Run the watchers for many locked accounts at once: `changes` holds (account, before).

    For jobs that move thousands of balances in one transaction (period close): each watcher
    reads its state for all of them in one query and does per-account work only where
    something crosses.
    """
    from billing.alerts import balance as alerts
    from billing.payments import auto_topup

    if not changes:
        return
    alerts.balances_changed(changes=changes, now=now)
    auto_topup.balances_changed(changes=changes, now=now)
