"""The back-off of off-session top-ups (auto-top-up, recurring credit) after a decline (SPEC P2).

A declined charge is retried after 1 h, 6 h and 24 h, then waits for the customer. The state
lives on the auto-top-up settings, or on the recurring purchase of the period whose latest
attempt the top-up is; a paid top-up ends it.
"""

from datetime import datetime, timedelta

from billing.models import (
    AutoTopUpSettings,
    RecurringCreditPurchase,
    TopUp,
    TopUpKind,
)

BACKOFF = [timedelta(hours=1), timedelta(hours=6), timedelta(hours=24)]


def update_row(row: AutoTopUpSettings | RecurringCreditPurchase, now: datetime, **fields) -> None:
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = now
    row.save(update_fields=[*fields, "updated_at"])


def retry_state(topup: TopUp):
    """Return the row that holds the back-off of an off-session top-up: the auto-top-up
    settings, or the recurring purchase of the period whose latest attempt it is."""
    if topup.kind == TopUpKind.RECURRING:
        return RecurringCreditPurchase.objects.filter(topup=topup)
    return AutoTopUpSettings.objects.filter(account_id=topup.account_id)


def end_backoff(*, topup: TopUp, now: datetime) -> None:
    """End the back-off of an off-session top-up that was paid (the account is locked)."""
    if topup.kind == TopUpKind.RECURRING:
        # `attempts` keeps numbering the period's keys; only the back-off ends.
        retry_state(topup).update(consecutive_failures=0, next_attempt_at=None, updated_at=now)
        return
    retry_state(topup).update(
        consecutive_failures=0, attempts=0, next_attempt_at=None, updated_at=now
    )
