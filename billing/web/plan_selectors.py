"""What the Billing page shows about plans: "Your plan and rates" (issue 17) and the plans a
customer may move to, compared (SPEC F2). Plain data for the templates.

The panel reads `GET /api/v1/pricing`'s selector (usage.selectors.pricing_for) and turns it into
text for people: unit rates with the decimals they need (`format_rate`), amounts in cents.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from accounts.models import Account
from billing.models import Plan, Subscription
from billing.money import format_rate, format_usd, usd_to_micros
from billing.payments.plan_changes import NOW, is_downgrade, self_serve_timing
from billing.plans.fees import plan_fee_micros
from usage.selectors import pricing_for, rates_in_effect


def _rate_label(component: str, key: str) -> str:
    return {
        "call": "Call minute",
        "llm": f"Call minute with {key}",
        "voice_engine": "Voice engine minute",
        "destination": f"Surcharge per minute to {key}",
        "chat": "Chat minute",
        "sms": "SMS message",
    }.get(component, component)


def _rate_text(component: str, price: str) -> str:
    unit = "message" if component == "sms" else "minute"
    return f"{format_rate(Decimal(price))} per {unit}"


def _cents(api_amount: str | None) -> str:
    return format_usd(usd_to_micros(api_amount)) if api_amount is not None else ""


def included_text(plan: Plan) -> str:
    """The included allowance of a period, as a person reads it."""
    parts = []
    if plan.included_minutes:
        parts.append(f"{plan.included_minutes:,} minutes")
    if plan.included_credit_micros:
        parts.append(f"{format_usd(plan.included_credit_micros)} of credit")
    return " and ".join(parts) + " a period" if parts else "None"


def plan_panel(*, account: Account, now: datetime) -> dict:
    """The account's plan and rates, as `GET /api/v1/pricing` answers them, for people."""
    pricing = pricing_for(account=account, now=now)
    plan = pricing["plan"]
    fee = usd_to_micros(plan["fee"])
    chat = plan["chat_messages_per_minute"]
    return {
        "name": plan["name"],
        "mode": "Prepaid" if plan["billing_mode"] == "prepaid" else "Postpaid",
        "fee": format_usd(fee) if fee else "",
        "fee_payment": "from your credit" if plan["fee_payment"] == "credit" else "by card",
        "rates": [
            {
                "label": _rate_label(rate["component"], rate["key"]),
                "price": _rate_text(rate["component"], rate["price"]),
                "exact": rate["price"],
                "custom": rate["custom"],
            }
            for rate in pricing["rates"]
        ],
        "model_prices": [
            {
                "model": f"{price['provider']}/{price['model']}",
                "input": format_rate(Decimal(price["input_per_million"])),
                "output": format_rate(Decimal(price["output_per_million"])),
            }
            for price in pricing["model_prices"]
        ],
        "rounding": "up to the next second"
        if plan["rounding"] == "up"
        else "to the nearest second",
        "minute_aggregation": plan["minute_aggregation"],
        "unanswered_flat_seconds": plan["unanswered_flat_seconds"],
        "outbound_calls_free": plan["outbound_calls_free"],
        "chat": f"Every {chat} chat messages make one billable minute" if chat else "",
        "included_minutes": plan["included_minutes"],
        "included_credit": _cents(plan["included_credit"])
        if usd_to_micros(plan["included_credit"])
        else "",
        "rollover": plan["rollover_available"],
        "minimum_topup": _cents(plan["minimum_topup"]),
        "low_balance_threshold": _cents(plan["low_balance_threshold"]),
        "billing_threshold": _cents(plan["billing_threshold"]),
        "minimum_charge": _cents(plan["minimum_charge"])
        if usd_to_micros(plan["minimum_charge"])
        else "",
    }


@dataclass(frozen=True)
class PlanOption:
    plan: Plan
    fee: str
    rates: list[tuple[str, str]]
    included: str
    rollover: bool
    current: bool
    pending: bool
    downgrade: bool
    at_once: bool


def plans_open_to(*, account: Account) -> list[Plan]:
    """The plans a customer may move this account to: open to changes, same billing mode."""
    return list(
        Plan.objects.filter(selectable_for_change=True, billing_mode=account.billing_mode).order_by(
            "name"
        )
    )


def plan_options(*, account: Account, now: datetime) -> list[PlanOption]:
    """The current plan first, then each plan open to the account, compared."""
    subscription = Subscription.objects.select_related("plan").get(account=account)
    current = subscription.plan
    plans = [current] + [p for p in plans_open_to(account=account) if p.pk != current.pk]
    options = []
    for plan in plans:
        fee = plan_fee_micros(plan=plan, at=now)
        options.append(
            PlanOption(
                plan=plan,
                fee=format_usd(fee) if fee else "None",
                rates=[
                    (_rate_label(r.component, r.key), _rate_text(r.component, str(r.price)))
                    for r in rates_in_effect(plan=plan, account=None, now=now)
                ],
                included=included_text(plan),
                rollover=plan.rollover_available,
                current=plan.pk == current.pk,
                pending=plan.pk == subscription.pending_plan_id,
                downgrade=is_downgrade(old_plan=current, new_plan=plan, at=now),
                at_once=self_serve_timing(old_plan=current, new_plan=plan, at=now) == NOW,
            )
        )
    return options
