"""Moving money and reading the emails it causes, for the alert, notification and SMTP tests.

Emails are sent by an on-commit callback (inline in tests: NOTIFICATIONS_SYNC). A `db` test never
commits, so every step that may send is run through `committed`, which executes the callbacks
as a commit would. Test modules import `committed` and `no_ledger_drift` from here.
"""

import itertools
from datetime import datetime, timedelta

import pytest

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import EntryKind, Notification
from billing.money import usd_to_micros
from tests.billing.postings import post_entry
from tests.conftest import NOW
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.reports import CallReport, EventReport

USD = 1_000_000
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def no_ledger_drift(request):
    """After the test, every cached balance equals its ledger and its grants (SPEC L3)."""
    request.getfixturevalue("db")
    yield
    assert ledger_drift() == []


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Call a function and run the on-commit callbacks it queued (the email sends)."""

    def run(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)

    return run


def new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def spend(account: Account, usd: str, *, now: datetime = NOW) -> None:
    """Take an amount from the balance as usage (a ledger debit)."""
    post_entry(account=account, amount_micros=-usd_to_micros(usd), kind=EntryKind.USAGE, now=now)


def top_up(account: Account, usd: str, *, now: datetime = NOW) -> None:
    post_entry(account=account, amount_micros=usd_to_micros(usd), kind=EntryKind.TOPUP, now=now)


def report_minutes(
    account: Account, minutes: int, *, now: datetime = NOW, llm: str = "gpt-4o", call_id=""
):
    """Report one completed call of whole minutes that ended an hour before `now`."""
    ended_at = now - timedelta(hours=1)
    call, _ = report_call(
        report=CallReport(
            call_id=call_id or new_id("call"),
            account=account.public_id,
            status="completed",
            connected_at=ended_at - timedelta(minutes=minutes),
            ended_at=ended_at,
            llm=llm,
        ),
        now=now,
    )
    return call


def report_output_tokens(account: Account, tokens: int, *, now: datetime = NOW):
    """Report one gpt-4o request with only output tokens: 10 USD per million."""
    [result] = ingest_events(
        reports=[
            EventReport(
                id=new_id("llm"),
                account=account.public_id,
                type="llm",
                occurred_at=now - timedelta(minutes=5),
                provider="openai",
                model="gpt-4o",
                input_tokens=0,
                output_tokens=tokens,
            )
        ],
        now=now,
    )
    assert result.status == "accepted", result
    return result


def notices(account: Account, kind: str) -> list[Notification]:
    return list(Notification.objects.filter(account=account, kind=kind).order_by("pk"))
