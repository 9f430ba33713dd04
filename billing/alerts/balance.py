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

Cost when nothing crosses: one query per batch, which loads the account's `AlertSettings` with
its plan's defaults (joined) and leaves it in the account's related-object cache, so the second
hook of the same batch reads it from there. Postpaid balances are not watched (they go below
zero as a matter of course and are invoiced), so `balance_changed` costs them nothing.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import F

from accounts.models import Account
from billing.ledger.locks import lock_account
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
        state = locked_alert_settings(locked, before_micros=locked.balance_micros)
        if use_plan_threshold:
            state.low_balance_threshold_micros = None
        elif low_balance_threshold_micros is not None:
            state.low_balance_threshold_micros = low_balance_threshold_micros
        if locked.balance_micros >= _threshold(state):
            state.low_balance_armed = True
        for field, value in email_choices.items():
            setattr(state, field, bool(value))
        state.updated_at = now
        state.save()
    return state


def locked_alert_settings(account: Account, *, before_micros: int) -> AlertSettings:
    """Return the locked account's settings with its plan's defaults, creating them if needed.

    Cached in the account's related-object cache for the rest of the locked transaction: the
    account instance comes from `lock_account` and lives as long as the lock.
    """
    cached = Account.alert_settings.related.get_cached_value(account, default=None)
    if cached is not None and hasattr(cached, "plan_threshold_micros"):
        return cached
    state = (
        AlertSettings.objects.filter(account_id=account.pk)
        .annotate(
            plan_threshold_micros=F("account__subscription__plan__low_balance_threshold_micros"),
            plan_zero_balance_alert=F("account__subscription__plan__zero_balance_alert"),
        )
        .first()
    )
    if state is None:
        state = _create_state(account, before_micros=before_micros)
    account.alert_settings = state
    return state


def _create_state(account: Account, *, before_micros: int) -> AlertSettings:
    plan = (
        Plan.objects.filter(subscriptions__account=account)
        .values("low_balance_threshold_micros", "zero_balance_alert")
        .first()
    ) or {"low_balance_threshold_micros": 0, "zero_balance_alert": False}
    threshold = plan["low_balance_threshold_micros"]
    # Armed only if the balance was at or above the line before this change: an account that
    # never had more than its threshold has not crossed it.
    state, _ = AlertSettings.objects.get_or_create(
        account=account,
        defaults={
            "low_balance_armed": before_micros >= threshold,
            "zero_balance_armed": before_micros > 0,
        },
    )
    state.plan_threshold_micros = threshold
    state.plan_zero_balance_alert = plan["zero_balance_alert"]
    return state


def _threshold(state: AlertSettings) -> int:
    if state.low_balance_threshold_micros is not None:
        return state.low_balance_threshold_micros
    return getattr(state, "plan_threshold_micros", None) or 0


# Low balance and zero balance (N1) -------------------------------------------------------------


def balance_changed(*, account: Account, before_micros: int, now: datetime) -> None:
    """Send the low-balance alert once per crossing; re-arm when the balance rises again."""
    if not account.is_prepaid:
        return
    after = account.balance_micros
    state = locked_alert_settings(account, before_micros=before_micros)
    threshold = _threshold(state)
    changed: list[str] = []
    if after < before_micros:
        reaches_zero = bool(state.plan_zero_balance_alert) and state.zero_balance_armed
        reaches_zero = reaches_zero and after <= 0
        goes_low = threshold > 0 and state.low_balance_armed and after < threshold
        if reaches_zero:
            state.zero_balance_armed = False
            state.zero_balance_crossings += 1
            changed += ["zero_balance_armed", "zero_balance_crossings"]
            _notify_zero(account, state, now)
        if goes_low:
            state.low_balance_armed = False
            state.low_balance_crossings += 1
            changed += ["low_balance_armed", "low_balance_crossings"]
            # Straight from above the threshold to nothing: the out-of-credit email says it
            # all, unless the customer turned that one off.
            if not (reaches_zero and state.email_zero_balance):
                _notify_low(account, state, threshold, now)
    else:
        if not state.low_balance_armed and after >= threshold:
            state.low_balance_armed = True
            changed.append("low_balance_armed")
        if not state.zero_balance_armed and after > 0:
            state.zero_balance_armed = True
            changed.append("zero_balance_armed")
        if changed:
            _retract_same_instant_alerts(account, now)
    if changed:
        AlertSettings.objects.filter(pk=state.pk).update(
            **{field: getattr(state, field) for field in changed}
        )


def balances_changed(*, changes, now: datetime) -> None:
    """`balance_changed` for many locked accounts, their settings read in one query.

    `changes` holds (account, balance before). An account without settings whose balance
    rose is left without them: created now, its alerts would be armed exactly as they will be
    when its next change creates them (armed if the balance is at or above the line), so
    nothing is lost and the insert is saved.
    """
    watched = [(a, before) for a, before in changes if a.is_prepaid and a.balance_micros != before]
    if not watched:
        return
    states = {
        state.account_id: state
        for state in AlertSettings.objects.filter(
            account_id__in=[a.pk for a, _ in watched]
        ).annotate(
            plan_threshold_micros=F("account__subscription__plan__low_balance_threshold_micros"),
            plan_zero_balance_alert=F("account__subscription__plan__zero_balance_alert"),
        )
    }
    for account, before in watched:
        state = states.get(account.pk)
        if state is not None:
            account.alert_settings = state  # what locked_alert_settings would have loaded
        elif account.balance_micros > before:
            continue
        balance_changed(account=account, before_micros=before, now=now)


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
