"""Call reports of one busy account charged together (usage.charging.combining, PostgreSQL).

A leader process takes the account's charge turn and, before it reads the pending reports,
waits until the other processes have left theirs: so the tests know the reports were charged
together, and in which order they arrived.
"""

import multiprocessing
import threading
import time

import pytest
from django.db import connection, connections

from billing.models import EntryKind, LedgerEntry
from tests.conftest import NOW
from tests.reliability.crashes import KillPoint, run_until_killed
from tests.usage.metering import (
    USD,
    balance,
    call,
    concurrent,
    entries,
    in_processes,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.charging.combining import LOCK_NAMESPACE
from usage.ingest.calls import report_call
from usage.models import Call, PendingCharge

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="advisory locks: PostgreSQL only"
)
WAITERS = 8


def _report_in_child(report):
    result, changed = report_call(report=report, now=NOW)
    return (result.call_id, changed, result.billable_seconds, result.cost_micros)


def _answer(c: Call) -> tuple:
    return (c.billable_seconds, c.cost_micros, c.charged_micros, c.uncollected_micros)


def _hold_until_pending(count: int, go) -> None:
    """In the leader: take the turn, then wait for `count` pending reports and for `go` (the
    test has read their order) before the statement that takes the turn and reads them."""

    def wait(execute, sql, params, many, context):
        if "pg_try_advisory_xact_lock" in sql:
            connection.execute_wrappers.remove(wait)
            with connection.cursor() as cursor:
                # Held by this transaction, the statement's try takes it again.
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", params[:2])
            deadline = time.monotonic() + 60
            while PendingCharge.objects.filter(outcome=0).count() < count:
                assert time.monotonic() < deadline, "the waiters never left their reports"
                time.sleep(0.02)
            go.wait(60)
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(wait)


def _turn_taken(account_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = %s AND objid = %s AND granted)",
            [LOCK_NAMESPACE, account_id],
        )
        return cursor.fetchone()[0]


def _run_with_waiters(account, leader_report, reports, *, kill: bool):
    """Start the leader (killed at its commit if `kill`), then the waiters; return the
    waiters' outcomes and the call ids in the order the leader found them pending."""
    go = multiprocessing.get_context("fork").Event()
    order: list[str] = []

    def leader():
        _hold_until_pending(len(reports), go)
        report_call(report=leader_report, now=NOW)

    connections.close_all()
    if kill:
        thread = threading.Thread(
            target=run_until_killed, args=(leader, KillPoint("before_commit", "usage_call"))
        )
    else:
        thread = threading.Thread(target=lambda: in_processes(leader, [()]))
    thread.start()
    deadline = time.monotonic() + 60
    while not _turn_taken(account.pk):
        assert time.monotonic() < deadline, "the leader never took the turn"
        time.sleep(0.02)

    def read_order():
        while PendingCharge.objects.filter(outcome=0).count() < len(reports):
            time.sleep(0.02)
        order.extend(
            r["report"]["call_id"]
            for r in PendingCharge.objects.order_by("pk").values_list("report", flat=True)
        )
        connections.close_all()
        go.set()

    reader = threading.Thread(target=read_order)
    reader.start()
    outcomes = in_processes(_report_in_child, [(r,) for r in reports])
    reader.join()
    thread.join()
    return outcomes, order


@concurrent
def test_reports_charged_together_answer_as_one_by_one_in_arrival_order_with_the_floor(
    transactional_db, make_account
):
    # 0.08 USD a minute: the credit pays five of the nine calls and part of a sixth.
    account = make_account("voice-prepaid", credit_micros=500_000)
    reports = [call(account, 60 + n) for n in range(WAITERS)]
    leader = call(account, 90)

    outcomes, order = _run_with_waiters(account, leader, reports, kill=False)

    assert all(o[0] == "ok" and o[1][1] for o in outcomes), outcomes
    # All in one transaction: one commit for every ledger entry.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT xmin::text) FROM billing_ledgerentry WHERE account_id = %s "
            "AND kind = %s",
            [account.pk, EntryKind.USAGE],
        )
        assert cursor.fetchone()[0] == 1
    charged = {c.call_id: c for c in Call.objects.filter(account=account)}
    together = [_answer(charged[call_id]) for call_id in [*order, leader.call_id]]
    # Each waiter's own answer is its own call's.
    assert sorted(o[1] for o in outcomes) == sorted(
        (r.call_id, True, charged[r.call_id].billable_seconds, charged[r.call_id].cost_micros)
        for r in reports
    )
    # The same reports one by one, in the order they arrived, on a fresh account.
    fresh = make_account("voice-prepaid", credit_micros=500_000)
    by_id = {r.call_id: r for r in [*reports, leader]}
    one_by_one = []
    for call_id in [*order, leader.call_id]:
        report = by_id[call_id]
        result, _ = report_call(report=call(fresh, 0, **_fields(report)), now=NOW)
        one_by_one.append(_answer(result))
    assert together == one_by_one
    assert any(a[3] for a in together) and together[0][3] == 0  # the floor was reached, late
    assert balance(account) == balance(fresh) == 0
    assert len(entries(account, EntryKind.USAGE)) == len(entries(fresh, EntryKind.USAGE))
    assert not PendingCharge.objects.exists()


def _fields(report) -> dict:
    return {
        "connected_at": report.connected_at,
        "ended_at": report.ended_at,
        "call_id": report.call_id + "-fresh",
    }


@concurrent
def test_a_killed_leader_is_replaced_and_nothing_is_charged_twice_or_lost(
    transactional_db, make_account
):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    reports = [call(account, 60) for _ in range(WAITERS)]
    leader = call(account, 60)

    started = time.monotonic()
    outcomes, order = _run_with_waiters(account, leader, reports, kill=True)

    assert time.monotonic() - started < 60
    assert sorted(order) == sorted(r.call_id for r in reports)
    assert all(o[0] == "ok" and o[1][1] for o in outcomes), outcomes
    # The killed leader's own report died with its request; every waiter's is charged once.
    assert not Call.objects.filter(call_id=leader.call_id).exists()
    assert Call.objects.filter(account=account).count() == WAITERS
    usage = entries(account, EntryKind.USAGE)
    assert [e.amount_micros for e in usage] == [-80_000] * WAITERS
    assert balance(account) == 20 * USD - WAITERS * 80_000
    assert not PendingCharge.objects.exists()


@concurrent
def test_32_processes_on_one_account_keep_the_balance_exact(transactional_db, make_account):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    reports = [call(account, 60) for _ in range(32)]

    outcomes = in_processes(_report_in_child, [(r,) for r in reports])

    assert all(o[0] == "ok" and o[1][1:] == (True, 60, 80_000) for o in outcomes), outcomes
    assert balance(account) == 20 * USD - 32 * 80_000
    assert LedgerEntry.objects.filter(account=account, kind=EntryKind.USAGE).count() == 32
    assert not PendingCharge.objects.exists()
