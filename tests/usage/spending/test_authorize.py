"""Spending control at the gateway: who gets 402 and who may go on (SPEC G1)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import Account
from billing.models import EntryKind, Rate, RateComponent
from billing.plans.example_plans import EXAMPLES_EFFECTIVE_FROM
from tests.billing.postings import post_entry
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    embedding,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
    tokens,
)
from usage.ingest.events import ingest_events
from usage.reads.keys import load_key
from usage.reports import PaymentRequired, UsageError
from usage.spending.authorize import MAX_CALL_SECONDS, authorize


def ask(
    key,
    feature="llm",
    *,
    model="",
    provider="",
    start_within="",
    call_id="",
    direction="inbound",
    now=NOW,
):
    return authorize(
        key=load_key(key.key_id),
        feature=feature,
        model=model,
        provider=provider,
        start_within=start_within,
        call_id=call_id,
        direction=direction,
        now=now,
    )


def make_past_due(account):
    Account.objects.filter(pk=account.pk).update(past_due_since=NOW - timedelta(days=3))
    account.refresh_from_db()


@pytest.fixture
def llm_key(make_account, make_key):
    return make_key(make_account("llm-api")).api_key


def test_an_llm_api_account_may_spend_its_10_usd_signup_credit(llm_key):
    answer = ask(llm_key, model="gpt-4o")

    assert answer.allowed
    assert answer.billable
    assert answer.balance_micros == 10 * USD


def test_when_the_signup_credit_is_spent_an_llm_request_gets_402(llm_key):
    account = llm_key.account
    # One million gpt-4o output tokens cost exactly the 10 USD of signup credit.
    [spent] = ingest_events(
        reports=[tokens(account, input_tokens=0, output_tokens=1_000_000)], now=NOW
    )
    assert spent.cost_micros == 10 * USD
    assert balance(account) == 0

    with pytest.raises(PaymentRequired) as raised:
        ask(llm_key, model="gpt-4o")

    error = raised.value
    assert (error.status, error.type) == (402, "insufficient_quota")
    assert error.message.startswith("Insufficient credit. Add funds at ")
    assert f"/app/a/{account.public_id}/billing/" in error.message


def test_after_a_top_up_the_next_request_is_allowed_again(llm_key):
    account = llm_key.account
    ingest_events(reports=[tokens(account, input_tokens=0, output_tokens=1_000_000)], now=NOW)
    post_entry(account=account, amount_micros=5 * USD, kind=EntryKind.TOPUP, now=NOW)

    assert ask(llm_key, model="gpt-4o").allowed


def test_a_past_due_flex_router_account_gets_402_for_a_flex_request(make_account, make_key):
    account = make_account("flex-router")
    key = make_key(account).api_key
    assert ask(key, provider="openai", model="gpt-4o", start_within="00h-00m-30s").billable
    make_past_due(account)

    with pytest.raises(PaymentRequired) as raised:
        ask(key, provider="openai", model="gpt-4o", start_within="00h-00m-30s")

    assert raised.value.status == 402
    assert "past due" in raised.value.message


@pytest.mark.parametrize(
    ("provider", "start_within"),
    [
        ("openai", "default"),
        ("openai", "priority"),
        ("openai", "auto"),
        ("anthropic", "00h-00m-30s"),
        ("anthropic", "default"),
    ],
)
def test_a_past_due_flex_router_account_keeps_free_routing_and_anthropic(
    make_account, make_key, provider, start_within
):
    account = make_account("flex-router")
    key = make_key(account).api_key
    make_past_due(account)

    answer = ask(key, provider=provider, model="some-model", start_within=start_within)

    assert answer.allowed
    assert not answer.billable


@pytest.mark.parametrize("feature", ["embedding", "chat", "sms", "call"])
def test_a_past_due_flex_router_account_keeps_everything_but_flex_requests(
    make_account, make_key, feature
):
    # Flex-router bills only the commission on flex LLM requests: embeddings run on the
    # customer's own provider keys and the plan prices no chat, SMS or call time.
    account = make_account("flex-router")
    key = make_key(account).api_key
    make_past_due(account)

    answer = ask(key, feature, provider="openai", model="text-embedding-3-small", call_id="c1")

    assert (answer.allowed, answer.billable) == (True, False)


def test_an_embedding_on_flex_router_is_charged_nothing_as_authorize_says(make_account, make_key):
    account = make_account("flex-router")
    key = make_key(account).api_key

    answer = ask(key, "embedding", provider="openai", model="text-embedding-3-small")
    [result] = ingest_events(reports=[embedding(account)], now=NOW)

    assert not answer.billable
    assert result.cost_micros == 0


def test_a_commission_plan_with_a_call_price_still_pauses_calls_when_past_due(
    make_account, make_key
):
    account = make_account("flex-router")
    Rate.objects.create(
        account=account,
        component=RateComponent.CALL,
        price=Decimal("0.05"),
        effective_from=EXAMPLES_EFFECTIVE_FROM,
    )
    key = make_key(account).api_key
    assert ask(key, "call", call_id="c1").billable
    make_past_due(account)

    with pytest.raises(PaymentRequired):
        ask(key, "call", call_id="c2")


def test_a_malformed_start_within_is_refused_by_authorize(make_account, make_key):
    key = make_key(make_account("flex-router")).api_key

    with pytest.raises(UsageError) as raised:
        ask(key, provider="openai", start_within="in a minute")

    assert raised.value.param == "start_within"


def test_a_postpaid_voice_payg_account_past_due_gets_402_for_calls(make_account, make_key):
    account = make_account("voice-payg")
    key = make_key(account).api_key
    before = ask(key, "call", model="gpt-4o", call_id="c1")
    assert (before.allowed, before.max_seconds) == (True, MAX_CALL_SECONDS)
    make_past_due(account)

    with pytest.raises(PaymentRequired):
        ask(key, "call", model="gpt-4o", call_id="c2")


def test_a_prepaid_voice_account_without_credit_gets_402_for_calls(make_account, make_key):
    key = make_key(make_account("voice-prepaid")).api_key

    with pytest.raises(PaymentRequired):
        ask(key, "call", call_id="c1")


def test_a_call_authorization_says_how_many_seconds_the_balance_affords(make_account, make_key):
    # 2 USD at 0.08 USD per minute is 25 minutes.
    key = make_key(make_account("voice-prepaid", credit_micros=2 * USD)).api_key

    answer = ask(key, "call", call_id="c1")

    assert answer.allowed
    assert answer.max_seconds == 1500
    assert answer.reservation_id.startswith("hold_")


def test_free_sms_stay_allowed_on_an_empty_prepaid_account(make_account, make_key):
    key = make_key(make_account("voice-prepaid")).api_key

    answer = ask(key, "sms")

    assert (answer.allowed, answer.billable) == (True, False)


def test_an_unknown_feature_is_refused(llm_key):
    with pytest.raises(UsageError):
        ask(llm_key, "fax")


def test_an_outbound_call_is_free_and_allowed_as_its_report_would_be_rated(
    plans_without_fees, make_account, make_key
):
    # credits-monthly makes outbound calls free: authorize says so before the call, as rating
    # does after it, whatever the balance.
    account = make_account("credits-monthly")
    post_entry(
        account=account,
        amount_micros=-balance(account),
        kind=EntryKind.ADJUSTMENT,
        reason="no credit left",
        now=NOW,
    )
    key = make_key(account).api_key

    answer = ask(key, "call", call_id="out-1", direction="outbound")

    assert (answer.allowed, answer.billable) == (True, False)
    assert answer.max_seconds == MAX_CALL_SECONDS
    assert answer.reservation_id == ""
    with pytest.raises(PaymentRequired):
        ask(key, "call", call_id="in-1", direction="inbound")


def test_an_outbound_call_is_billable_where_the_plan_bills_outbound_calls(make_account, make_key):
    key = make_key(make_account("voice-prepaid")).api_key

    with pytest.raises(PaymentRequired):
        ask(key, "call", call_id="out-1", direction="outbound")
