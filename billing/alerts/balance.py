"""Low-balance and zero-balance alerts (SPEC N1); allowance alerts are in billing.alerts.allowance.

Both entry points run on the usage hot path, under the account's row lock, in the transaction
that moved the balance or recorded the usage:

- `balance_changed` (called by billing.ledger after every balance change) emails once per
  crossing of the low-balance threshold and once on reaching zero, with hysteresis: an alert is
  disarmed when it fires and armed again only when the balance is back at or above the
  threshold (above zero for the zero alert). A balance bouncing around the threshold sends one
  email, and 20 concurrent deductions crossing it send one (they are serialized by the lock and
  each sees the flag the previous one left).
- `usage_charged` (called by usage.charging when a batch is written) emails at 80% and 100% of
  the period's included minutes or included credit, once per period each, and checks budgets.

Cost when nothing crosses: nothing on the usage hot path, where the settings and the plan's
defaults are read with the account's lock (`LockedAccount.watch`); one query elsewhere.
Postpaid balances are not watched (they go below zero as a matter of course and are
invoiced), so `balance_changed` costs them nothing.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F, QuerySet

from accounts.models import Account
from billing import events
from billing.ledger.locks import LockedAccount, lock_account
from billing.models import (
    AlertSettings,
    Notification,
    NotificationStatus,
    Plan,
)
from billing.money import format_usd
from billing.notifications.outbox import notify

LOW_BALANCE = "low_balance"
ZERO_BALANCE = "zero_balance"


# Settings and their state ---------------------------------------------------------------------


def alert_settings_for(*, account: Account) -> AlertSettings:
    """Return the account's alert settings for display; unsaved defaults when it has none."""
    settings = AlertSettings.objects.filter(account=account).first()
    return settings if settings is not None else AlertSettings(account=account)


def low_balance_threshold_micros(*, account: Account) -> int:
    """Return the threshold in force: the customer's own, else the plan's default."""
    own = (
        AlertSettings.objects.filter(account=account)
        .values_list("low_balance_threshold_micros", flat=True)
        .first()
    )
    if own is not None:
        return own
    plan_default = (
        Plan.objects.filter(subscriptions__account=account)
        .values_list("low_balance_threshold_micros", flat=True)
        .first()
    )
    return plan_default or 0


def update_alert_settings(
    *,
    account: Account,
    now: datetime,
    low_balance_threshold_micros: int | None = None,
    use_plan_threshold: bool = False,
    **email_choices: bool,
) -> AlertSettings:
    """Change the threshold (or go back to the plan's) and the email choices of an account.

    `email_choices` are AlertSettings' `email_*` fields. A threshold at or below the balance
    arms the low-balance alert; one above it leaves the alert as it was, so the next deduction
    tells the customer they are under their new threshold.
    """
    unknown = set(email_choices) - {
        f.name for f in AlertSettings._meta.fields if f.name.startswith("email_")
    }
    if unknown:
        raise ValueError(f"Unknown email choices: {', '.join(sorted(unknown))}")
    if low_balance_threshold_micros is not None and low_balance_threshold_micros < 0:
        raise ValueError("A low-balance threshold cannot be negative.")
    with transaction.atomic():
        locked = lock_account(account.pk)
        balance = locked.account.balance_micros
        state = alert_state(locked=locked, before_micros=balance)
        settings = state.settings
        if use_plan_threshold:
            settings.low_balance_threshold_micros = None
        elif low_balance_threshold_micros is not None:
            settings.low_balance_threshold_micros = low_balance_threshold_micros
        if balance >= state.threshold_micros:
            settings.low_balance_armed = True
        for field, value in email_choices.items():
            setattr(settings, field, bool(value))
        settings.updated_at = now
        settings.save()
    return settings


@dataclass(frozen=True)
class AlertState:
    """A locked account's alert settings (the row, changed in place as alerts fire) and the
    defaults of its plan, which apply where the customer set nothing."""

    settings: AlertSettings
    plan_threshold_micros: int
    plan_zero_balance_alert: bool

    @property
    def threshold_micros(self) -> int:
        """The low-balance threshold in force: the customer's own, else the plan's."""
        own = self.settings.low_balance_threshold_micros
        return own if own is not None else self.plan_threshold_micros


def alert_state(*, locked: LockedAccount, before_micros: int) -> AlertState:
    """Return the locked account's alert state, creating its settings row if it has none.

    Read with the lock when the lock holder did (`locked.watch`, the usage hot path: no query),
    else with one query that joins the plan's defaults.
    """
    account = locked.account
    watch = locked.watch
    if watch is not None and watch.alert_settings is not None:
        return AlertState(
            settings=watch.alert_settings,
            plan_threshold_micros=watch.plan_low_balance_threshold_micros,
            plan_zero_balance_alert=watch.plan_zero_balance_alert,
        )
    if watch is None:
        row = _with_plan_defaults(AlertSettings.objects.filter(account_id=account.pk)).first()
        if row is not None:
            return _state_of(row)
    return _create_state(account, before_micros=before_micros)


def _with_plan_defaults(settings: QuerySet) -> QuerySet:
    return settings.annotate(
        plan_threshold=F("account__subscription__plan__low_balance_threshold_micros"),
        plan_zero_alert=F("account__subscription__plan__zero_balance_alert"),
    )


def _state_of(row: AlertSettings) -> AlertState:
    # The plan's defaults are read off the annotated row here, once; they travel in the state.
    return AlertState(
        settings=row,
        plan_threshold_micros=row.plan_threshold or 0,
        plan_zero_balance_alert=bool(row.plan_zero_alert),
    )


def _create_state(account: Account, *, before_micros: int) -> AlertState:
    plan = (
        Plan.objects.filter(subscriptions__account=account)
        .values("low_balance_threshold_micros", "zero_balance_alert")
        .first()
    ) or {"low_balance_threshold_micros": 0, "zero_balance_alert": False}
    threshold = plan["low_balance_threshold_micros"]
    # Armed only if the balance was at or above the line before this change: an account that
    # never had more than its threshold has not crossed it.
    settings, _ = AlertSettings.objects.get_or_create(
        account=account,
        defaults={
            "low_balance_armed": before_micros >= threshold,
            "zero_balance_armed": before_micros > 0,
        },
    )
    return AlertState(
        settings=settings,
        plan_threshold_micros=threshold,
        plan_zero_balance_alert=plan["zero_balance_alert"],
    )


# Low balance and zero balance (N1): a balance watcher (billing.ledger.watchers) ---------------


def balance_changed(*, locked: LockedAccount, before_micros: int, now: datetime) -> None:
    """Send the low-balance alert once per crossing; re-arm when the balance rises again."""
    if not locked.account.is_prepaid:
        return
    state = alert_state(locked=locked, before_micros=before_micros)
    _balance_moved(locked.account, state, before_micros=before_micros, now=now)


def balances_changed(*, changes, now: datetime) -> None:
    """`balance_changed` for many locked accounts, their settings read in one query.

    `changes` holds (LockedAccount, balance before). An account without settings whose balance
    rose is left without them: created now, its alerts would be armed exactly as they will be
    when its next change creates them (armed if the balance is at or above the line), so
    nothing is lost and the insert is saved.
    """
    watched = [
        (locked.account, before)
        for locked, before in changes
        if locked.account.is_prepaid and locked.account.balance_micros != before
    ]
    if not watched:
        return
    rows = _with_plan_defaults(
        AlertSettings.objects.filter(account_id__in=[a.pk for a, _ in watched])
    )
    states = {row.account_id: _state_of(row) for row in rows}
    for account, before in watched:
        state = states.get(account.pk)
        if state is None:
            if account.balance_micros > before:
                continue
            state = _create_state(account, before_micros=before)
        _balance_moved(account, state, before_micros=before, now=now)


def _balance_moved(account: Account, state: AlertState, *, before_micros: int, now) -> None:
    settings = state.settings
    after = account.balance_micros
    threshold = state.threshold_micros
    changed: list[str] = []
    if after < before_micros:
        reaches_zero = state.plan_zero_balance_alert and settings.zero_balance_armed
        reaches_zero = reaches_zero and after <= 0
        goes_low = threshold > 0 and settings.low_balance_armed and after < threshold
        if reaches_zero:
            settings.zero_balance_armed = False
            settings.zero_balance_crossings += 1
            changed += ["zero_balance_armed", "zero_balance_crossings"]
            _notify_zero(account, settings, now)
            events.balance_crossed("balance.depleted", account=account, threshold_micros=0, now=now)
        if goes_low:
            settings.low_balance_armed = False
            settings.low_balance_crossings += 1
            changed += ["low_balance_armed", "low_balance_crossings"]
            events.balance_crossed(
                "balance.low", account=account, threshold_micros=threshold, now=now
            )
            # Straight from above the threshold to nothing: the out-of-credit email says it
            # all, unless the customer turned that one off.
            if not (reaches_zero and settings.email_zero_balance):
                _notify_low(account, settings, threshold, now)
    else:
        if not settings.low_balance_armed and after >= threshold:
            settings.low_balance_armed = True
            changed.append("low_balance_armed")
        if not settings.zero_balance_armed and after > 0:
            settings.zero_balance_armed = True
            changed.append("zero_balance_armed")
        if changed:
            _retract_same_instant_alerts(account, now)
    if changed:
        AlertSettings.objects.filter(pk=settings.pk).update(
            **{field: getattr(settings, field) for field in changed}
        )


def _retract_same_instant_alerts(account: Account, now: datetime) -> None:
    """Withdraw a balance alert raised at this same instant and not sent yet.

    Period close writes off the included credit of the ending period and grants the next one in
    one transaction, at one `now`: the balance touches zero and rises again. That is no crossing
    the customer should hear of. (Separate operations never share a `now` to the microsecond.)
    """
    Notification.objects.filter(
        account=account,
        kind__in=[LOW_BALANCE, ZERO_BALANCE],
        status=NotificationStatus.PENDING,
        created_at=now,
    ).delete()
    events.balance_alerts_withdrawn(account=account, now=now)


def _notify_low(account: Account, state: AlertSettings, threshold: int, now: datetime) -> None:
    notify(
        account=account,
        kind=LOW_BALANCE,
        key=f"{LOW_BALANCE}:{account.public_id}:{state.low_balance_crossings}",
        context={
            "balance": format_usd(account.balance_micros),
            "balance_micros": account.balance_micros,
            "threshold": format_usd(threshold),
            "crossing": state.low_balance_crossings,
        },
        now=now,
    )


def _notify_zero(account: Account, state: AlertSettings, now: datetime) -> None:
    notify(
        account=account,
        kind=ZERO_BALANCE,
        key=f"{ZERO_BALANCE}:{account.public_id}:{state.zero_balance_crossings}",
        context={
            "balance": format_usd(account.balance_micros),
            "crossing": state.zero_balance_crossings,
        },
        now=now,
    )


# Allowance (N2) and budgets (G4) after a batch of usage ------------------------------------------
