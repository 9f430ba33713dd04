"""The operator's ids make usage idempotent, also under concurrency (SPEC U10, L4).

The concurrent tests run real OS processes (fork) against the test database and compare the
final state with what one sequential report would have left.
"""

from datetime import timedelta

import pytest

from billing.models import EntryKind
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    call,
    concurrent,
    entries,
    everything_written,
    in_processes,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
    tokens,
)
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.models import Call, UsageEvent

PROCESSES = 8
# gpt-4o: 1,000 input tokens (0.0025 USD) and 500 output tokens (0.005 USD).
REQUEST_MICROS = 7_500


@pytest.fixture
def llm_account(make_account):
    return make_account("llm-api")


def ingest(*reports, now=NOW):
    return ingest_events(reports=list(reports), now=now)


# One process -----------------------------------------------------------------------------------


def test_the_same_event_id_twice_is_charged_once(llm_account):
    report = tokens(llm_account, input_tokens=1000, output_tokens=500)
    [first] = ingest(report)
    before = everything_written()

    [again] = ingest(report, now=NOW + timedelta(minutes=3))

    assert (first.status, first.cost_micros) == ("accepted", REQUEST_MICROS)
    assert (again.status, again.cost_micros, again.code) == ("duplicate", REQUEST_MICROS, 200)
    assert everything_written() == before
    assert len(entries(llm_account, EntryKind.USAGE)) == 1


def test_the_same_event_id_with_other_content_is_rejected_with_409_and_writes_nothing(
    llm_account,
):
    ingest(tokens(llm_account, id="req-1", input_tokens=1000))
    before = everything_written()

    [result] = ingest(tokens(llm_account, id="req-1", input_tokens=2000))

    assert (result.status, result.code) == ("rejected", 409)
    assert everything_written() == before


def test_an_event_id_repeated_within_one_batch_is_charged_once(llm_account):
    report = tokens(llm_account, input_tokens=1000, output_tokens=500)

    first, again = ingest(report, report)

    assert first.status == "accepted"
    assert (again.status, again.cost_micros) == ("duplicate", REQUEST_MICROS)
    assert UsageEvent.objects.count() == 1
    assert balance(llm_account) == 10 * USD - REQUEST_MICROS


def test_a_refused_event_repeated_within_one_batch_is_refused_again_not_a_duplicate(
    llm_account,
):
    report = tokens(llm_account, "gpt-9-imaginary")

    first, again = ingest(report, report)

    assert (first.status, first.code) == ("rejected", 400)
    assert (again.status, again.code, again.reason) == ("rejected", 400, first.reason)
    assert not UsageEvent.objects.exists()


def test_an_event_id_reused_within_one_batch_with_other_content_is_rejected(llm_account):
    first, other = ingest(
        tokens(llm_account, id="req-1", input_tokens=1000),
        tokens(llm_account, id="req-1", input_tokens=9999),
    )

    assert first.status == "accepted"
    assert (other.status, other.code) == ("rejected", 409)
    assert UsageEvent.objects.get(event_id="req-1").quantity == 1000


def test_an_event_id_of_another_account_is_rejected_with_409(llm_account, make_account):
    other = make_account("llm-api")
    ingest(tokens(llm_account, id="req-1"))
    before = everything_written()

    [result] = ingest(tokens(other, id="req-1"))

    assert (result.status, result.code) == ("rejected", 409)
    assert everything_written() == before


# Several processes at the same moment -----------------------------------------------------------


def _ingest_in_child(report):
    [result] = ingest_events(reports=[report], now=NOW)
    return (result.status, result.code, result.cost_micros)


def _report_call_in_child(report):
    try:
        result, changed = report_call(report=report, now=NOW)
    except Exception as exc:
        return (type(exc).__name__, getattr(exc, "status", None))
    return ("changed" if changed else "unchanged", result.cost_micros)


@concurrent
def test_the_same_event_from_8_processes_at_once_is_accepted_once_and_charged_once(
    transactional_db, llm_account
):
    report = tokens(llm_account, id="req-1", input_tokens=1000, output_tokens=500)

    outcomes = in_processes(_ingest_in_child, [(report,)] * PROCESSES)

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    results = sorted(outcome[1] for outcome in outcomes)
    assert results == sorted(
        [("accepted", 200, REQUEST_MICROS)] + [("duplicate", 200, REQUEST_MICROS)] * 7
    )
    assert UsageEvent.objects.count() == 1
    assert [e.amount_micros for e in entries(llm_account, EntryKind.USAGE)] == [-REQUEST_MICROS]
    assert balance(llm_account) == 10 * USD - REQUEST_MICROS


@concurrent
def test_the_same_final_call_report_from_8_processes_at_once_is_charged_once(
    transactional_db, make_account
):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    report = call(account, 83, call_id="c1")

    outcomes = in_processes(_report_call_in_child, [(report,)] * PROCESSES)

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    results = sorted(outcome[1] for outcome in outcomes)
    assert results == sorted([("changed", 110_667)] + [("unchanged", 110_667)] * 7)
    assert Call.objects.count() == 1
    assert [e.amount_micros for e in entries(account, EntryKind.USAGE)] == [-110_667]
    assert balance(account) == 20 * USD - 110_667


@concurrent
def test_one_event_id_with_8_different_contents_at_once_is_accepted_once_and_409_otherwise(
    transactional_db, llm_account
):
    reports = [
        tokens(llm_account, id="req-1", input_tokens=1000 * (n + 1)) for n in range(PROCESSES)
    ]

    outcomes = in_processes(_ingest_in_child, [(r,) for r in reports])

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    statuses = sorted((status, code) for status, code, _ in (o[1] for o in outcomes))
    assert statuses == [("accepted", 200)] + [("rejected", 409)] * 7
    [winner] = [o[1] for o in outcomes if o[1][0] == "accepted"]
    event = UsageEvent.objects.get()
    assert event.cost_micros == winner[2]
    assert [e.amount_micros for e in entries(llm_account, EntryKind.USAGE)] == [-winner[2]]


@concurrent
def test_an_event_id_sent_again_with_other_content_by_8_processes_writes_nothing(
    transactional_db, llm_account
):
    ingest(tokens(llm_account, id="req-1", input_tokens=1000))
    before = everything_written()
    reports = [tokens(llm_account, id="req-1", input_tokens=2000 + n) for n in range(PROCESSES)]

    outcomes = in_processes(_ingest_in_child, [(r,) for r in reports])

    assert [o[1][:2] for o in outcomes] == [("rejected", 409)] * PROCESSES
    assert everything_written() == before


@concurrent
def test_one_call_id_with_8_different_final_reports_at_once_is_charged_once(
    transactional_db, make_account
):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    reports = [call(account, 60 + n, call_id="c1") for n in range(PROCESSES)]

    outcomes = in_processes(_report_call_in_child, [(r,) for r in reports])

    results = [outcome[1] for outcome in outcomes]
    [winner] = [r for r in results if r[0] == "changed"]
    assert sorted(results) == sorted([winner] + [("Conflict", 409)] * 7)
    assert Call.objects.get().cost_micros == winner[1]
    assert [e.amount_micros for e in entries(account, EntryKind.USAGE)] == [-winner[1]]
