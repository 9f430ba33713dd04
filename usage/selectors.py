"""Reads for the API and the dashboard: usage, balance and pricing as plain data."""

from datetime import datetime
from decimal import Decimal

from django.db.models import Q

from accounts.models import Account
from billing.ledger.grants import expired_credit_micros
from billing.models import Allowance, ModelPrice, Plan, Rate, Subscription
from billing.money import micros_to_api
from billing.periods import period_containing
from billing.plans.allowances import included_credit, period_included_seconds
from billing.plans.fees import plan_fee_micros
from usage.reads.keys import LoadedKey
from usage.reads.rollups import ComponentUsage, period_usage_by_component


def balance_summary(*, key: LoadedKey, now: datetime) -> dict:
    """Return the key's account's balance, without credit past its expiry (L5): the hourly job
    may not have written it off yet, and it is not there to spend."""
    account = key.account
    balance = account.balance_micros
    if key.has_expired_credit(now=now):
        balance -= expired_credit_micros(account_id=account.pk, now=now)
    return {
        "account": account.public_id,
        "customer": account.external_id,
        "balance": micros_to_api(balance),
        "held": micros_to_api(account.held_micros),
        "available": micros_to_api(balance - account.held_micros),
        "currency": "USD",
        "billing_mode": account.billing_mode,
    }


def _minutes(seconds: int) -> str:
    return str((Decimal(seconds) / 60).quantize(Decimal("0.01")))


def usage_summary(*, account: Account, now: datetime) -> dict:
    """The current period's usage from the daily rollups (never raw items)."""
    subscription = Subscription.objects.select_related("plan").get(account=account)
    start, end = subscription.current_period_start, subscription.current_period_end
    if now >= end or now < start:
        start, end = period_containing(anchor_day=subscription.anchor_day, moment=now)
    by = period_usage_by_component(account=account, start=start, end=end)

    def total(component: str, field: str) -> int:
        return getattr(by.get(component, ComponentUsage()), field)

    tokens_in = total("llm", "quantity") + total("embedding", "quantity")
    allowance = Allowance.objects.filter(account=account, period_start=start).first()
    included = period_included_seconds(
        plan=subscription.plan, allowance_locked=subscription.allowance_locked
    )
    total_allowance = allowance.total_seconds if allowance else included
    used = allowance.used_seconds if allowance else 0
    # Included credit (credits-monthly) as granted for this period; none granted reads zero.
    credit = included_credit(account=account, period_end=end)
    credit_amount = credit.amount_micros if credit else 0
    credit_used = credit.used_micros if credit else 0
    return {
        "account": account.public_id,
        "customer": account.external_id,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "minutes": _minutes(total("call", "quantity")),
        "calls": total("call", "items"),
        "sms": total("sms", "quantity"),
        "chat_messages": total("chat", "quantity"),
        "llm_requests": total("llm", "items") + total("flex", "items"),
        "input_tokens": tokens_in,
        "output_tokens": total("llm", "output_tokens"),
        "cost": micros_to_api(sum(u.cost_micros for u in by.values())),
        "refunded": micros_to_api(sum(u.refunded_micros for u in by.values())),
        "allowance_minutes": _minutes(total_allowance),
        "allowance_used_minutes": _minutes(used),
        "allowance_remaining_minutes": _minutes(max(total_allowance - used, 0)),
        "included_credit": micros_to_api(credit_amount),
        "included_credit_used": micros_to_api(credit_used),
        "included_credit_remaining": micros_to_api(credit_amount - credit_used),
        "balance": micros_to_api(account.balance_micros),
    }


def _plain(price: Decimal) -> str:
    """Return a price without trailing zeros and never in exponent form (10, not 1E+1)."""
    return format(price.normalize(), "f")


def rates_in_effect(*, plan: Plan, account: Account | None, now: datetime) -> list[Rate]:
    """Return the rates that apply now on `plan` (with `account`'s own, which win), one per
    component and key, in component and key order. Also what the Billing page compares plans by.
    """
    owners = Q(plan=plan) | Q(account=account) if account is not None else Q(plan=plan)
    rates: dict[tuple[str, str], Rate] = {}
    for rate in Rate.objects.filter(owners, effective_from__lte=now).order_by("effective_from"):
        ident = (rate.component, rate.key)
        current = rates.get(ident)
        # Account overrides win; otherwise the newest rate that has taken effect.
        if current is None or rate.account_id or not current.account_id:
            rates[ident] = rate
    return [rate for _, rate in sorted(rates.items())]


def pricing_for(*, account: Account, now: datetime) -> dict:
    """The plan, its rates and the model prices that apply to the account now."""
    plan = Subscription.objects.select_related("plan").get(account=account).plan
    rates = rates_in_effect(plan=plan, account=account, now=now)
    prices: dict[tuple[str, str], ModelPrice] = {}
    for price in ModelPrice.objects.filter(effective_from__lte=now).order_by("effective_from"):
        prices[(price.provider, price.model)] = price
    return {
        "plan": {
            "code": plan.code,
            "name": plan.name,
            "billing_mode": plan.billing_mode,
            "rounding": plan.rounding,
            "minute_aggregation": plan.minute_aggregation,
            "unanswered_flat_seconds": plan.unanswered_flat_seconds,
            "outbound_calls_free": plan.outbound_calls_free,
            "chat_messages_per_minute": plan.chat_messages_per_minute,
            "included_minutes": plan.included_minutes,
            "included_credit": micros_to_api(plan.included_credit_micros),
            "minimum_topup": micros_to_api(plan.min_topup_micros),
            "commission_percent": str(plan.commission_percent) if plan.commission_percent else None,
            "commission_excluded_providers": sorted(plan.excluded_providers),
            "minimum_charge": micros_to_api(plan.minimum_charge_micros),
            "rollover_available": plan.rollover_available,
            "fee": micros_to_api(plan_fee_micros(plan=plan, at=now)),
            "fee_payment": plan.fee_payment,
            "low_balance_threshold": micros_to_api(plan.low_balance_threshold_micros),
            "billing_threshold": micros_to_api(plan.billing_threshold_micros)
            if plan.billing_threshold_micros is not None
            else None,
        },
        "rates": [
            {
                "component": r.component,
                "key": r.key,
                "price": _plain(r.price),
                "unit": "message" if r.component == "sms" else "minute",
                "custom": bool(r.account_id),
                "effective_from": r.effective_from.isoformat(),
            }
            for r in rates
        ],
        "model_prices": [
            {
                "provider": p.provider,
                "model": p.model,
                "kind": p.kind,
                "input_per_million": _plain(p.input_per_million),
                "output_per_million": _plain(p.output_per_million),
                "effective_from": p.effective_from.isoformat(),
            }
            for _, p in sorted(prices.items())
        ],
    }
