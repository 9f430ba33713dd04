"""What the pricing selector tells the platform and the dashboard (SPEC U3, U7, S1)."""

from datetime import timedelta
from decimal import Decimal

from billing.models import ModelPrice, Rate, RateComponent
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM
from tests.conftest import NOW
from tests.usage.metering import no_ledger_drift  # noqa: F401 - autouse: ledger checked
from usage.selectors import pricing_for


def rates_of(pricing) -> dict[tuple[str, str], dict]:
    return {(r["component"], r["key"]): r for r in pricing["rates"]}


def test_pricing_shows_the_plan_and_its_rates(make_account):
    pricing = pricing_for(account=make_account("voice-payg"), now=NOW)

    plan = pricing["plan"]
    assert (plan["code"], plan["billing_mode"]) == ("voice-payg", "postpaid")
    assert plan["rounding"] == "up"
    assert plan["minute_aggregation"] is True
    assert plan["unanswered_flat_seconds"] == 5
    assert plan["chat_messages_per_minute"] == 5
    rates = rates_of(pricing)
    assert rates[("voice_engine", "")]["price"] == "0.09"
    assert rates[("llm", "gpt-4o")]["price"] == "0.05"
    assert rates[("destination", "+4420")]["price"] == "0.02"
    assert {r["unit"] for r in pricing["rates"]} == {"minute", "message"}


def test_pricing_shows_the_accounts_custom_rate_instead_of_the_plans(make_account):
    account = make_account("voice-prepaid")
    Rate.objects.create(
        account=account,
        component=RateComponent.CALL,
        price=Decimal("0.06"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )
    # A plan price change after the custom rate does not override it.
    Rate.objects.create(
        plan=account.subscription.plan,
        component=RateComponent.CALL,
        price=Decimal("0.12"),
        effective_from=NOW - timedelta(days=1),
    )

    call_rate = rates_of(pricing_for(account=account, now=NOW))[("call", "")]

    assert (call_rate["price"], call_rate["custom"]) == ("0.06", True)


def test_pricing_shows_model_prices_in_effect_now_and_not_future_ones(make_account):
    ModelPrice.objects.create(
        provider="openai",
        model="gpt-4o",
        input_per_million=Decimal("5"),
        output_per_million=Decimal("20"),
        effective_from=NOW + timedelta(days=1),
    )

    prices = {
        p["model"]: p for p in pricing_for(account=make_account("llm-api"), now=NOW)["model_prices"]
    }

    assert (prices["gpt-4o"]["input_per_million"], prices["gpt-4o"]["output_per_million"]) == (
        "2.5",
        "10",
    )
    assert prices["text-embedding-3-small"]["kind"] == "embedding"
