"""Crediting back a call the platform got wrong (seed 000 "Refunds"; SPEC P4, U11)."""

from datetime import timedelta

import pytest

from billing.models import EntryKind
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    call,
    entries,
    everything_written,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.calls import refund_call, report_call
from usage.models import Call, UsageRollup
from usage.reports import NotFound, UsageError

LATER = NOW + timedelta(hours=2)


@pytest.fixture
def prepaid(make_account):
    return make_account("voice-prepaid", credit_micros=20 * USD)


def test_refund_call_credits_back_the_charged_amount(prepaid):
    charged, _ = report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)

    refunded = refund_call(call_id="c1", now=LATER, reason="Agent crashed")

    assert balance(prepaid) == 20 * USD
    [refund] = entries(prepaid, EntryKind.REFUND)
    assert refund.amount_micros == 110_667
    assert refund.cause == charged
    assert refund.reason == "Agent crashed"
    assert (refunded.refunded_micros, refunded.refunded_at) == (110_667, LATER)
    assert refunded.cost_micros == 110_667  # the rating itself is kept


def test_refunding_a_call_twice_credits_it_back_once(prepaid):
    report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)
    first = refund_call(call_id="c1", now=LATER)
    before = everything_written()

    second = refund_call(call_id="c1", now=LATER + timedelta(minutes=1))

    assert (second.pk, second.refunded_micros, second.refunded_at) == (first.pk, 110_667, LATER)
    assert len(entries(prepaid, EntryKind.REFUND)) == 1
    assert everything_written() == before


def test_a_refund_shows_in_the_rollups(prepaid):
    report_call(report=call(prepaid, 83, call_id="c1"), now=NOW)

    refund_call(call_id="c1", now=LATER)

    row = UsageRollup.objects.get(account=prepaid, is_line=False, component="call")
    assert (row.items, row.cost_micros, row.refunded_micros) == (1, 110_667, 110_667)


def test_a_partly_collected_call_refunds_only_what_was_charged(make_account):
    account = make_account("voice-prepaid", credit_micros=50_000)
    report_call(report=call(account, 83, call_id="c1"), now=NOW)

    refunded = refund_call(call_id="c1", now=LATER)

    assert refunded.refunded_micros == 50_000
    assert balance(account) == 50_000


def test_a_refunded_postpaid_call_reduces_what_is_owed(make_account):
    account = make_account("voice-payg")
    report_call(report=call(account, 60, call_id="c1", llm="gpt-4o"), now=NOW)

    refund_call(call_id="c1", now=LATER)

    assert balance(account) == 0
    assert Call.objects.get(call_id="c1").refunded_micros == 140_000


def test_a_free_call_has_nothing_to_refund(prepaid):
    report_call(report=call(prepaid, 83, call_id="c1", status="failed"), now=NOW)

    with pytest.raises(UsageError):
        refund_call(call_id="c1", now=LATER)
    assert entries(prepaid, EntryKind.REFUND) == []


def test_a_call_that_is_not_final_cannot_be_refunded(prepaid):
    report_call(report=call(prepaid, call_id="c1", status="in_progress", ended_at=None), now=NOW)

    with pytest.raises(UsageError):
        refund_call(call_id="c1", now=LATER)


def test_refunding_an_unknown_call_is_not_found(prepaid):
    with pytest.raises(NotFound) as raised:
        refund_call(call_id="nope", now=LATER)

    assert raised.value.status == 404
