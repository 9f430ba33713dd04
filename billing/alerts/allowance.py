"""Allowance alerts (SPEC N2): 80% and 100% of the period's included minutes or credit."""

from datetime import datetime

from billing import events
from billing.alerts.balance import alert_state
from billing.ledger.locks import LockedAccount
from billing.models import (
    AlertSettings,
    Allowance,
    CreditGrant,
    EntryKind,
    Subscription,
)
from billing.money import format_usd
from billing.notifications.outbox import notify
from billing.periods import current_period

ALLOWANCE_USED = "allowance_used"


ALLOWANCE_LEVELS = (80, 100)  # percent of the period's allowance


def usage_charged(
    *,
    locked: LockedAccount,
    subscription: Subscription,
    allowance: Allowance | None,
    charged_micros: int,
    now: datetime,
) -> AlertSettings:
    """Send the allowance alerts a batch of usage reached (the account is locked).

    `allowance` is the period's allowance if the batch used included minutes (else None);
    `charged_micros` is what the batch took from the balance. Return the account's alert
    settings (usage charging then checks budgets if the account has any).
    """
    account = locked.account
    state = alert_state(locked=locked, before_micros=account.balance_micros).settings
    plan = subscription.plan
    if allowance is not None:
        _allowance_alert(
            account,
            state,
            start=allowance.period_start,
            end=allowance.period_end,
            used=allowance.used_seconds,
            total=allowance.total_seconds,
            describe=_minutes_text,
            now=now,
        )
    elif plan.included_credit_micros and charged_micros:
        start, end = current_period(subscription=subscription, now=now)
        if state.allowance_period_start != start or state.allowance_alerted_percent < 100:
            # Included credit is the grant of kind ALLOWANCE that expires with the period.
            grant = CreditGrant.objects.filter(
                account=account, kind=EntryKind.ALLOWANCE, expires_at=end
            ).first()
            if grant is not None:
                _allowance_alert(
                    account,
                    state,
                    start=start,
                    end=end,
                    used=grant.amount_micros - grant.remaining_micros,
                    total=grant.amount_micros,
                    describe=format_usd,
                    now=now,
                )
    return state


def allowance_level(*, used: int, total: int) -> int:
    """Return the highest alert level (80 or 100 percent) reached, or 0."""
    if total <= 0:
        return 0
    reached = [level for level in ALLOWANCE_LEVELS if used * 100 >= level * total]
    return max(reached, default=0)


def _allowance_alert(account, state, *, start, end, used, total, describe, now) -> None:
    level = allowance_level(used=used, total=total)
    fields = []
    if state.allowance_period_start != start:
        state.allowance_period_start = start
        state.allowance_alerted_percent = 0
        fields += ["allowance_period_start", "allowance_alerted_percent"]
    if level > state.allowance_alerted_percent:
        # One email for the highest level reached: a batch that jumps from 50% to 100% does
        # not also announce 80%.
        state.allowance_alerted_percent = level
        fields.append("allowance_alerted_percent")
        events.allowance_threshold_reached(
            account=account,
            percent=level,
            used=used,
            included=total,
            unit="usd" if describe is format_usd else "seconds",
            start=start,
            end=end,
            now=now,
        )
        notify(
            account=account,
            kind=ALLOWANCE_USED,
            key=f"allowance_{level}:{account.public_id}:{start:%Y%m%d}",
            context={
                "percent": level,
                "used": describe(used),
                "included": describe(total),
                "remaining": describe(max(total - used, 0)),
                "is_credit": describe is format_usd,
                "resets_on": f"{end:%d %B %Y}",
            },
            now=now,
        )
    if fields:
        AlertSettings.objects.filter(pk=state.pk).update(
            **{field: getattr(state, field) for field in dict.fromkeys(fields)}
        )


def _minutes_text(seconds: int) -> str:
    return f"{seconds // 60:,} minutes"
