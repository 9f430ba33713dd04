"""The overview page (SPEC D1): its figures from the rollups, and the page that shows them."""

from datetime import UTC, datetime

import pytest
import time_machine

from billing.models import Notification
from tests.conftest import NOW
from tests.usage.dashboard_data import report_call_at
from tests.usage.metering import chat
from usage.ingest.events import ingest_events
from usage.pages.overview import overview

USD = 1_000_000
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def busy(make_account):
    """A voice-prepaid account (0.08 USD/min) with calls on 2, 10, 14 and 15 March."""
    account = make_account("voice-prepaid", credit_micros=50 * USD, at=MARCH_1, anchor_day=1)
    for day, seconds in [(2, 600), (10, 1200), (14, 300), (15, 60)]:
        report_call_at(account, seconds=seconds, at=at(day, 11))
    account.refresh_from_db()
    return account


def test_the_period_figures_come_from_the_calls_of_the_period(busy):
    figures = overview(busy, NOW)

    assert figures["period_cost_micros"] == 2_880_000  # 2,160 s at 0.08 USD/min
    assert figures["period_minutes"] == 36
    assert figures["days_elapsed"] == 15  # 1 to 15 March, today included
    assert figures["days_until_reset"] == 17  # the period resets on 1 April
    assert figures["average_cost_micros"] == 192_000  # 2.88 USD / 15 days
    assert figures["average_minutes"] == 2.4
    # 2.88 USD so far + 16 days left at 0.192 USD a day
    assert figures["projected_cost_micros"] == 2_880_000 + 16 * 192_000
    assert figures["projected_minutes"] == (2160 + 16 * 144) // 60


def test_peak_days_are_the_busiest_days_first(busy):
    peaks = overview(busy, NOW)["peak_days"]

    assert [p["day"].day for p in peaks] == [10, 2, 14]
    assert peaks[0]["minutes"] == 20


def test_the_trend_compares_the_last_seven_days_with_the_seven_before(busy):
    # 9-15 March: 1,200 + 300 + 60 s; 2-8 March: 600 s.
    assert overview(busy, NOW)["trend_percent"] == 160


def test_the_chart_has_thirty_days_ending_today(busy):
    chart = overview(busy, NOW)["chart"]

    assert len(chart["labels"]) == 30
    assert chart["labels"][-1] == "2026-03-15"
    assert chart["cost_micros"][-1] == 80_000
    assert chart["minutes"][-6] == 20.0  # 10 March


def test_the_free_runway_is_the_balance_at_the_recent_daily_spend(busy):
    figures = overview(busy, NOW)

    # 47.12 USD left at 2.88 USD over the last 14 days: about 229 days.
    assert figures["runway_days"] == 229
    assert "lasts about 229 days" in figures["runway_sentence"]


def test_allowance_used_and_remaining_on_a_plan_with_included_minutes(make_account):
    account = make_account("voice-enterprise", at=MARCH_1, anchor_day=1)
    report_call_at(account, seconds=30 * 60, at=at(5), llm="gpt-4o")
    report_call_at(account, seconds=90 * 60, at=at(12), llm="gpt-4o")

    allowance = overview(account, NOW)["allowance"]

    assert allowance["unit"] == "minutes"
    assert (allowance["used"], allowance["total"], allowance["remaining"]) == (120, 6000, 5880)
    assert allowance["percent"] == 2
    # 120 min over 15 days, 16 days left at 8 min a day: 248 of 6,000 minutes.
    assert allowance["projected_percent"] == 4


def test_included_credit_shows_as_an_allowance_in_dollars(plans_without_fees, make_account):
    account = make_account("credits-monthly", at=MARCH_1, anchor_day=1)
    report_call_at(account, seconds=600, at=at(3))  # 10 min at 0.10 USD

    allowance = overview(account, NOW)["allowance"]

    assert allowance["unit"] == "usd"
    assert allowance["used"] == "$1.00"
    assert allowance["remaining"] == "$49.00"


def test_the_overview_page_shows_the_figures_chart_data_and_allowance_bar(client, make_account):
    owner_account = make_account("voice-enterprise", at=MARCH_1, anchor_day=1)
    report_call_at(owner_account, seconds=45 * 60, at=at(9), llm="gpt-4o")
    Notification.objects.create(
        account=owner_account,
        kind="allowance_used",
        key="test-alert",
        context={"percent": 80, "included": "6,000 minutes"},
        created_at=NOW,
    )
    client.force_login(owner_account.memberships.get().user)

    with time_machine.travel(NOW, tick=False):
        page = client.get(f"/app/a/{owner_account.public_id}/").content.decode()

    assert "Average daily usage" in page and "Projection for the period" in page
    assert "Days until reset" in page and "Peak days" in page
    assert '<progress id="allowance-progress" max="100" value="1"' in page
    assert '<script id="trend-chart-data" type="application/json">' in page
    assert "vendor/chart.umd.min.js" in page
    assert "Included allowance" in page  # the alert
    assert 'data-testid="sidebar-minutes">45.0<' in page


def test_the_30_day_chart_has_its_table_for_readers_without_javascript(client, busy):
    client.force_login(busy.memberships.get().user)

    with time_machine.travel(NOW, tick=False):
        page = client.get(f"/app/a/{busy.public_id}/").content.decode()

    table = page[page.index('<details class="disclose chart-table" id="trend-table">') :]
    table = table[: table.index("</details>")]
    assert table.count('data-label="Day"') == 30
    # 10 March: one call of 1,200 s at 0.08 USD/min.
    assert (
        '<th scope="row" data-label="Day">Tue 10 Mar</th><td data-label="Minutes" class="num">'
        '20.0</td><td data-label="Cost" class="num">$1.60</td>'
    ) in table
    assert 'class="chart-box js-only' in page  # the empty box is hidden without JavaScript


def test_the_overview_costs_the_same_queries_for_one_call_or_many(
    client, make_account, django_assert_max_num_queries
):
    account = make_account("voice-prepaid", credit_micros=50 * USD, at=MARCH_1, anchor_day=1)
    client.force_login(account.memberships.get().user)
    url = f"/app/a/{account.public_id}/"
    report_call_at(account, seconds=60, at=at(3))
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(25) as few:
        client.get(url)
    for n in range(30):
        report_call_at(account, seconds=60 + n, at=at(4 + n % 10))
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(len(few)):
        client.get(url)


@pytest.mark.parametrize("plan", ["voice-payg", "voice-enterprise"])
def test_the_sidebars_minutes_count_calls_and_chat_as_the_allowance_does(
    client, make_account, plan
):
    account = make_account(plan, at=MARCH_1, anchor_day=1)
    report_call_at(account, seconds=120, at=at(9), llm="gpt-4o")
    # 12 AI messages at 5 a minute: 2 billable minutes, 2 messages carried.
    ingest_events(reports=[chat(account, 12, occurred_at=at(9, 13))], now=at(9, 13))
    client.force_login(account.memberships.get().user)

    with time_machine.travel(NOW, tick=False):
        page = client.get(f"/app/a/{account.public_id}/").content.decode()
    figures = overview(account, NOW)

    assert '<dt>Call and chat minutes</dt><dd data-testid="sidebar-minutes">4.0<' in page
    assert figures["period_minutes"] == 4
    if figures["allowance"]:  # voice-enterprise: the allowance counts the same 4 minutes
        assert figures["allowance"]["used"] == 4
