"""Budgets per account and per API key: a soft one emails, a hard one answers 402 (SPEC G4, N2)."""

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from billing.models import AlertSettings, NotificationStatus
from tests.billing import money_and_notices as alerting
from tests.billing.money_and_notices import (
    USD,
    new_id,
    notices,
    report_minutes,
    report_output_tokens,
    top_up,
)
from tests.conftest import NOW
from usage.ingest.calls import refund_call
from usage.ingest.events import ingest_events
from usage.reads.keys import load_key
from usage.reads.rollups import period_spend
from usage.reports import EventReport, PaymentRequired
from usage.spending import budgets
from usage.spending.authorize import authorize

committed = alerting.committed  # fixtures
no_ledger_drift = alerting.no_ledger_drift


@pytest.fixture
def account(make_account):
    account = make_account("llm-api", name="Flex Labs")
    top_up(account, "100.00")
    return account


@pytest.fixture
def production(account, make_key):
    issued = make_key(account)
    issued.api_key.name = "Production"
    issued.api_key.save()
    return issued


@pytest.fixture
def testing(account, make_key):
    return make_key(account)


def ask(key, *, now=NOW, feature="llm", **fields):
    return authorize(
        key=load_key(key.api_key.key_id),
        feature=feature,
        model=fields.get("model", "gpt-4o"),
        provider=fields.get("provider", "openai"),
        start_within=fields.get("start_within", ""),
        call_id=fields.get("call_id", ""),
        now=now,
    )


def spend_usd(account, usd: int, *, now=NOW):
    report_output_tokens(account, usd * 100_000, now=now)  # 10 USD per million output tokens


def test_a_soft_budget_emails_once_when_the_periods_spend_reaches_it(
    account, production, committed, mailoutbox
):
    budgets.create_budget(account=account, name="Team", amount_micros=5 * USD, hard=False, now=NOW)

    committed(spend_usd, account, 3)
    assert notices(account, "budget_reached") == []
    committed(spend_usd, account, 3)  # 6 USD this period
    committed(spend_usd, account, 1)

    [notice] = notices(account, "budget_reached")
    assert notice.status == NotificationStatus.SENT
    [message] = [m for m in mailoutbox if m.subject.startswith("Budget reached")]
    assert message.subject == "Budget reached: Team: $5.00"
    assert "$6.00" in message.body and "soft budget" in message.body
    assert ask(production).allowed  # soft: nothing is stopped


def test_a_hard_key_budget_answers_402_naming_the_budget_for_that_key_only(
    account, production, testing, committed, mailoutbox
):
    budgets.create_budget(
        account=account,
        name="Production key",
        amount_micros=50 * USD,
        hard=True,
        api_key=production.api_key,
        now=NOW,
    )
    committed(spend_usd, account, 49)
    assert ask(production).allowed

    committed(spend_usd, account, 1)

    with pytest.raises(PaymentRequired) as refused:
        ask(production)
    assert refused.value.status == 402
    assert "Monthly budget 'Production key: $50.00' reached" in refused.value.message
    assert ask(testing).allowed  # the account's other keys go on
    [message] = [m for m in mailoutbox if m.subject.startswith("Budget reached")]
    assert "hard budget" in message.body and "Production" in message.body


def test_a_hard_account_budget_stops_every_key_until_the_next_period(
    account, production, testing, committed
):
    budgets.create_budget(account=account, name="Cap", amount_micros=2 * USD, hard=True, now=NOW)
    committed(spend_usd, account, 2)

    for key in (production, testing):
        with pytest.raises(PaymentRequired, match=re.escape("Monthly budget 'Cap: $2.00' reached")):
            ask(key)
    assert ask(production, now=NOW + timedelta(days=31)).allowed


def test_free_usage_stays_allowed_under_a_reached_hard_budget(make_account, make_key, committed):
    account = make_account("flex-router")
    key = make_key(account)
    budgets.create_budget(account=account, name="Flex", amount_micros=10_000, hard=True, now=NOW)
    committed(report_flex_request, account)  # 20% of (0.1530 - 0.0810) = 0.0144 USD

    answer = ask(key, start_within="default")
    embeddings = ask(key, feature="embedding", model="text-embedding-3-small")

    assert answer.allowed and not answer.billable
    assert embeddings.allowed and not embeddings.billable
    with pytest.raises(PaymentRequired, match=re.escape("Flex: $0.01")):
        ask(key, start_within="00h-00m-30s")


def report_flex_request(account):
    [result] = ingest_events(
        reports=[
            EventReport(
                id=new_id("flex"),
                account=account.public_id,
                type="llm",
                occurred_at=NOW - timedelta(minutes=5),
                provider="openai",
                model="gpt-4o",
                start_within="00h-00m-30s",
                standard_price=Decimal("0.1530"),
                flex_price=Decimal("0.0810"),
            )
        ],
        now=NOW,
    )
    assert result.cost_micros == 14_400


def test_replacing_a_reached_budget_with_a_higher_one_lets_usage_through_until_reached_again(
    account, production, committed
):
    # The billing page changes a budget by deleting it and adding the new amount.
    budget = budgets.create_budget(
        account=account, name="Cap", amount_micros=2 * USD, hard=True, now=NOW
    )
    committed(spend_usd, account, 2)

    committed(budgets.delete_budget, budget=budget)
    committed(
        budgets.create_budget,
        account=account,
        name="Cap",
        amount_micros=5 * USD,
        hard=True,
        now=NOW,
    )
    assert ask(production).allowed
    committed(spend_usd, account, 3)

    with pytest.raises(PaymentRequired, match=re.escape("Cap: $5.00")):
        ask(production)
    assert len(notices(account, "budget_reached")) == 2  # once per budget, period and amount


def test_a_budget_set_below_this_periods_spend_is_reached_at_once(
    account, production, committed, mailoutbox
):
    committed(spend_usd, account, 4)

    budget = committed(
        budgets.create_budget,
        account=account,
        name="Late",
        amount_micros=3 * USD,
        hard=True,
        now=NOW,
    )

    budget.refresh_from_db()
    assert budget.reached_period_start is not None
    assert len(notices(account, "budget_reached")) == 1
    with pytest.raises(PaymentRequired):
        ask(production)


def test_deleting_the_last_budget_stops_looking_for_budgets(account, production, committed):
    budget = budgets.create_budget(
        account=account, name="Cap", amount_micros=1 * USD, hard=True, now=NOW
    )
    committed(spend_usd, account, 1)
    assert AlertSettings.objects.get(account=account).has_budgets

    budgets.delete_budget(budget=budget)

    assert not AlertSettings.objects.get(account=account).has_budgets
    assert ask(production).allowed


def test_a_postpaid_hard_budget_stops_calls(make_account, make_key, committed):
    account = make_account("voice-payg")
    key = make_key(account)
    budgets.create_budget(account=account, name="Calls", amount_micros=1 * USD, hard=True, now=NOW)

    committed(report_minutes, account, 10)  # 10 x (0.09 + 0.05) = 1.40 USD

    with pytest.raises(PaymentRequired, match=re.escape("Calls: $1.00")):
        ask(key, feature="call")


def test_refunds_do_not_count_as_spend(make_account):
    account = make_account("voice-prepaid", credit_micros=50 * USD)
    call = report_minutes(account, 10)  # 0.80 USD
    report_minutes(account, 5)  # 0.40 USD
    refund_call(call_id=call.call_id, now=NOW)
    start = account.subscription.current_period_start
    end = account.subscription.current_period_end

    assert period_spend(account=account, start=start, end=end).net_micros == 400_000


def test_a_key_of_another_account_is_refused(account, make_account, make_key):
    other = make_key(make_account("llm-api"))

    with pytest.raises(budgets.BudgetError):
        budgets.create_budget(
            account=account,
            name="Theirs",
            amount_micros=USD,
            hard=True,
            api_key=other.api_key,
            now=NOW,
        )


@pytest.mark.parametrize("amount", [0, -1])
def test_a_budget_is_an_amount_above_zero(account, amount):
    with pytest.raises(budgets.BudgetError):
        budgets.create_budget(account=account, name="X", amount_micros=amount, hard=False, now=NOW)


def test_the_api_answers_402_insufficient_quota_with_the_budgets_name(
    client, account, production, committed, clear_cache
):
    budgets.create_budget(
        account=account,
        name="Production key",
        amount_micros=1 * USD,
        hard=True,
        api_key=production.api_key,
        now=NOW,
    )
    committed(spend_usd, account, 1)

    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        response = client.post(
            "/api/v1/authorize",
            json.dumps({"feature": "llm", "model": "gpt-4o", "provider": "openai"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {production.token}",
        )

    assert response.status_code == 402, response.content
    error = response.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "402"
    assert "Monthly budget 'Production key: $1.00' reached" in error["message"]
