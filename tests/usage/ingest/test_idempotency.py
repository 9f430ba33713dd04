"""The operator's ids make usage idempotent, also under concurrency (SPEC U10, L4).

The concurrent tests run real OS processes (fork) against the test database and compare the
final state with what one sequential report would have left.
"""

import contextlib
import json
import multiprocessing
import threading
from datetime import timedelta

import pytest
import time_machine
from django.test import Client

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
from usage.ingest import events
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


def _post_batch_in_child(token, batch, all_there):
    """POST one batch to the real endpoint; return the status and each event's result.

    The batch waits, once it has read which of its ids are claimed and just before it inserts
    them (PostgreSQL's COPY), until every batch is there: they all insert ids that nobody had
    claimed, at the same moment, as the busiest platform would make them. Later passes (retries)
    do not wait. On SQLite, whose writers take turns, nothing waits.
    """
    copy_insert = events.copy_insert
    waited = []

    def copy_once_all_are_there(*args, **kwargs):
        if not waited:
            waited.append(True)
            # A batch that never gets here must not stop the others.
            with contextlib.suppress(threading.BrokenBarrierError):
                all_there.wait(timeout=30)
        return copy_insert(*args, **kwargs)

    events.copy_insert = copy_once_all_are_there
    response = Client().post(
        "/api/v1/events",
        json.dumps({"events": batch}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    if response.status_code != 200:
        return (response.status_code, response.content.decode()[:300])
    results = response.json()["results"]
    return (200, [(r["id"], r["status"], r.get("code"), r["cost"]) for r in results])


@concurrent
def test_batches_reusing_event_ids_across_accounts_at_once_answer_409_inside_a_200(
    transactional_db, make_account, make_key
):
    # Each batch claims its own account's events, half of them with ids that other batches
    # claim at the same moment for their accounts, each batch in its own order: every reused
    # id is accepted once and answered 409 everywhere else, and the rest is charged.
    platform = make_key()
    prefix = "race"
    accounts = [make_account("llm-api") for _ in range(PROCESSES)]
    moment = (NOW - timedelta(minutes=5)).isoformat()
    # Overlapping windows of the shared ids, in opposite orders: a batch may meet claims of
    # several others in turn, and two batches inserting the same ids in opposite orders would
    # each wait for the other if the inserts were not made in one order.
    window = 40
    shared = [f"{prefix}-shared-{k:03d}" for k in range(PROCESSES - 1 + window)]
    own = {index: [f"{prefix}-own-{index}-{k}" for k in range(3)] for index in range(PROCESSES)}
    batches = []
    for index, account in enumerate(accounts):
        ids = shared[index : index + window]
        ids = ids[::-1] if index % 2 else ids
        batches.append(
            [
                {
                    "id": event_id,
                    "account": account.public_id,
                    "type": "llm",
                    "occurred_at": moment,
                    "model": "gpt-4o",
                    "provider": "openai",
                    "input_tokens": 1000,
                    "output_tokens": 500,
                }
                for event_id in ids + own[index]
            ]
        )

    with time_machine.travel(NOW, tick=False):
        all_there = multiprocessing.get_context("fork").Barrier(PROCESSES)
        outcomes = in_processes(
            _post_batch_in_child, [(platform.token, b, all_there) for b in batches]
        )

    assert [o[0] for o in outcomes] == ["ok"] * PROCESSES, outcomes
    answers = [o[1] for o in outcomes]
    assert [status for status, _ in answers] == [200] * PROCESSES, answers
    accepted_by_id = {}
    for (_, results), account in zip(answers, accounts, strict=True):
        for event_id, status, code, _ in results:
            if event_id in shared:
                assert (status, code) in {("accepted", None), ("rejected", "409")}
            else:
                assert status == "accepted", (event_id, status, code)
            if status == "accepted":
                assert event_id not in accepted_by_id, f"{event_id} accepted twice"
                accepted_by_id[event_id] = account
        # The sequential model: the account pays exactly what its accepted events cost.
        paid = sum(REQUEST_MICROS for _, status, _, _ in results if status == "accepted")
        assert balance(account) == 10 * USD - paid
    assert set(accepted_by_id) == set(shared).union(*own.values())
    stored = dict(
        UsageEvent.objects.filter(event_id__startswith=f"{prefix}-").values_list(
            "event_id", "account_id"
        )
    )
    assert stored == {event_id: account.pk for event_id, account in accepted_by_id.items()}
