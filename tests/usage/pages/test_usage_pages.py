"""The usage pages (SPEC D2, U11): breakdowns and filters, CSV that streams, the priced log."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.http import StreamingHttpResponse

from tests.conftest import NOW
from tests.usage.dashboard_data import report_call_at, report_llm_at
from usage.ingest.calls import refund_call, report_call
from usage.pages.breakdown import UsageFilter, usage_report
from usage.reports import CallReport

USD = 1_000_000
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def llm_account(make_account):
    account = make_account("llm-api", credit_micros=20 * USD, at=MARCH_1, anchor_day=1)
    report_llm_at(account, at=at(3), model="gpt-4o", input_tokens=2000, output_tokens=1000)
    report_llm_at(account, at=at(3, 13), model="gpt-4o-mini", input_tokens=10_000)
    report_llm_at(account, at=at(9), model="llama-3.3-70b", provider="meta")
    return account


@pytest.fixture
def voice_account(make_account):
    return make_account("voice-prepaid", credit_micros=50 * USD, at=MARCH_1, anchor_day=1)


def get(client, account, path="", **params):
    client.force_login(account.memberships.get().user)
    with time_machine.travel(NOW, tick=False):
        return client.get(f"/app/a/{account.public_id}/usage/{path}", params)


def test_the_report_breaks_usage_down_by_day_and_model(llm_account):
    report = usage_report(
        account=llm_account, usage_filter=UsageFilter(start=at(1).date(), end=at(15).date())
    )

    # gpt-4o: 2,000 x 2.50 + 1,000 x 10.00 per million = 0.015 USD.
    by_model = {r["model"]: r for r in report["by_model"]}
    assert by_model["gpt-4o"]["cost_micros"] == 15_000
    assert by_model["gpt-4o"]["input_tokens"] == 2000
    assert by_model["llama-3.3-70b"]["provider"] == "meta"
    by_day = {r["day"].day: r for r in report["by_day"]}
    assert by_day[3]["items"] == 2 and by_day[9]["items"] == 1 and by_day[10]["items"] == 0
    assert len(report["by_day"]) == 15
    assert report["total"]["items"] == 3
    assert {p["provider"] for p in report["by_provider"]} == {"openai", "meta"}


def test_filters_narrow_the_report_to_a_model_and_a_date_range(llm_account):
    report = usage_report(
        account=llm_account,
        usage_filter=UsageFilter(start=at(3).date(), end=at(3).date(), model="gpt-4o-mini"),
    )

    assert report["total"]["items"] == 1
    assert report["total"]["input_tokens"] == 10_000


def test_the_usage_page_shows_charts_tables_and_the_filter_form(client, llm_account):
    response = get(client, llm_account, model="gpt-4o", start="2026-03-01", end="2026-03-15")

    page = response.content.decode()
    assert response.status_code == 200
    assert '<script id="daily-chart-data" type="application/json">' in page
    assert "All usage at one rate: " in page  # one model: no one-slice pie
    assert "<option selected>gpt-4o</option>" in page
    assert 'title="Exactly $0.015">$0.02<' in page  # a total: cents, exact on hover
    assert '<label for="id_start">From</label>' in page


def test_cost_by_model_is_drawn_only_when_there_is_more_than_one_slice(
    client, llm_account, voice_account
):
    report_call_at(voice_account, seconds=90, at=at(3))
    report_call_at(voice_account, seconds=200, at=at(4))

    several = get(client, llm_account, start="2026-03-01", end="2026-03-15").content.decode()
    one = get(client, voice_account, start="2026-03-01", end="2026-03-15").content.decode()

    assert 'id="model-chart"' in several and "All usage at one rate" not in several
    assert 'id="model-chart"' not in one
    assert "All usage at one rate: " in one


def test_every_chart_of_the_usage_page_points_at_its_table(client, llm_account):
    page = get(client, llm_account, start="2026-03-01", end="2026-03-15").content.decode()

    assert '<a href="#by-day-title">by date</a>' in page and 'id="by-day-title"' in page
    assert '<a href="#by-model-title">' in page and 'id="by-model-title"' in page
    assert 'class="chart-box js-only' in page  # the empty box is hidden without JavaScript


def test_a_range_that_ends_before_it_starts_is_refused_and_the_period_shown(client, llm_account):
    response = get(client, llm_account, start="2026-03-10", end="2026-03-01")

    assert response.status_code == 200
    assert "The range ends before it starts." in response.content.decode()


def test_the_csv_export_streams_one_row_per_day_and_model(client, llm_account):
    response = get(client, llm_account, "export.csv", start="2026-03-01", end="2026-03-15")

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("date,component,provider,model,items,quantity")
    assert "2026-03-03,llm,openai,gpt-4o,1,2000,input tokens,1000,0.015000" in lines[1:3][
        0:2
    ] or any(
        line.startswith("2026-03-03,llm,openai,gpt-4o,1,2000,input tokens,1000,0.015000")
        for line in lines
    )
    assert len(lines) == 4


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(client, voice_account):
    report_call_at(voice_account, seconds=60, at=at(4), call_id="=HYPERLINK(1)")

    response = get(client, voice_account, "log/export.csv", kind="calls")

    body = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK(1)" in body


def test_the_call_log_explains_each_price_step_by_step(client, voice_account):
    report_call_at(voice_account, seconds=83, at=at(4), call_id="call-83")

    page = get(client, voice_account, "log/", kind="calls").content.decode()

    assert "call-83" in page
    for step in ["Raw", "Rounding", "Billed", "Allowance or paid", "Rate", "Cost"]:
        assert f'<span class="step-label">{step}</span>' in page
    # 83 s at 0.08 USD/min is 0.11066666... rounded once to 0.110667 (SPEC STYLE figure).
    assert "83 s × 0.08 USD/min ÷ 60 = 0.11066666… → $0.110667" in page  # noqa: RUF001
    assert "$0.110667" in page


def test_a_refunded_call_is_marked_in_the_log(client, voice_account):
    report_call_at(voice_account, seconds=120, at=at(4), call_id="call-dropped")
    refund_call(call_id="call-dropped", now=at(4, 13), reason="dropped")

    page = get(client, voice_account, "log/", kind="calls").content.decode()

    assert 'data-testid="refunded"' in page
    assert '<span class="step-label">Refund</span> $0.16 credited back' in page


def test_minute_aggregation_is_explained_with_the_carried_seconds(client, make_account):
    account = make_account("voice-payg", at=MARCH_1, anchor_day=1)
    for n in range(4):  # four calls, 125 s in all: 2 billing events, 5 s carried (SPEC U4)
        report_call_at(account, seconds=[30, 30, 30, 35][n], at=at(5, 10, n), llm="gpt-4o")

    page = get(client, account, "log/", kind="calls").content.decode()

    assert "Minute aggregation" in page
    assert "Voice engine: 0 whole minutes, 35 s carried to the next call" not in page
    assert "5 s carried to the next call" in page


def test_the_log_pages_with_a_cursor_and_never_repeats_an_item(client, voice_account):
    for n in range(60):
        report_call_at(voice_account, seconds=30, at=at(5, 10, n % 60), call_id=f"c-{n:02d}")

    first = get(client, voice_account, "log/", kind="calls")
    page = first.context["page"]
    assert len(page["entries"]) == 50 and page["next_cursor"]
    second = get(client, voice_account, "log/", kind="calls", after=page["next_cursor"])

    first_ids = {e["item"].call_id for e in page["entries"]}
    second_ids = {e["item"].call_id for e in second.context["page"]["entries"]}
    assert len(second_ids) == 10
    assert not first_ids & second_ids
    assert first_ids | second_ids == {f"c-{n:02d}" for n in range(60)}


def test_htmx_asks_for_the_next_rows_only(client, voice_account):
    for n in range(55):
        report_call_at(voice_account, seconds=30, at=at(6, 10, n))
    cursor = get(client, voice_account, "log/", kind="calls").context["page"]["next_cursor"]

    client.force_login(voice_account.memberships.get().user)
    with time_machine.travel(NOW, tick=False):
        response = client.get(
            f"/app/a/{voice_account.public_id}/usage/log/",
            {"kind": "calls", "after": cursor},
            headers={"HX-Request": "true"},
        )

    page = response.content.decode()
    assert "<html" not in page
    assert page.count("<details>") == 5


def test_the_event_log_lists_token_requests_with_their_prices(client, llm_account):
    page = get(client, llm_account, "log/", kind="events").content.decode()

    assert "gpt-4o-mini" in page
    assert "Input tokens (gpt-4o): 2,000 × 2.5 USD per million" in page  # noqa: RUF001


def test_after_a_refund_the_usage_page_labels_gross_and_net_cost_apart(client, voice_account):
    # Two calls of 120 s at 0.08 USD/min (0.16 USD each); one is credited back.
    report_call_at(voice_account, seconds=120, at=at(4), call_id="call-kept")
    report_call_at(voice_account, seconds=120, at=at(4, 11), call_id="call-dropped")
    refund_call(call_id="call-dropped", now=at(4, 13), reason="dropped")

    page = get(client, voice_account, start="2026-03-01", end="2026-03-15").content.decode()

    assert '<div class="label">Net cost</div><div class="value">$0.16</div>' in page
    assert "$0.32 gross, $0.16 refunded" in page
    assert '<th scope="col" class="num">Gross cost</th>' in page
    assert '<td data-label="Net cost" class="num">$0.16</td>' in page
    assert ">Cost<" not in page  # one label, one meaning
    assert "$0.160000" not in page


def test_the_log_shows_when_a_late_call_happened_with_its_time_zone(client, voice_account):
    # Connected 4 Mar 11:58 UTC, reported two days later.
    report_call(
        report=CallReport(
            call_id="call-late",
            account=voice_account.public_id,
            status="completed",
            connected_at=at(4, 11, 58),
            ended_at=at(4, 12),
        ),
        now=at(6, 9),
    )

    page = get(client, voice_account, "log/", kind="calls").content.decode()

    assert '<time datetime="2026-03-04T11:58:00+00:00"' in page
    assert 'title="Reported 6 Mar 2026, 09:00:00 UTC">4 Mar, 11:58:00 UTC</time>' in page


def test_a_reversed_range_on_the_log_is_an_error_as_on_the_breakdown(client, voice_account):
    report_call_at(voice_account, seconds=60, at=at(4), call_id="call-any")

    log = get(client, voice_account, "log/", kind="calls", start="2026-03-10", end="2026-03-05")
    breakdown = get(client, voice_account, start="2026-03-10", end="2026-03-05")

    for response in (log, breakdown):
        assert response.status_code == 200
        assert "The range ends before it starts." in response.content.decode()


def test_the_refunded_filter_lists_only_refunded_calls(client, voice_account):
    report_call_at(voice_account, seconds=120, at=at(4), call_id="call-kept")
    report_call_at(voice_account, seconds=120, at=at(4, 11), call_id="call-dropped")
    refund_call(call_id="call-dropped", now=at(4, 13), reason="dropped")

    page = get(client, voice_account, "log/", kind="calls", refunded="on").content.decode()

    assert "call-dropped" in page
    assert "call-kept" not in page


def test_call_statuses_and_event_types_are_separate_lists(client, voice_account):
    calls = get(client, voice_account, "log/", kind="calls").content.decode()
    events = get(client, voice_account, "log/", kind="events").content.decode()

    assert '<option value="no_answer">' in calls and '<option value="chat">' not in calls
    assert '<option value="chat">' in events and '<option value="no_answer">' not in events
    assert '<label for="id_status">Type</label>' in events
