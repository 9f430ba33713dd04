"""The six example plans of SPEC section 10, with the figures of their seed documents."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import ModelPrice, Plan, Rate, RateComponent, Rounding
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM, load_example_plans

USD = 1_000_000
CODES = {
    "voice-prepaid",
    "voice-payg",
    "voice-enterprise",
    "credits-monthly",
    "llm-api",
    "flex-router",
}


def snapshot():
    """Return every stored plan, rate and model price, field by field."""
    return (
        list(Plan.objects.order_by("pk").values()),
        list(Rate.objects.order_by("pk").values()),
        list(ModelPrice.objects.order_by("pk").values()),
    )


def rate(plan, component, key=""):
    return Rate.objects.get(plan=plan, component=component, key=key).price


def test_loading_the_example_plans_twice_changes_nothing(db):
    load_example_plans()
    first = snapshot()

    load_example_plans()

    assert snapshot() == first
    assert (Plan.objects.count(), ModelPrice.objects.count()) == (6, len(first[2]))
    assert Rate.objects.count() == len(first[1])


def test_loading_again_restores_the_seed_figures_of_an_edited_example_plan(db):
    load_example_plans()
    seeded = snapshot()
    Plan.objects.filter(code="voice-prepaid").update(min_topup_micros=1)

    load_example_plans()

    assert snapshot() == seeded


@pytest.mark.parametrize("kind", ["rate", "model price"])
def test_loading_again_never_changes_a_price_already_in_effect(db, kind):
    # Issue 14 item 17: the example prices took effect on EXAMPLES_EFFECTIVE_FROM; setting one
    # back would re-price every late report of usage since then.
    load_example_plans()
    if kind == "rate":
        Rate.objects.filter(plan__code="voice-prepaid", component=RateComponent.CALL).update(
            price=Decimal("0.5")
        )
    else:
        ModelPrice.objects.filter(model="gpt-4o").update(input_per_million=Decimal("9"))
    Plan.objects.filter(code="voice-prepaid").update(min_topup_micros=1)
    edited = snapshot()

    with pytest.raises(ValueError, match="has been in effect since 2026-01-01"):
        load_example_plans()

    assert snapshot() == edited


def test_the_load_example_plans_command_lists_the_six_codes(db, capsys):
    call_command("load_example_plans")

    printed = capsys.readouterr().out
    assert {line.split(":")[0] for line in printed.splitlines()} == CODES
    assert set(Plan.objects.values_list("code", flat=True)) == CODES


def test_the_six_example_plan_codes_exist(plans):
    assert set(plans) == CODES


def test_voice_prepaid_bills_8_cents_a_minute_to_the_nearest_second(plans):
    plan = plans["voice-prepaid"]

    assert plan.billing_mode == "prepaid"
    assert rate(plan, RateComponent.CALL) == Decimal("0.08")
    assert rate(plan, RateComponent.SMS) == 0
    assert plan.rounding == Rounding.NEAREST
    assert plan.min_topup_micros == 20 * USD
    assert plan.low_balance_threshold_micros == 20 * USD
    assert plan.auto_topup_allowed


def test_voice_payg_is_postpaid_with_voice_engine_aggregation_and_a_200_usd_threshold(plans):
    plan = plans["voice-payg"]

    assert plan.billing_mode == "postpaid"
    assert rate(plan, RateComponent.VOICE_ENGINE) == Decimal("0.09")
    assert Rate.objects.filter(plan=plan, component=RateComponent.LLM).exists()
    assert plan.rounding == Rounding.UP
    assert plan.minute_aggregation
    assert plan.unanswered_flat_seconds == 5
    assert plan.chat_messages_per_minute == 5
    assert plan.billing_threshold_micros == 200 * USD


def test_voice_enterprise_includes_6000_minutes_with_rollover(plans):
    plan = plans["voice-enterprise"]

    assert plan.billing_mode == "postpaid"
    assert plan.included_minutes == 6000
    assert plan.rollover_available
    assert rate(plan, RateComponent.VOICE_ENGINE) == Decimal("0.09")
    assert plan.minute_aggregation


def test_credits_monthly_includes_credit_and_leaves_outbound_calls_free(plans):
    plan = plans["credits-monthly"]

    assert plan.outbound_calls_free
    assert plan.included_credit_micros > 0
    assert not plan.rollover_available


def test_llm_api_gives_10_usd_signup_credit_and_three_rate_tiers(plans):
    plan = plans["llm-api"]

    assert plan.billing_mode == "prepaid"
    assert plan.signup_credit_micros == 10 * USD
    assert plan.min_topup_micros == 5 * USD
    assert not plan.auto_topup_allowed
    assert plan.low_balance_threshold_micros == 5 * USD
    assert plan.zero_balance_alert
    assert plan.rate_limits == {"free": 10, "elevated": 60, "paid": 100}


def test_flex_router_takes_20_percent_commission_except_on_anthropic_from_20_usd(plans):
    plan = plans["flex-router"]

    assert plan.commission_percent == Decimal("20")
    assert plan.excluded_providers == frozenset({"anthropic"})
    assert plan.minimum_charge_micros == 20 * USD


@pytest.mark.parametrize("code", sorted(CODES))
def test_example_rates_take_effect_from_the_examples_date(plans, code):
    assert set(Rate.objects.filter(plan=plans[code]).values_list("effective_from", flat=True)) <= {
        EXAMPLES_EFFECTIVE_FROM
    }


def test_the_model_catalog_prices_tokens_per_million(plans):
    price = ModelPrice.objects.get(provider="openai", model="gpt-4o-mini")

    assert (price.input_per_million, price.output_per_million) == (
        Decimal("0.15"),
        Decimal("0.60"),
    )
