"""The rules every report passes before it is rated: its moments, its fingerprint, and the
moment a call is counted at (usage.ingest.validation, .fingerprints, .calls.call_moment)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import NOW
from usage.ingest.calls import call_moment
from usage.ingest.fingerprints import call_hash
from usage.ingest.validation import moment_problem
from usage.reports import CallReport

CONNECTED = datetime(2026, 3, 15, 11, 58, 37, tzinfo=UTC)
ENDED = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


# Reported moments (U10) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        NOW,
        NOW + timedelta(minutes=5),  # clocks may disagree by five minutes
        NOW - timedelta(days=35),  # 35 days late is still billed
    ],
)
def test_a_moment_within_the_window_can_be_billed(moment):
    assert moment_problem(name="ended_at", moment=moment, now=NOW) is None


@pytest.mark.parametrize(
    ("moment", "problem"),
    [
        (NOW.replace(tzinfo=None), "ended_at needs a time zone"),
        (NOW + timedelta(minutes=5, seconds=1), "ended_at is in the future"),
        (
            NOW - timedelta(days=35, seconds=1),
            "ended_at is more than 35 days ago; too late to bill",
        ),
    ],
)
def test_a_moment_outside_the_window_says_why(moment, problem):
    assert moment_problem(name="ended_at", moment=moment, now=NOW) == problem


# A final call's fingerprint -----------------------------------------------------------------------


def call_report(**changes) -> CallReport:
    fields = {
        "call_id": "c-1",
        "account": "acc_1",
        "status": "completed",
        "connected_at": CONNECTED,
        "ended_at": ENDED,
        "hold_seconds": Decimal("12.50"),
        "destination": "+442071234567",
        "llm": "gpt-4o",
    }
    return CallReport(**{**fields, **changes})


def test_a_stored_call_fingerprint_is_unchanged():
    # Stored in Call.final_hash and compared with later reports: it must never change.
    assert call_hash(call_report()) == (
        "d4f83b76c9bf4adecf85349ce1db959b6888d09683f5ce317fbafc83db15fe1d"
    )


def test_the_call_id_the_hold_and_how_a_number_is_written_are_not_part_of_it():
    assert call_hash(
        call_report(call_id="c-2", reservation_id="res_1", hold_seconds=Decimal("12.5"))
    ) == call_hash(call_report())


@pytest.mark.parametrize(
    "change",
    [
        {"status": "failed"},
        {"ended_at": ENDED + timedelta(seconds=1)},
        {"transferred_at": ENDED},
        {"direction": "outbound"},
        {"llm": "gpt-4o-mini"},
    ],
)
def test_a_different_report_has_another_fingerprint(change):
    assert call_hash(call_report(**change)) != call_hash(call_report())


# The moment a call is counted at ------------------------------------------------------------------


def test_a_call_is_counted_when_it_connected_else_when_it_ended_else_when_it_was_charged():
    assert call_moment(connected_at=CONNECTED, ended_at=ENDED, charged_at=NOW) == CONNECTED
    assert call_moment(connected_at=None, ended_at=ENDED, charged_at=NOW) == ENDED
    assert call_moment(connected_at=None, ended_at=None, charged_at=NOW) == NOW
