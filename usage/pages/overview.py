"""The figures of the dashboard's overview page (SPEC D1), as plain data.

Everything comes from the daily rollups and a few indexed rows (subscription, allowance,
credit grant, invoices, notifications): a handful of queries whatever the account's volume.

Definitions, as the page states them:
- the period is the subscription's current billing period [start, end); it resets on `end`;
- average daily usage is the period's usage so far divided by the days of the period so far
  (today included);
- the projection adds that average for each day left in the period;
- peak days are the three days of highest cost in the last 30 days;
- the trend compares the last 7 days with the 7 days before them.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from accounts.models import Account
from billing.invoicing.documents import invoice_summary, issued_invoices
from billing.models import Allowance, Notification, Subscription
from billing.money import format_usd
from billing.periods import current_period, period_last_day
from billing.plans.allowances import (
    included_credit,
    period_included_credit_micros,
    period_included_seconds,
)
from usage.pages.runway import credit_runway_days, runway_sentence
from usage.reads.rollups import Spend, daily_spend

TREND_DAYS = 30
PEAK_DAYS = 3
COMPARE_DAYS = 7
SECONDS_PER_MINUTE = 60

NOTIFICATION_TITLES = {
    "low_balance": "Low balance",
    "zero_balance": "Out of credit",
    "allowance_used": "Included allowance",
    "budget_reached": "Budget reached",
    "invoice_issued": "Invoice issued",
    "invoice_paid": "Invoice paid",
    "invoice_payment_failed": "Invoice payment failed",
    "auto_topup_succeeded": "Auto-top-up",
    "auto_topup_failed": "Auto-top-up failed",
    "auto_topup_action_required": "Card needs your approval",
    "topup_receipt": "Top-up received",
}


@dataclass
class Day:
    day: date
    cost_micros: int = 0
    seconds: int = 0
    items: int = 0

    @property
    def minutes(self) -> float:
        return self.seconds / SECONDS_PER_MINUTE


def daily_usage(*, account: Account, first_day: date, last_day: date) -> dict[date, Day]:
    """Return the net cost, call seconds and items of each day in [first_day, last_day]."""
    spend = daily_spend(account=account, first_day=first_day, end_day=last_day + timedelta(days=1))
    days = {}
    for n in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=n)
        spent = spend.get(day, Spend())
        days[day] = Day(
            day, cost_micros=spent.net_micros, seconds=spent.minute_seconds, items=spent.items
        )
    return days


def _allowance(*, account: Account, subscription: Subscription, start, end) -> dict | None:
    plan = subscription.plan
    # A row on a plan without included minutes: the period an immediate plan change was made
    # in keeps the minutes it began with (S2).
    row = Allowance.objects.filter(account=account, period_start=start).first()
    if row is not None or plan.included_minutes:
        locked = subscription.allowance_locked
        total = (
            row.total_seconds
            if row
            else period_included_seconds(plan=plan, allowance_locked=locked)
        )
        used = row.used_seconds if row else 0
        return {
            "unit": "minutes",
            "total": total // SECONDS_PER_MINUTE,
            "used": used // SECONDS_PER_MINUTE,
            "remaining": max(total - used, 0) // SECONDS_PER_MINUTE,
            "rollover": (row.rollover_seconds // SECONDS_PER_MINUTE) if row else 0,
            "percent": min(round(used * 100 / total), 100) if total else 0,
            "used_raw": used,
            "total_raw": total,
        }
    if plan.included_credit_micros:
        credit = included_credit(account=account, period_end=end)
        total = (
            credit.amount_micros
            if credit
            else period_included_credit_micros(
                plan=plan, allowance_locked=subscription.allowance_locked
            )
        )
        used = credit.used_micros if credit else 0
        return {
            "unit": "usd",
            "total": format_usd(total),
            "used": format_usd(used),
            "remaining": format_usd(max(total - used, 0)),
            "rollover": 0,
            "percent": min(round(used * 100 / total), 100) if total else 0,
            "used_raw": used,
            "total_raw": total,
        }
    return None


def _percent_change(recent: int, before: int) -> int | None:
    if before <= 0:
        return None
    return round((recent - before) * 100 / before)


def overview(account: Account, now: datetime) -> dict:
    """Return everything the overview page shows for the account at `now`."""
    subscription = Subscription.objects.select_related("plan").get(account=account)
    plan = subscription.plan
    start, end = current_period(subscription=subscription, now=now)
    today = now.date()
    period_first = start.date()
    period_last = period_last_day(end)
    window_first = min(period_first, today - timedelta(days=TREND_DAYS - 1))
    days = daily_usage(account=account, first_day=window_first, last_day=today)

    in_period = [d for d in days.values() if d.day >= period_first]
    elapsed = max((today - period_first).days + 1, 1)
    total_days = (period_last - period_first).days + 1
    left = max(total_days - elapsed, 0)
    period_cost = sum(d.cost_micros for d in in_period)
    period_seconds = sum(d.seconds for d in in_period)
    avg_cost = period_cost // elapsed
    avg_seconds = period_seconds // elapsed
    projected_cost = period_cost + avg_cost * left
    projected_seconds = period_seconds + avg_seconds * left

    trend = [days[today - timedelta(days=n)] for n in range(TREND_DAYS - 1, -1, -1)]
    recent = trend[-COMPARE_DAYS:]
    before = trend[-2 * COMPARE_DAYS : -COMPARE_DAYS]
    uses_minutes = bool(plan.included_minutes) or any(d.seconds for d in trend)
    measure = (lambda d: d.seconds) if uses_minutes else (lambda d: d.cost_micros)
    peaks = sorted((d for d in trend if measure(d) > 0), key=lambda d: (-measure(d), d.day))

    allowance = _allowance(account=account, subscription=subscription, start=start, end=end)
    if allowance and allowance["unit"] == "minutes" and allowance["total_raw"]:
        projected_used = (allowance["used_raw"] or 0) + avg_seconds * left
        allowance["projected_percent"] = round(projected_used * 100 / allowance["total_raw"])
    elif allowance and allowance["total_raw"]:
        projected_used = allowance["used_raw"] + avg_cost * left
        allowance["projected_percent"] = round(projected_used * 100 / allowance["total_raw"])

    runway_days = credit_runway_days(account=account, now=now)
    invoices = [invoice_summary(i) for i in issued_invoices(account=account)[:5]]
    alerts = [
        {
            "title": NOTIFICATION_TITLES.get(n.kind, n.kind.replace("_", " ").capitalize()),
            "kind": n.kind,
            "at": n.created_at,
            "detail": _alert_detail(n),
        }
        for n in Notification.objects.filter(account=account).order_by("-created_at")[:6]
    ]
    return {
        "plan": plan,
        "is_prepaid": account.is_prepaid,
        "balance_micros": account.balance_micros,
        "held_micros": account.held_micros,
        "available_micros": account.balance_micros - account.held_micros,
        "unbilled_micros": account.unbilled_micros,
        "billing_threshold_micros": plan.billing_threshold_micros,
        "past_due_since": account.past_due_since,
        "period_start": start,
        "period_end": end,
        "period_last_day": period_last,
        "days_until_reset": (end.date() - today).days,
        "days_elapsed": elapsed,
        "days_in_period": total_days,
        "uses_minutes": uses_minutes,
        "period_cost_micros": period_cost,
        "period_minutes": period_seconds // SECONDS_PER_MINUTE,
        "average_cost_micros": avg_cost,
        "average_minutes": round(avg_seconds / SECONDS_PER_MINUTE, 1),
        "projected_cost_micros": projected_cost,
        "projected_minutes": projected_seconds // SECONDS_PER_MINUTE,
        "allowance": allowance,
        "peak_days": [
            {"day": d.day, "cost_micros": d.cost_micros, "minutes": d.seconds // 60}
            for d in peaks[:PEAK_DAYS]
        ],
        "trend_percent": _percent_change(
            sum(measure(d) for d in recent), sum(measure(d) for d in before)
        ),
        # The chart's figures as rows, for its table (read without JavaScript or a screen).
        "trend_days": [
            {"day": d.day, "cost_micros": d.cost_micros, "minutes": round(d.minutes, 1)}
            for d in trend
        ],
        "chart": {
            "labels": [d.day.isoformat() for d in trend],
            "cost_micros": [d.cost_micros for d in trend],
            "minutes": [round(d.minutes, 1) for d in trend] if uses_minutes else [],
        },
        "runway_days": runway_days,
        "runway_sentence": runway_sentence(runway_days),
        "invoices": invoices,
        "alerts": alerts,
    }


def _alert_detail(notification: Notification) -> str:
    context = notification.context or {}
    kind = notification.kind
    if kind == "low_balance":
        return f"Balance {context.get('balance', '')} fell below {context.get('threshold', '')}."
    if kind == "zero_balance":
        return "The balance reached zero; billable usage is paused until you top up."
    if kind == "allowance_used":
        return f"{context.get('percent', '')}% of the included {context.get('included', '')} used."
    if kind == "budget_reached":
        return f"{context.get('label', '')}: spent {context.get('spend', '')}."
    if kind.startswith("invoice_"):
        return str(context.get("number", ""))
    if "amount" in context:
        return str(context["amount"])
    return ""
