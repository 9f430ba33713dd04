"""Auto-top-up when a deduction leaves the balance below the customer's threshold (SPEC P2).

`balance_changed` runs inside every balance change, holding the account's row lock (see
`billing.ledger.watchers`). A deduction that leaves the balance below the threshold while the
settings are *armed* records the crossing there and then: it disarms, numbers the crossing and
inserts a pending auto-top-up whose key names the account, the crossing and the attempt. Because
all of that happens under the lock, 50 concurrent deductions crossing the threshold see one
crossing and make one charge. The charge itself runs after commit (billing.payments.off_session),
and its result goes through the same `fulfil_topup` as a webhook.

Rules:
- one charge per crossing; none while one is pending or waits for the customer's authentication;
- a decline backs off (1 h, 6 h, 24 h), then waits for the customer; the retry job and the next
  deduction after the back-off try again with a new attempt of the same crossing;
- a card that needs authentication gets the customer an email with a link, never a retry;
- at most `monthly_cap_micros` per calendar month (UTC) of auto-top-ups that were not declined;
- the balance rising back to the threshold re-arms it; so does saving the settings.

The charge task, the decline back-off (billing.payments.backoff), the authentication email and
the retry of lost charges also serve the recurring credit purchases of
billing.payments.recurring_credit.
"""

import logging
from datetime import datetime
from functools import partial

from django.db import transaction
from django.db.models import Sum

from accounts.models import Account
from billing.ledger.locks import LockedAccount, lock_account
from billing.models import (
    OFF_SESSION_KINDS,
    AutoTopUpSettings,
    PaymentMethod,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.money import MICROS_PER_CENT, MoneyError, format_usd, micros_to_cents
from billing.notifications.outbox import notify
from billing.payments.backoff import update_row
from billing.payments.off_session import STALE_PENDING, WAITING_STATUSES, queue_charge
from billing.payments.topups import minimum_topup_micros, new_topup

logger = logging.getLogger(__name__)


class AutoTopUpError(ValueError):
    """Auto-top-up settings were refused; the message is for the customer."""


def save_auto_topup_settings(
    *,
    account: Account,
    enabled: bool,
    threshold_micros: int,
    now: datetime,
    amount_micros: int | None = None,
    target_micros: int | None = None,
    monthly_cap_micros: int | None = None,
) -> AutoTopUpSettings:
    """Validate and save the account's auto-top-up; saving re-arms it."""
    plan = account.subscription.plan
    if enabled and not plan.auto_topup_allowed:
        raise AutoTopUpError(f"Auto-top-up is not available on the {plan.name} plan.")
    if (amount_micros is None) == (target_micros is None):
        raise AutoTopUpError("Choose either an amount to add or a balance to reach.")
    if threshold_micros < 0:
        raise AutoTopUpError("The threshold cannot be negative.")
    minimum = minimum_topup_micros(account)
    for label, value in (("amount", amount_micros), ("target", target_micros)):
        if value is None:
            continue
        try:
            micros_to_cents(value)
        except MoneyError:
            raise AutoTopUpError(f"The {label} must be a whole number of cents.") from None
    if amount_micros is not None and amount_micros < minimum:
        raise AutoTopUpError(
            f"The amount must be at least the minimum top-up, {format_usd(minimum)}."
        )
    if target_micros is not None and target_micros <= threshold_micros:
        raise AutoTopUpError("The balance to reach must be above the threshold.")
    if monthly_cap_micros is not None and monthly_cap_micros < (amount_micros or minimum):
        raise AutoTopUpError("The monthly cap must allow at least one top-up.")
    if (
        enabled
        and not PaymentMethod.objects.filter(account=account, removed_at__isnull=True).exists()
    ):
        raise AutoTopUpError("Add a card first: auto-top-up charges your saved card.")
    with transaction.atomic():
        lock_account(account.pk)
        row, _ = AutoTopUpSettings.objects.update_or_create(
            account=account,
            defaults={
                "enabled": enabled,
                "threshold_micros": threshold_micros,
                "amount_micros": amount_micros,
                "target_micros": target_micros,
                "monthly_cap_micros": monthly_cap_micros,
                "armed": True,
                "attempts": 0,
                "consecutive_failures": 0,
                "next_attempt_at": None,
                "updated_at": now,
            },
        )
    return row


def rearm(*, account: Account, now: datetime) -> None:
    """Let the next deduction below the threshold charge again (a new or changed card)."""
    with transaction.atomic():
        lock_account(account.pk)
        AutoTopUpSettings.objects.filter(account=account).update(
            armed=True, attempts=0, consecutive_failures=0, next_attempt_at=None, updated_at=now
        )
        # A charge that waited for the old card's authentication gives way to the new card. If
        # the customer still pays it, `fulfil_topup` credits it all the same.
        TopUp.objects.filter(
            account=account, kind=TopUpKind.AUTO, status=TopUpStatus.REQUIRES_ACTION
        ).update(status=TopUpStatus.CANCELED, error="Replaced by a new card.", completed_at=now)


def balance_changed(*, locked: LockedAccount, before_micros: int, now: datetime) -> None:
    """Start one off-session charge per crossing of the auto-top-up threshold.

    A balance watcher (billing.ledger.watchers): called with the account locked, inside the
    transaction that changed the balance.
    """
    account = locked.account
    if not account.is_prepaid:
        return
    if locked.watch is not None:
        # Read with the account's lock (usage.charging.lock): no query.
        row = locked.watch.auto_topup
        row = row if row is not None and row.enabled else None
    else:
        row = AutoTopUpSettings.objects.filter(account_id=account.pk, enabled=True).first()
    if row is not None:
        _balance_moved(account=account, row=row, before_micros=before_micros, now=now)


def balances_changed(*, changes, now: datetime) -> None:
    """`balance_changed` for many locked accounts: (LockedAccount, before) pairs, one query."""
    watched = [(locked.account, before) for locked, before in changes if locked.account.is_prepaid]
    if not watched:
        return
    rows = {
        row.account_id: row
        for row in AutoTopUpSettings.objects.filter(
            account_id__in=[a.pk for a, _ in watched], enabled=True
        )
    }
    for account, before in watched:
        if account.pk in rows:
            _balance_moved(account=account, row=rows[account.pk], before_micros=before, now=now)


def _balance_moved(
    *, account: Account, row: AutoTopUpSettings, before_micros: int, now: datetime
) -> None:
    after = account.balance_micros
    if after >= row.threshold_micros:
        if not row.armed or row.next_attempt_at or row.consecutive_failures or row.attempts:
            update_row(
                row, now, armed=True, attempts=0, consecutive_failures=0, next_attempt_at=None
            )
        return
    if after < before_micros:
        _start_charge(account=account, row=row, now=now)


def _start_charge(*, account: Account, row: AutoTopUpSettings, now: datetime) -> TopUp | None:
    """Record one auto-top-up if one is due; the account is locked by the caller."""
    due = row.armed or (row.next_attempt_at is not None and row.next_attempt_at <= now)
    if not due:
        return None
    if TopUp.objects.filter(
        account=account, kind=TopUpKind.AUTO, status__in=WAITING_STATUSES
    ).exists():
        return None
    if not account.subscription.plan.auto_topup_allowed:
        return None
    amount = _charge_amount(row, balance_micros=account.balance_micros)
    amount = max(amount, minimum_topup_micros(account))
    if row.monthly_cap_micros is not None:
        spent = _spent_this_month(account=account, now=now)
        if spent + amount > row.monthly_cap_micros:
            update_row(row, now, armed=False, next_attempt_at=None)
            notify(
                account=account,
                kind="auto_topup_failed",
                key=f"auto_topup_cap:{account.public_id}:{now:%Y-%m}",
                context={
                    "reason": "monthly_cap",
                    "amount": format_usd(amount),
                    "cap": format_usd(row.monthly_cap_micros),
                    "error": "This month's auto-top-up cap is reached.",
                },
                now=now,
            )
            return None
    if row.armed:
        crossing, attempt = row.crossings + 1, 1
    else:
        crossing, attempt = row.crossings, row.attempts + 1
    topup = new_topup(
        account=account,
        kind=TopUpKind.AUTO,
        amount_micros=amount,
        now=now,
        key=f"auto-topup:{account.public_id}:{crossing}:{attempt}",
    )
    update_row(row, now, armed=False, crossings=crossing, attempts=attempt, next_attempt_at=None)
    transaction.on_commit(partial(queue_charge, topup.pk))
    return topup


def _charge_amount(row: AutoTopUpSettings, *, balance_micros: int) -> int:
    if row.amount_micros is not None:
        return row.amount_micros
    # Enough to reach the target, rounded up to whole cents (a card is charged in cents).
    missing = max(row.target_micros - balance_micros, 0)
    return -(-missing // MICROS_PER_CENT) * MICROS_PER_CENT


def _spent_this_month(*, account: Account, now: datetime) -> int:
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = (
        TopUp.objects.filter(account=account, kind=TopUpKind.AUTO, created_at__gte=month_start)
        .exclude(status__in=[TopUpStatus.FAILED, TopUpStatus.CANCELED])
        .aggregate(total=Sum("amount_micros"))["total"]
    )
    return total or 0


def retry_auto_topups(*, now: datetime) -> int:
    """The scheduled job: start retries whose back-off has passed; re-ask for lost charges."""
    started = 0
    due = AutoTopUpSettings.objects.filter(enabled=True, next_attempt_at__lte=now).values_list(
        "account_id", flat=True
    )
    for account_id in sorted(due):
        with transaction.atomic():
            account = lock_account(account_id).account
            row = AutoTopUpSettings.objects.filter(account=account, enabled=True).first()
            if (
                row is not None
                and account.is_prepaid
                and account.balance_micros < row.threshold_micros
                and _start_charge(account=account, row=row, now=now) is not None
            ):
                started += 1
    # Recurring purchases share the charge task, so a lost one is asked again here as well.
    stale = TopUp.objects.filter(
        kind__in=OFF_SESSION_KINDS,
        status=TopUpStatus.PENDING,
        created_at__lte=now - STALE_PENDING,
    ).values_list("pk", flat=True)
    for topup_id in stale:
        queue_charge(topup_id)
        started += 1
    return started
