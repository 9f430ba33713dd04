"""Daily rollups and the usage summary read from them (SPEC U11, section 9)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, transaction

from billing.invoicing.unbilled import UnbilledDeltas
from billing.models import Rate, RateComponent, UnbilledLine
from billing.money import micros_to_api
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    call,
    chat,
    embedding,
    flex,
    item_costs,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
    rollup_costs,
    sms,
    tokens,
)
from usage.charging.rollups import RollupDeltas
from usage.ingest.calls import refund_call, report_call
from usage.ingest.events import ingest_events
from usage.models import UsageRollup
from usage.selectors import usage_summary


def report(report_):
    return report_call(report=report_, now=NOW)[0]


def ingest(*reports):
    return ingest_events(reports=list(reports), now=NOW)


@pytest.fixture
def payg(make_account):
    account = make_account("voice-payg")
    # A priced SMS, so that every kind of line has money on it.
    Rate.objects.create(
        account=account,
        component=RateComponent.SMS,
        price="0.0079",
        effective_from=NOW.replace(day=1),
    )
    return account


def use_a_bit_of_everything(account):
    report(call(account, "83.001", llm="gpt-4o"))
    report(call(account, 200, llm="claude-sonnet-4", destination="+442071234567"))
    report(call(account, 30, status="no_answer", llm="gpt-4o"))
    report(call(account, 45, status="failed", llm="gpt-4o"))
    report(
        call(
            account,
            600,
            status="transferred",
            llm="gpt-4o-mini",
            transferred_at=NOW - timedelta(hours=1) + timedelta(seconds=61),
        )
    )
    ingest(
        chat(account, 7),
        chat(account, 9),
        sms(account, 2),
        tokens(account, input_tokens=1234, output_tokens=567),
        embedding(account, input_tokens=3333),
    )


def test_the_item_and_line_rollups_each_add_up_to_the_items_costs_to_the_micro_dollar(payg):
    use_a_bit_of_everything(payg)

    items, lines = rollup_costs(payg)
    assert item_costs(payg) > 0
    assert items == item_costs(payg)
    assert lines == item_costs(payg)


def test_the_rollups_add_up_on_a_prepaid_account_with_a_shortfall(make_account):
    account = make_account("voice-prepaid", credit_micros=100_000)
    for seconds in ("83.4", "83.5", 61, 7):
        report(call(account, seconds))
    ingest(sms(account, 4), chat(account, 12))

    items, lines = rollup_costs(account)
    assert items == lines == item_costs(account) == 110_667 + 112_000 + 81_333 + 9_333


def test_the_rollups_add_up_for_commissions_and_tokens(make_account):
    router = make_account("flex-router")
    api = make_account("llm-api")
    ingest(
        flex(router),
        flex(router, standard="0.0999", flex_price="0.0333"),
        flex(router, start_within="auto"),
    )
    ingest(
        tokens(api, input_tokens=1, output_tokens=3),
        embedding(api, input_tokens=77),
        tokens(api, "gpt-4o-mini", input_tokens=999, output_tokens=1),
    )

    for account in (router, api):
        items, lines = rollup_costs(account)
        assert items == lines == item_costs(account)
    assert item_costs(router) == 14_400 + 13_320


def test_the_usage_summary_reports_minutes_calls_sms_chat_tokens_and_cost(payg):
    use_a_bit_of_everything(payg)
    payg.refresh_from_db()

    summary = usage_summary(account=payg, now=NOW)

    # 84 + 200 + 5 (no answer) + 0 (failed) + 61 (transferred) = 350 s.
    assert summary["minutes"] == "5.83"
    assert summary["calls"] == 5
    assert summary["sms"] == 2
    assert summary["chat_messages"] == 16
    assert summary["llm_requests"] == 1
    assert summary["input_tokens"] == 1234 + 3333
    assert summary["output_tokens"] == 567
    assert summary["cost"] == micros_to_api(item_costs(payg))
    assert summary["refunded"] == "0.000000"
    assert summary["balance"] == micros_to_api(-item_costs(payg))
    assert summary["period_start"] == datetime(2026, 3, 15, tzinfo=UTC).isoformat()


def test_the_usage_summary_counts_refunds(make_account):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    charged = report(call(account, 83))

    refund_call(call_id=charged.call_id, now=NOW)
    account.refresh_from_db()

    summary = usage_summary(account=account, now=NOW)
    assert summary["cost"] == "0.110667"
    assert summary["refunded"] == "0.110667"
    assert summary["balance"] == "20.000000"


def test_usage_is_counted_on_its_utc_day_whatever_offset_it_was_reported_with(make_account):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    # 01:30 on 15 March at UTC+05:00 is 20:30 on 14 March in UTC: the previous period.
    tokyo_ish = timezone(timedelta(hours=5))
    moment = datetime(2026, 3, 15, 1, 30, tzinfo=tokyo_ish)
    charged = report(call(account, 83, connected_at=moment))
    ingest(sms(account, 2, occurred_at=moment))
    refund_call(call_id=charged.call_id, now=NOW)

    days = set(UsageRollup.objects.filter(account=account).values_list("day", flat=True))
    assert days == {datetime(2026, 3, 14).date()}
    assert usage_summary(account=account, now=NOW)["calls"] == 0
    previous = usage_summary(account=account, now=NOW - timedelta(days=1))
    assert (previous["calls"], previous["sms"], previous["refunded"]) == (1, 2, "0.110667")


AWKWARD_NAMES = ["", "NULL", 'quo"te', "back\\slash", "{braces}", "a,b", "spa ce", "naïve"]


def test_many_rollup_rows_are_added_to_existing_rows_exactly(make_account):
    # More rows than a statement with one parameter per value carries cheaply, with model
    # names that need quoting inside an array, on two days, twice: the second write adds.
    account = make_account("llm-api")
    days = [NOW.date(), (NOW + timedelta(days=1)).date()]
    names = [*AWKWARD_NAMES, *(f"model-{n}" for n in range(30))]
    for _ in range(2):
        rollups, unbilled = RollupDeltas(), UnbilledDeltas()
        for day in days:
            for n, name in enumerate(names):
                rollups.add(
                    account_id=account.pk,
                    day=day,
                    component="llm",
                    provider="openai",
                    model=name,
                    items=1,
                    quantity=n,
                    cost_micros=10**12 + n,  # beyond 32 bits
                )
                rollups.add(
                    account_id=account.pk,
                    day=day,
                    component="input_tokens",
                    is_line=True,
                    model=name,
                    items=1,
                    cost_micros=n,
                )
                unbilled.add(account_id=account.pk, component="input_tokens", model=name, items=1)
        rollups.write()
        unbilled.write()

    item_rows = UsageRollup.objects.filter(account=account, is_line=False)
    assert item_rows.count() == len(days) * len(names)
    for day in days:
        for n, name in enumerate(names):
            row = item_rows.get(day=day, model=name)
            assert (row.provider, row.items, row.quantity) == ("openai", 2, 2 * n)
            assert row.cost_micros == 2 * (10**12 + n)
            line = UsageRollup.objects.get(account=account, day=day, is_line=True, model=name)
            assert (line.component, line.items, line.cost_micros) == ("input_tokens", 2, 2 * n)
    assert sorted(
        UnbilledLine.objects.filter(account=account).values_list("model", "items")
    ) == sorted((name, 2 * len(days)) for name in names)


def test_a_rollup_value_too_long_for_its_column_is_refused_not_cut(make_account, is_postgres):
    account = make_account("llm-api")
    rollups = RollupDeltas()
    rollups.add(account_id=account.pk, day=NOW.date(), component="c" * 17, items=1)

    if not is_postgres:
        pytest.skip("SQLite does not enforce the length of text")
    with pytest.raises(DataError), transaction.atomic():
        rollups.write()
    assert not UsageRollup.objects.filter(account=account).exists()
