"""Rating and charging events: chat, SMS, LLM tokens, embeddings (SPEC U5-U7, S1)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import EntryKind, ModelKind, ModelPrice, Rate, RateComponent
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM
from tests.billing.postings import post_entry
from tests.conftest import NOW
from tests.usage.metering import (
    CONNECTED_AT,
    USD,
    balance,
    carries,
    chat,
    embedding,
    entries,
    everything_written,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
    sms,
    tokens,
)
from usage.ingest.events import ingest_events
from usage.models import UsageEvent


def ingest(*reports, now=NOW):
    return ingest_events(reports=list(reports), now=now)


def stored(result) -> UsageEvent:
    return UsageEvent.objects.get(event_id=result.id)


@pytest.fixture
def llm_account(make_account):
    return make_account("llm-api")


# Chat (U5) ------------------------------------------------------------------------------------


def test_five_ai_chat_messages_make_one_billable_minute_and_the_remainder_carries(make_account):
    account = make_account("voice-payg")

    first, second = ingest(chat(account, 3), chat(account, 4))

    assert (first.status, first.cost_micros) == ("accepted", 0)
    assert (second.status, second.cost_micros) == ("accepted", 90_000)  # 1 minute at 0.09
    assert stored(first).explanation["carried_messages"] == 3
    explanation = stored(second).explanation
    assert explanation["billable_minutes"] == 1
    assert explanation["carried_messages"] == 2
    assert explanation["rule"] == "5 AI messages make one billable minute"
    assert carries(account) == {("chat", ""): 2}
    assert balance(account) == -90_000


def test_chat_messages_carry_across_batches(make_account):
    account = make_account("voice-payg")
    ingest(chat(account, 3))

    [result] = ingest(chat(account, 4))

    assert result.cost_micros == 90_000
    assert carries(account) == {("chat", ""): 2}


def test_chat_is_free_on_a_plan_without_a_chat_conversion(make_account):
    account = make_account("voice-prepaid", credit_micros=USD)

    [result] = ingest(chat(account, 50))

    assert (result.status, result.cost_micros) == ("accepted", 0)
    assert entries(account, EntryKind.USAGE) == []


# SMS (U6) -------------------------------------------------------------------------------------


def test_sms_cost_nothing_on_voice_prepaid_where_the_plan_price_is_zero(make_account):
    account = make_account("voice-prepaid", credit_micros=USD)

    [result] = ingest(sms(account, 3))

    assert (result.status, result.cost_micros) == ("accepted", 0)
    assert stored(result).quantity == 3
    assert balance(account) == USD
    assert entries(account, EntryKind.USAGE) == []


def test_sms_are_charged_when_sent_at_the_accounts_sms_price(make_account):
    account = make_account("voice-prepaid", credit_micros=USD)
    Rate.objects.create(
        account=account,
        component=RateComponent.SMS,
        price=Decimal("0.0079"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )

    [result] = ingest(sms(account, 3))

    assert result.cost_micros == 23_700
    [usage] = entries(account, EntryKind.USAGE)
    assert usage.amount_micros == -23_700
    assert usage.cause == stored(result)
    assert balance(account) == USD - 23_700


# LLM tokens and embeddings (U7) ---------------------------------------------------------------


def test_llm_api_accounts_start_with_10_usd_of_signup_credit(llm_account):
    assert balance(llm_account) == 10 * USD
    [signup] = entries(llm_account)
    assert signup.kind == EntryKind.SIGNUP_CREDIT


def test_llm_tokens_are_priced_per_million_input_and_output_tokens(llm_account):
    # gpt-4o: 2.50 USD per million input tokens, 10.00 per million output tokens.
    [result] = ingest(tokens(llm_account, "gpt-4o", input_tokens=1000, output_tokens=500))

    assert result.cost_micros == 2_500 + 5_000
    event = stored(result)
    assert (event.quantity, event.output_tokens) == (1000, 500)
    lines = {line["component"]: line["amount"] for line in event.explanation["lines"]}
    assert lines == {"input_tokens": "0.002500", "output_tokens": "0.005000"}
    assert event.explanation["price_effective_from"] == EXAMPLES_EFFECTIVE_FROM.isoformat()
    assert balance(llm_account) == 10 * USD - 7_500
    [usage] = entries(llm_account, EntryKind.USAGE)
    assert usage.cause == event


def test_each_token_line_is_rounded_once_half_up_to_the_micro_dollar(llm_account):
    # One input token of gpt-4o is 0.0000025 USD: 2.5 micros, which rounds half-up to 3.
    [result] = ingest(tokens(llm_account, "gpt-4o", input_tokens=1, output_tokens=0))

    assert result.cost_micros == 3


def test_llm_tokens_are_priced_from_the_catalog_at_the_time_of_the_request(llm_account):
    changed_at = NOW - timedelta(hours=2)
    ModelPrice.objects.create(
        provider="openai",
        model="gpt-4o",
        kind=ModelKind.TEXT,
        input_per_million=Decimal("5.00"),
        output_per_million=Decimal("20.00"),
        effective_from=changed_at,
    )

    before, after = ingest(
        tokens(
            llm_account,
            input_tokens=1000,
            output_tokens=500,
            occurred_at=changed_at - timedelta(minutes=1),
        ),
        tokens(llm_account, input_tokens=1000, output_tokens=500, occurred_at=changed_at),
    )

    assert before.cost_micros == 7_500
    assert after.cost_micros == 15_000
    assert stored(after).explanation["price_effective_from"] == changed_at.isoformat()


def test_a_later_model_price_does_not_change_an_earlier_charge(llm_account):
    [earlier] = ingest(tokens(llm_account, input_tokens=1000, output_tokens=500))
    ModelPrice.objects.create(
        provider="openai",
        model="gpt-4o",
        input_per_million=Decimal("5.00"),
        output_per_million=Decimal("20.00"),
        effective_from=NOW - timedelta(minutes=30),
    )

    [repeat] = ingest(tokens(llm_account, id=earlier.id, input_tokens=1000, output_tokens=500))

    assert (repeat.status, repeat.cost_micros) == ("duplicate", 7_500)
    assert stored(earlier).cost_micros == 7_500
    assert [e.amount_micros for e in entries(llm_account, EntryKind.USAGE)] == [-7_500]


def test_embeddings_are_priced_per_million_input_tokens(llm_account):
    # text-embedding-3-small: 0.02 USD per million input tokens; output tokens are not billed.
    [result] = ingest(embedding(llm_account, input_tokens=1_000_000, output_tokens=10))

    assert result.cost_micros == 20_000
    [line] = stored(result).explanation["lines"]
    assert (line["component"], line["quantity"]) == ("input_tokens", 1_000_000)


def test_a_text_model_is_refused_for_an_embedding_request(llm_account):
    [result] = ingest(embedding(llm_account, model="gpt-4o"))

    assert (result.status, result.code) == ("rejected", 400)
    assert not UsageEvent.objects.exists()


def test_an_unknown_model_is_rejected_and_nothing_is_written(llm_account):
    before = everything_written()

    [result] = ingest(tokens(llm_account, "gpt-9-imaginary"))

    assert (result.status, result.code) == ("rejected", 400)
    assert "gpt-9-imaginary" in result.reason
    assert everything_written() == before


def test_a_model_is_unknown_before_its_first_catalog_price(llm_account):
    [result] = ingest(
        tokens(llm_account, occurred_at=EXAMPLES_EFFECTIVE_FROM - timedelta(days=1)),
        now=EXAMPLES_EFFECTIVE_FROM,
    )

    assert (result.status, result.code) == ("rejected", 400)


@pytest.mark.parametrize(
    "counts", [{"input_tokens": -1}, {"output_tokens": -5}], ids=["input", "output"]
)
def test_negative_token_counts_are_rejected_and_nothing_is_written(llm_account, counts):
    before = everything_written()

    [result] = ingest(tokens(llm_account, **counts))

    assert (result.status, result.code) == ("rejected", 400)
    assert "negative" in result.reason
    assert everything_written() == before


def test_a_stream_stopped_early_bills_the_tokens_it_reported(llm_account):
    # The client closed the stream after 37 of up to 4,000 output tokens: 37 are billed.
    [result] = ingest(tokens(llm_account, input_tokens=1200, output_tokens=37))

    assert result.cost_micros == 3_000 + 370
    assert stored(result).output_tokens == 37


def test_a_rejected_event_does_not_stop_the_rest_of_its_batch(llm_account):
    good, bad, also_good = ingest(
        tokens(llm_account, input_tokens=1000),
        tokens(llm_account, "gpt-9-imaginary"),
        embedding(llm_account, input_tokens=1_000_000),
    )

    assert [good.status, bad.status, also_good.status] == ["accepted", "rejected", "accepted"]
    assert UsageEvent.objects.count() == 2
    assert balance(llm_account) == 10 * USD - 2_500 - 20_000
    assert stored(good).occurred_at == CONNECTED_AT


# Postpaid usage paid by credit (L5, L6, I1) ---------------------------------------------------


def test_postpaid_tokens_are_owed_in_full_when_the_only_credit_expired_but_is_not_written_off(
    make_account,
):
    account = make_account("voice-payg")
    post_entry(
        account=account,
        amount_micros=1_400_000,
        kind=EntryKind.PROMOTIONAL,
        now=NOW - timedelta(days=2),
        grant_expires_at=NOW - timedelta(minutes=10),
    )

    [result] = ingest(tokens(account, "gpt-4o", input_tokens=560_000))  # at 2.50 USD/M

    assert result.cost_micros == 1_400_000
    assert balance(account) == -1_400_000
    account.refresh_from_db(fields=["unbilled_micros"])
    assert account.unbilled_micros == 1_400_000
    assert [e.kind for e in entries(account)][-2:] == [EntryKind.EXPIRY, EntryKind.USAGE]
