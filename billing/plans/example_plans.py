"""The six example plans of SPEC section 10, one per pricing document in shared/seeds.

Figures the documents state are used as stated (0.08 USD/min, 0.09 USD/min voice engine, 5 s
flat for unanswered calls, 5 chat messages per minute, 200 USD threshold, 6,000 included
minutes, 10 USD signup credit, 5 and 20 USD minimum top-ups, 10/60/100 requests per minute,
20% commission, 20 USD minimum charge). Where a document names a price without giving it (per-LLM
minute rates, model token prices, international surcharges, the credit plan's allowance) the
figures below are Meterline's own example values. So is the plan fee of `credits-monthly`
(45 USD a period for its 50 USD of included credit, paid by card in advance; SPEC F1): the
document gives the allowance and says "consider upgrading if consistently high", but no price.

Which plans customers may choose themselves (`selectable_at_signup`, `selectable_for_subaccount`)
follows "no customer action creates spendable value except the one signup credit of a new
customer's own plan and what is paid for": at sign-up only the prepaid plans without included
allowance; for a subaccount every self-serve plan (a child's included allowance waits for staff
approval or its plan fee, a postpaid child for a card). `voice-enterprise` is sales-led: neither.
Customers may move themselves (`selectable_for_change`, the Billing page) between the prepaid
plans that give nothing unpaid: `voice-prepaid`, `llm-api`, and `credits-monthly`, whose included
credit waits for its fee.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from billing.models import ModelKind, ModelPrice, Plan, PlanFee, Rate, RateComponent, Rounding

EXAMPLES_EFFECTIVE_FROM = datetime(2026, 1, 1, tzinfo=UTC)
USD = 1_000_000

LLM_MINUTE_RATES = {  # USD per minute of call time, by LLM (pay-as-you-go plans)
    "gpt-4o": "0.05",
    "gpt-4o-mini": "0.02",
    "gpt-4.1": "0.05",
    "claude-sonnet-4": "0.06",
    "gemini-2.5-flash": "0.02",
}
DESTINATION_SURCHARGES = {  # USD per minute added for international destinations
    "+44": "0.03",
    "+49": "0.04",
    "+33": "0.04",
    "+91": "0.05",
    "+61": "0.06",
    "+4420": "0.02",  # London landlines: longer prefixes win
}

PLANS = [
    {
        "code": "voice-prepaid",
        "selectable_at_signup": True,
        "selectable_for_change": True,
        "selectable_for_subaccount": True,
        "name": "Voice Prepaid",
        "description": "Flat 0.08 USD per minute of voice, per second to the nearest second.",
        "billing_mode": "prepaid",
        "rounding": Rounding.NEAREST,
        "min_topup_micros": 20 * USD,
        "low_balance_threshold_micros": 20 * USD,
        "auto_topup_allowed": True,
        "rates": {(RateComponent.CALL, ""): "0.08", (RateComponent.SMS, ""): "0"},
    },
    {
        "code": "voice-payg",
        "selectable_at_signup": False,
        "selectable_for_subaccount": True,
        "name": "Voice Pay As You Go",
        "description": "Per-LLM minute rates plus the voice engine; minute aggregation; "
        "invoiced every 200 USD of usage.",
        "billing_mode": "postpaid",
        "rounding": Rounding.UP,
        "minute_aggregation": True,
        "unanswered_flat_seconds": 5,
        "chat_messages_per_minute": 5,
        "billing_threshold_micros": 200 * USD,
        "rates": {
            (RateComponent.VOICE_ENGINE, ""): "0.09",
            (RateComponent.CHAT, ""): "0.09",
            (RateComponent.SMS, ""): "0",
            **{(RateComponent.LLM, k): v for k, v in LLM_MINUTE_RATES.items()},
            **{(RateComponent.DESTINATION, k): v for k, v in DESTINATION_SURCHARGES.items()},
        },
    },
    {
        "code": "voice-enterprise",
        "selectable_at_signup": False,
        "selectable_for_subaccount": False,
        "name": "Voice Enterprise",
        "description": "Pay-as-you-go rates with 6,000 included minutes a period and rollover.",
        "billing_mode": "postpaid",
        "rounding": Rounding.UP,
        "minute_aggregation": True,
        "unanswered_flat_seconds": 5,
        "chat_messages_per_minute": 5,
        "included_minutes": 6000,
        "rollover_available": True,
        "rates": {
            (RateComponent.VOICE_ENGINE, ""): "0.09",
            (RateComponent.CHAT, ""): "0.09",
            (RateComponent.SMS, ""): "0",
            **{(RateComponent.LLM, k): v for k, v in LLM_MINUTE_RATES.items()},
            **{(RateComponent.DESTINATION, k): v for k, v in DESTINATION_SURCHARGES.items()},
        },
    },
    {
        "code": "credits-monthly",
        "selectable_at_signup": False,
        "selectable_for_change": True,
        # Meterline's example value: the document gives no price for the plan (SPEC F1).
        "fee_micros": 45 * USD,
        "fee_payment": "card",
        "selectable_for_subaccount": True,
        "name": "Monthly Credits",
        "description": "50 USD of call credit each month, reset on the billing date without "
        "carry-over; outbound calls and hold time free; extra credit can be bought.",
        "billing_mode": "prepaid",
        "rounding": Rounding.NEAREST,
        "outbound_calls_free": True,
        "included_credit_micros": 50 * USD,
        "min_topup_micros": 10 * USD,
        "low_balance_threshold_micros": 10 * USD,
        "auto_topup_allowed": True,
        "rates": {(RateComponent.CALL, ""): "0.10", (RateComponent.SMS, ""): "0"},
    },
    {
        "code": "llm-api",
        "selectable_at_signup": True,
        "selectable_for_change": True,
        "selectable_for_subaccount": True,
        "name": "LLM API",
        "description": "Per-model token prices, 10 USD free credit on signup, rate tiers.",
        "billing_mode": "prepaid",
        "signup_credit_micros": 10 * USD,
        "min_topup_micros": 5 * USD,
        "low_balance_threshold_micros": 5 * USD,
        "auto_topup_allowed": False,
        "default_rate_tier": "free",
        "rate_limits": {"free": 10, "elevated": 60, "paid": 100},
        "rates": {},
    },
    {
        "code": "flex-router",
        "selectable_at_signup": False,
        "selectable_for_subaccount": True,
        "name": "Flex Router",
        "description": "20% of the savings of flex requests; standard routing and Anthropic "
        "free; billed monthly from 20 USD, smaller amounts carried forward.",
        "billing_mode": "postpaid",
        "commission_percent": Decimal("20"),
        "commission_excluded_providers": "anthropic",
        "minimum_charge_micros": 20 * USD,
        "rates": {},
    },
]

MODEL_PRICES = [  # provider, model, kind, USD per 1M input tokens, USD per 1M output tokens
    ("openai", "gpt-4o", ModelKind.TEXT, "2.50", "10.00"),
    ("openai", "gpt-4o-mini", ModelKind.TEXT, "0.15", "0.60"),
    ("openai", "gpt-4.1", ModelKind.TEXT, "2.00", "8.00"),
    ("meta", "llama-3.3-70b", ModelKind.TEXT, "0.59", "0.79"),
    ("mistral", "mistral-small", ModelKind.TEXT, "0.10", "0.30"),
    ("qwen", "qwen2.5-vl-72b", ModelKind.TEXT, "0.90", "0.90"),
    ("openai", "text-embedding-3-small", ModelKind.EMBEDDING, "0.02", "0"),
    ("baai", "bge-m3", ModelKind.EMBEDDING, "0.01", "0"),
]


@transaction.atomic
def load_example_plans() -> list[Plan]:
    """Create or update the example plans; running it again changes nothing."""
    plans = []
    for spec in PLANS:
        fields = {k: v for k, v in spec.items() if k not in ("code", "rates", "fee_micros")}
        plan, _ = Plan.objects.update_or_create(code=spec["code"], defaults=fields)
        if "fee_micros" in spec:
            # An existing deployment gets the fee here too; it is charged from the next period
            # that starts (fees are charged at a period's start, never for one under way).
            _create_example_price(
                PlanFee, lookup={"plan": plan}, prices={"amount_micros": spec["fee_micros"]}
            )
        for (component, key), price in spec["rates"].items():
            _create_example_price(
                Rate,
                lookup={"plan": plan, "component": component, "key": key},
                prices={"price": Decimal(price)},
            )
        plans.append(plan)
    for provider, model, kind, input_price, output_price in MODEL_PRICES:
        _create_example_price(
            ModelPrice,
            lookup={"provider": provider, "model": model},
            prices={
                "kind": kind,
                "input_per_million": Decimal(input_price),
                "output_per_million": Decimal(output_price),
            },
        )
    return plans


def _create_example_price(model, *, lookup: dict, prices: dict) -> None:
    """Create an example price from EXAMPLES_EFFECTIVE_FROM, the moment the catalog starts.

    A price that exists already is never changed: it has been in effect since that moment, and
    changing it would re-price usage reported late (S1). A new price is added in admin, from a
    moment that has not passed yet.
    """
    price, created = model.objects.get_or_create(
        **lookup, effective_from=EXAMPLES_EFFECTIVE_FROM, defaults=prices
    )
    changed = {name for name, value in prices.items() if getattr(price, name) != value}
    if not created and changed:
        raise ValueError(
            f"{price} has been in effect since {EXAMPLES_EFFECTIVE_FROM:%Y-%m-%d}; loading the "
            f"examples does not change its {', '.join(sorted(changed))}. Add a new price from a "
            "later moment in admin."
        )
