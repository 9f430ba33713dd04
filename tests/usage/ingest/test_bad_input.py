"""Refused usage input: the right error, and nothing written (SPEC U10, section 11)."""

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import NOW
from tests.usage.metering import (
    CONNECTED_AT,
    USD,
    call,
    chat,
    everything_written,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
    sms,
    tokens,
)
from usage.ingest.calls import report_call
from usage.ingest.events import MAX_BATCH, ingest_events
from usage.models import UsageEvent
from usage.reports import CallReport, EventReport, NotFound, UsageError


@pytest.fixture
def prepaid(make_account):
    return make_account("voice-prepaid", credit_micros=20 * USD)


def refused(report, error=UsageError):
    """Report a call that must be refused; return the error after checking nothing changed."""
    before = everything_written()
    with pytest.raises(error) as raised:
        report_call(report=report, now=NOW)
    assert everything_written() == before
    return raised.value


def rejected(*reports):
    """Ingest events that must all be rejected; return their results."""
    before = everything_written()
    results = ingest_events(reports=list(reports), now=NOW)
    assert {r.status for r in results} == {"rejected"}
    assert everything_written() == before
    return results


# Calls -----------------------------------------------------------------------------------------


def test_a_call_for_an_unknown_account_is_not_found(prepaid):
    report = CallReport(
        call_id="c1",
        account="acc_doesnotexist",
        status="completed",
        connected_at=CONNECTED_AT,
        ended_at=CONNECTED_AT + timedelta(seconds=83),
    )

    error = refused(report, NotFound)

    assert (error.status, error.param) == (404, "account")


def test_a_negative_hold_is_refused(prepaid):
    error = refused(call(prepaid, 83, hold_seconds=Decimal("-1")))

    assert (error.status, error.param) == (400, "hold_seconds")


def test_a_call_that_ends_before_it_connects_is_refused(prepaid):
    error = refused(call(prepaid, ended_at=CONNECTED_AT - timedelta(seconds=1)))

    assert error.param == "ended_at"


def test_a_call_transferred_before_it_connects_is_refused(prepaid):
    report = call(
        prepaid, 83, status="transferred", transferred_at=CONNECTED_AT - timedelta(seconds=1)
    )

    assert refused(report).param == "transferred_at"


@pytest.mark.parametrize("status", ["completed", "transferred"])
def test_a_call_transferred_after_it_ends_is_refused(prepaid, status):
    report = call(prepaid, 83, status=status, transferred_at=CONNECTED_AT + timedelta(seconds=84))

    error = refused(report)

    assert (error.status, error.param) == (400, "transferred_at")
    assert error.message == "The call is transferred after it ends."


def test_a_final_call_without_an_end_is_refused(prepaid):
    assert refused(call(prepaid, ended_at=None)).param == "ended_at"


@pytest.mark.parametrize("name", ["connected_at", "ended_at"])
def test_a_naive_datetime_is_refused(prepaid, name):
    report = call(prepaid, 83)
    naive = replace(report, **{name: getattr(report, name).replace(tzinfo=None)})

    error = refused(naive)

    assert error.param == name
    assert "time zone" in error.message


def test_a_call_that_connected_36_days_ago_is_too_late_to_bill(prepaid):
    error = refused(call(prepaid, 83, connected_at=NOW - timedelta(days=36)))

    assert "35 days" in error.message


def test_a_call_reported_34_days_late_is_still_billed(prepaid):
    result, _ = report_call(
        report=call(prepaid, 83, connected_at=NOW - timedelta(days=34)), now=NOW
    )

    assert result.cost_micros == 110_667


def test_a_call_in_the_future_is_refused(prepaid):
    error = refused(call(prepaid, 83, connected_at=NOW + timedelta(hours=1)))

    assert "future" in error.message


@pytest.mark.parametrize(
    "fields",
    [{"status": "finished"}, {"direction": "sideways"}, {"call_id": "x" * 101}],
    ids=["status", "direction", "call_id"],
)
def test_malformed_call_fields_are_refused(prepaid, fields):
    refused(call(prepaid, 83, **fields))


# Events ----------------------------------------------------------------------------------------


def test_an_event_for_an_unknown_account_is_rejected_with_404(prepaid):
    report = EventReport(id="e1", account="acc_doesnotexist", type="sms", occurred_at=NOW, count=1)

    [result] = rejected(report)

    assert result.code == 404


def test_a_naive_occurred_at_is_rejected(prepaid):
    [result] = rejected(sms(prepaid, occurred_at=datetime(2026, 3, 15, 11, 0)))

    assert (result.code, result.reason) == (400, "occurred_at needs a time zone")


def test_an_event_from_36_days_ago_is_rejected(prepaid):
    [result] = rejected(sms(prepaid, occurred_at=NOW - timedelta(days=36)))

    assert result.code == 400
    assert "35 days" in result.reason


def test_an_event_from_35_days_ago_is_still_accepted(prepaid):
    [result] = ingest_events(reports=[sms(prepaid, occurred_at=NOW - timedelta(days=35))], now=NOW)

    assert result.status == "accepted"


@pytest.mark.parametrize(
    "report",
    [
        lambda account: chat(account, -3),
        lambda account: sms(account, -1),
        lambda account: chat(account, None),
        lambda account: EventReport(
            id="e1", account=account.public_id, type="fax", occurred_at=NOW
        ),
        lambda account: sms(account, id="x" * 101),
    ],
    ids=["negative-messages", "negative-sms", "missing-messages", "unknown-type", "long-id"],
)
def test_malformed_events_are_rejected(prepaid, report):
    [result] = rejected(report(prepaid))

    assert result.code == 400


def test_a_batch_of_1001_events_is_refused_and_writes_nothing(make_account):
    account = make_account("llm-api")
    before = everything_written()

    with pytest.raises(UsageError) as raised:
        ingest_events(reports=[tokens(account) for _ in range(MAX_BATCH + 1)], now=NOW)

    assert raised.value.param == "events"
    assert everything_written() == before


def test_a_batch_of_1000_events_is_accepted(make_account):
    account = make_account("llm-api")

    results = ingest_events(reports=[tokens(account) for _ in range(MAX_BATCH)], now=NOW)

    assert {r.status for r in results} == {"accepted"}
    assert UsageEvent.objects.count() == MAX_BATCH
