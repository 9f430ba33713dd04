"""Helpers for the metering and rating tests: reports built relative to NOW, what the
database holds as plain data, and running one function in several OS processes at once.

Test modules import `no_ledger_drift` so that every test ends with the ledger invariant checked.
"""

import itertools
import multiprocessing
import traceback
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connections
from django.db.models import Sum

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import Allowance, CreditGrant, LedgerEntry
from tests.conftest import NOW
from usage.models import Call, Reservation, UsageCarry, UsageEvent, UsageRollup
from usage.reads.keys import load_key
from usage.reports import CallReport, EventReport

USD = 1_000_000
CONNECTED_AT = NOW - timedelta(hours=1)
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def no_ledger_drift(request):
    """After the test, every cached balance equals its ledger and its grants (SPEC L3)."""
    # Requested here, not in the signature, so the database is torn down after this check.
    request.getfixturevalue("db")
    yield
    assert ledger_drift() == []


@pytest.fixture
def held_account(make_account, make_key):
    """A prepaid account with credit held by an authorized call that never reported."""
    from usage.spending.authorize import authorize

    account = make_account("voice-prepaid", credit_micros=20 * USD)
    authorize(
        key=load_key(make_key(account).api_key.key_id),
        feature="call",
        model="",
        provider="",
        start_within="",
        call_id="never-reported",
        now=NOW,
    )
    assert held(account) > 0
    return account


def new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def duration(seconds) -> timedelta:
    """A timedelta from seconds given as int, str or Decimal ('83.001'), never a float."""
    return timedelta(milliseconds=int(Decimal(str(seconds)) * 1000))


def call(account: Account, seconds=60, *, call_id: str = "", **fields) -> CallReport:
    """A completed call of `seconds` (connect to end), connected an hour before NOW."""
    connected_at = fields.pop("connected_at", CONNECTED_AT)
    fields.setdefault("status", "completed")
    if "ended_at" not in fields:
        fields["ended_at"] = connected_at + duration(seconds) if connected_at else None
    return CallReport(
        call_id=call_id or new_id("call"),
        account=account.public_id,
        connected_at=connected_at,
        **fields,
    )


def event(account: Account, type: str, **fields) -> EventReport:
    fields.setdefault("occurred_at", CONNECTED_AT)
    return EventReport(
        id=fields.pop("id", None) or new_id(type), account=account.public_id, type=type, **fields
    )


def chat(account: Account, messages: int, **fields) -> EventReport:
    return event(account, "chat", messages=messages, **fields)


def sms(account: Account, count: int = 1, **fields) -> EventReport:
    return event(account, "sms", count=count, **fields)


def tokens(account: Account, model="gpt-4o", input_tokens=1000, output_tokens=0, **fields):
    fields.setdefault("provider", "openai")
    return event(
        account,
        "llm",
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        **fields,
    )


def embedding(account: Account, model="text-embedding-3-small", input_tokens=1000, **fields):
    return event(account, "embedding", model=model, input_tokens=input_tokens, **fields)


def flex(account: Account, standard="0.1530", flex_price="0.0810", **fields) -> EventReport:
    fields.setdefault("provider", "openai")
    fields.setdefault("model", "gpt-4o")
    fields.setdefault("start_within", "00h-00m-30s")
    return event(
        account,
        "llm",
        standard_price=None if standard is None else Decimal(standard),
        flex_price=None if flex_price is None else Decimal(flex_price),
        **fields,
    )


def balance(account: Account) -> int:
    return Account.objects.values_list("balance_micros", flat=True).get(pk=account.pk)


def held(account: Account) -> int:
    return Account.objects.values_list("held_micros", flat=True).get(pk=account.pk)


def entries(account: Account, kind: str | None = None) -> list[LedgerEntry]:
    rows = LedgerEntry.objects.filter(account=account).order_by("pk")
    return list(rows.filter(kind=kind) if kind else rows)


def carries(account: Account) -> dict[tuple[str, str], int]:
    return {(c.component, c.key): c.units for c in UsageCarry.objects.filter(account=account)}


def everything_written() -> dict:
    """Every row usage rating can write, as comparable data: proof that nothing was written."""
    return {
        "accounts": list(
            Account.objects.order_by("pk").values_list("pk", "balance_micros", "held_micros")
        ),
        "entries": LedgerEntry.objects.count(),
        "grants": list(CreditGrant.objects.order_by("pk").values_list("pk", "remaining_micros")),
        "calls": list(Call.objects.order_by("pk").values_list("call_id", "status", "cost_micros")),
        "events": UsageEvent.objects.count(),
        "carries": list(UsageCarry.objects.order_by("pk").values_list("pk", "units")),
        "allowances": list(Allowance.objects.order_by("pk").values_list("pk", "used_seconds")),
        "reservations": list(Reservation.objects.order_by("pk").values_list("pk", "status")),
        "rollups": list(
            UsageRollup.objects.order_by("pk").values_list("pk", "items", "cost_micros")
        ),
    }


def rollup_costs(account: Account) -> tuple[int, int]:
    """Return the cost sums of the item rollups and of the line rollups."""
    rows = UsageRollup.objects.filter(account=account)

    def total(is_line):
        return rows.filter(is_line=is_line).aggregate(t=Sum("cost_micros"))["t"] or 0

    return total(False), total(True)


def item_costs(account: Account) -> int:
    calls = Call.objects.filter(account=account).aggregate(t=Sum("cost_micros"))["t"] or 0
    events = UsageEvent.objects.filter(account=account).aggregate(t=Sum("cost_micros"))["t"] or 0
    return calls + events


# Several OS processes at the same moment ------------------------------------------------------

# Concurrency tests commit for real, so the database is flushed after each of them; leaving
# dj-stripe's ~60 tables (empty here) out of the flush makes that several times quicker.
concurrent = pytest.mark.django_db(
    transaction=True, available_apps=[app for app in settings.INSTALLED_APPS if app != "djstripe"]
)


def _child(target, args, barrier, results, index):
    # The forked child must not share the parent's database socket: open its own.
    connections.close_all()
    try:
        barrier.wait(timeout=60)
        outcome = ("ok", target(*args))
    except Exception as exc:  # sent back to the test, which asserts on it
        outcome = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    finally:
        connections.close_all()
    results.put((index, outcome))


def in_processes(target, args_list: list[tuple], timeout: float = 120) -> list[tuple]:
    """Run `target(*args)` in one forked process per args, released together by a barrier.

    Return each process's outcome in order: ("ok", value) or ("error", message, traceback).
    Needs `transactional_db`: the children see only what the parent committed.
    """
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(args_list))
    results = context.Queue()
    # Forked children would otherwise inherit, and then close, the parent's open connection.
    connections.close_all()
    processes = [
        context.Process(target=_child, args=(target, args, barrier, results, index))
        for index, args in enumerate(args_list)
    ]
    try:
        for process in processes:
            process.start()
        outcomes = dict(results.get(timeout=timeout) for _ in processes)
        for process in processes:
            process.join(timeout=timeout)
            assert process.exitcode == 0, f"child exited with {process.exitcode}"
    finally:
        # A child stuck on a lock must not outlive the test that started it.
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    return [outcomes[index] for index in range(len(args_list))]
