"""Commission on the savings of flex requests on flex-router (SPEC U8)."""

from decimal import Decimal

import pytest

from billing.models import EntryKind
from tests.conftest import NOW
from tests.usage.metering import (
    balance,
    entries,
    everything_written,
    flex,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.ingest.events import ingest_events
from usage.models import UsageEvent, UsageRollup


def ingest(*reports):
    return ingest_events(reports=list(reports), now=NOW)


@pytest.fixture
def router(make_account):
    return make_account("flex-router")


def test_a_flex_request_at_0_0810_instead_of_0_1530_pays_a_commission_of_0_0144(router):
    [result] = ingest(flex(router, standard="0.1530", flex_price="0.0810"))

    assert (result.status, result.cost_micros) == ("accepted", 14_400)
    [commission] = entries(router, EntryKind.COMMISSION)
    assert commission.amount_micros == -14_400
    event = UsageEvent.objects.get(event_id=result.id)
    assert commission.cause == event
    # Postpaid: the commission accrues and is invoiced.
    assert balance(router) == -14_400


def test_a_commission_keeps_its_inputs_in_the_explanation(router):
    [result] = ingest(flex(router, standard="0.1530", flex_price="0.0810"))

    event = UsageEvent.objects.get(event_id=result.id)
    assert (event.standard_price_micros, event.flex_price_micros) == (153_000, 81_000)
    assert event.start_within == "00h-00m-30s"
    explanation = event.explanation
    assert explanation["standard_price"] == "0.1530"
    assert explanation["flex_price"] == "0.0810"
    assert explanation["savings"] == "0.0720"
    assert explanation["percent"] == "20.00"
    assert explanation["provider"] == "openai"
    assert explanation["model"] == "gpt-4o"
    assert explanation["start_within"] == "00h-00m-30s"
    assert explanation["cost"] == "0.014400"


def test_the_savings_are_counted_in_the_rollups(router):
    ingest(flex(router), flex(router))

    row = UsageRollup.objects.get(account=router, is_line=False, component="flex")
    assert (row.items, row.cost_micros, row.savings_micros) == (2, 28_800, 144_000)


@pytest.mark.parametrize(
    ("standard", "flex_price"), [("0.0810", "0.0810"), ("0.0810", "0.1530")], ids=["same", "dearer"]
)
def test_a_flex_request_that_saves_nothing_is_free(router, standard, flex_price):
    [result] = ingest(flex(router, standard=standard, flex_price=flex_price))

    assert (result.status, result.cost_micros) == ("accepted", 0)
    assert UsageEvent.objects.get(event_id=result.id).explanation["rule"] == (
        "flex was not cheaper than standard"
    )
    assert entries(router) == []
    assert balance(router) == 0


@pytest.mark.parametrize("provider", ["anthropic", "Anthropic"])
def test_anthropic_models_are_free_even_on_flex(router, provider):
    [result] = ingest(flex(router, provider=provider, model="claude-sonnet-4"))

    assert (result.status, result.cost_micros) == ("accepted", 0)
    assert entries(router) == []


@pytest.mark.parametrize("start_within", ["default", "priority", "auto", "AUTO", ""])
def test_standard_routing_is_free(router, start_within):
    [result] = ingest(flex(router, start_within=start_within))

    assert (result.status, result.cost_micros) == ("accepted", 0)
    assert UsageEvent.objects.get(event_id=result.id).explanation["rule"] == (
        "standard routing is free"
    )
    assert entries(router) == []


@pytest.mark.parametrize("start_within", ["30s", "00h-00m-30", "00h-30s", "soon", "0h-0m-30s"])
def test_a_malformed_start_within_is_rejected_and_nothing_is_written(router, start_within):
    before = everything_written()

    [result] = ingest(flex(router, start_within=start_within))

    assert (result.status, result.code) == ("rejected", 400)
    assert "start_within" in result.reason
    assert everything_written() == before


def test_a_flex_request_without_its_prices_is_rejected(router):
    [result] = ingest(flex(router, standard=None))

    assert (result.status, result.code) == ("rejected", 400)
    assert not UsageEvent.objects.exists()


def test_a_commission_on_savings_of_0_0000025_is_zero_not_40_percent(router):
    # 20% of 0.0000025 USD is 0.0000005 USD: half-up would charge 0.000001 USD, 40% of the savings.
    [result] = ingest(flex(router, standard="0.0000075", flex_price="0.0000050"))

    assert (result.status, result.cost_micros) == ("accepted", 0)
    assert entries(router, EntryKind.COMMISSION) == []


@pytest.mark.parametrize(
    "savings", ["0.0000025", "0.0000075", "0.0000049", "0.000004999999", "0.123456789", "1.0000049"]
)
def test_a_commission_never_exceeds_twenty_percent_of_the_savings(router, savings):
    [result] = ingest(flex(router, standard=str(Decimal(savings) + 1), flex_price="1"))

    assert result.status == "accepted"
    # At most 20% of the savings, and less than one micro-dollar below it.
    limit = Decimal(savings) * 20 / 100 * 1_000_000
    assert limit - 1 < result.cost_micros <= limit
