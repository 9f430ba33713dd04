"""The raw SQL reads of event ingestion give what the ORM gave (usage.reads.events, rates)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import Account
from billing.db.raw_rows import column_in
from billing.models import ModelKind, ModelPrice, Subscription
from billing.plans.rates import ModelCatalog
from tests.conftest import NOW
from tests.usage.metering import tokens
from usage.ingest.events import ingest_events
from usage.models import UsageEvent
from usage.reads.events import stored_events, subscriptions_by_public_id


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_accounts_come_with_their_subscription_and_plan_as_the_orm_reads_them(make_account):
    flex = make_account("flex-router")  # a plan with a decimal commission percent
    llm = make_account("llm-api")

    found = subscriptions_by_public_id([flex.public_id, llm.public_id, "acc_unknown"])

    assert set(found) == {flex.public_id, llm.public_id}
    for public_id, (account, subscription) in found.items():
        expected = Subscription.objects.select_related("plan", "account").get(
            account__public_id=public_id
        )
        assert _fields(account) == _fields(expected.account)
        assert _fields(subscription) == _fields(expected)
        assert _fields(subscription.plan) == _fields(expected.plan)
        # Related objects are attached: reading them makes no query.
        assert subscription.account is account
        assert account.subscription is subscription
    _, flex_subscription = found[flex.public_id]
    assert isinstance(flex_subscription.plan.commission_percent, Decimal)


def test_an_account_without_a_subscription_comes_with_none(make_ledger_account):
    account = make_ledger_account()

    [(found, subscription)] = subscriptions_by_public_id([account.public_id]).values()

    assert (found.pk, subscription) == (account.pk, None)


def test_no_public_ids_read_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert subscriptions_by_public_id([]) == {}
        assert stored_events([]) == {}


def test_stored_events_are_found_by_id_with_owner_hash_and_cost(make_account):
    account = make_account("llm-api", credit_micros=10_000_000)
    [result] = ingest_events(reports=[tokens(account, input_tokens=1000)], now=NOW)
    event = UsageEvent.objects.get(event_id=result.id)

    found = stored_events([result.id, "never-reported"])

    assert found == {result.id: (account.pk, event.content_hash, event.cost_micros)}


def test_stored_events_are_found_among_many_ids(make_account):
    account = make_account("llm-api", credit_micros=10_000_000)
    reports = [tokens(account, input_tokens=10) for _ in range(3)]
    ingest_events(reports=reports, now=NOW)
    asked = [f"unknown-{n}" for n in range(997)] + [r.id for r in reports]

    found = stored_events(asked)

    assert sorted(found) == sorted(r.id for r in reports)


def test_a_list_condition_is_one_array_on_postgresql_and_an_in_list_elsewhere(is_postgres):
    condition, params = column_in("t.c", ["a", "b"])

    if is_postgres:
        assert (condition, params) == ("t.c = ANY(%s)", [["a", "b"]])
    else:
        assert (condition, params) == ("t.c IN (%s, %s)", ["a", "b"])
    with pytest.raises(ValueError):
        column_in("t.c", [])


@pytest.fixture
def prices(db):
    ModelPrice.objects.all().delete()
    old = ModelPrice.objects.create(
        provider="openai",
        model="gpt-x",
        input_per_million=Decimal("2.5000000000"),
        output_per_million=Decimal("10"),
        effective_from=NOW - timedelta(days=30),
    )
    new = ModelPrice.objects.create(
        provider="openai",
        model="gpt-x",
        input_per_million=Decimal("1.25"),
        output_per_million=Decimal("5"),
        effective_from=NOW - timedelta(days=1),
    )
    other = ModelPrice.objects.create(
        provider="acme",
        model="embed-y",
        kind=ModelKind.EMBEDDING,
        input_per_million=Decimal("0.02"),
        effective_from=NOW - timedelta(days=30),
    )
    return old, new, other


def test_the_catalog_of_some_models_prices_only_those(prices):
    old, new, _other = prices

    catalog = ModelCatalog(models=["gpt-x", "gpt-x", "unknown"])

    assert catalog.price(model="gpt-x", provider="OpenAI", at=NOW) == new
    assert catalog.price(model="gpt-x", provider="", at=NOW - timedelta(days=2)) == old
    assert catalog.price(model="gpt-x", provider="openai", at=NOW - timedelta(days=31)) is None
    assert catalog.price(model="embed-y", provider="acme", at=NOW) is None
    found = catalog.price(model="gpt-x", provider="openai", at=NOW)
    assert _fields(found) == _fields(ModelPrice.objects.get(pk=new.pk))
    assert isinstance(found.input_per_million, Decimal)


def test_the_whole_catalog_and_an_empty_one(prices, django_assert_num_queries):
    _old, new, other = prices

    everything = ModelCatalog()
    with django_assert_num_queries(0):
        nothing = ModelCatalog(models=[])

    assert everything.price(model="embed-y", provider="acme", at=NOW) == other
    assert everything.price(model="gpt-x", provider="openai", at=NOW) == new
    assert nothing.price(model="gpt-x", provider="openai", at=NOW) is None


def test_events_of_an_account_without_subscription_fail_as_before(make_ledger_account):
    account = make_ledger_account()

    with pytest.raises(Subscription.DoesNotExist):
        ingest_events(reports=[tokens(account, input_tokens=10)], now=NOW)

    assert not UsageEvent.objects.exists()
    assert Account.objects.get(pk=account.pk).balance_micros == account.balance_micros
