"""Many OS processes posting to one account at once (SPEC L4).

Each worker is a forked process with its own database connection. PostgreSQL serializes them on
the account row lock (SELECT ... FOR UPDATE); SQLite on its write lock (IMMEDIATE transactions).
Either way no update is lost and a prepaid account is never overdrawn; the final state is
compared with a sequential model.
"""

import multiprocessing
import time
import traceback
from datetime import UTC, datetime

import pytest
from django.db import connections
from django.db.models import Sum

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.ledger.errors import InsufficientCredit
from billing.models import EntryKind, LedgerEntry
from tests.billing.postings import post_entry

USD = 1_000_000
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
PROCESSES = 16
DEBITS_PER_PROCESS = 100
SQLITE_BUSY_TIMEOUT_SECONDS = 120

pytestmark = pytest.mark.slow


def run_in_processes(target, args_per_process):
    """Run `target(*args)` in one forked process per args tuple, all at once; return results."""
    # Forked children must not share the parent's database sockets or file handles.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_together = context.Barrier(len(args_per_process))
    processes = [
        context.Process(target=_child, args=(target, args, index, start_together, results))
        for index, args in enumerate(args_per_process)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    errors = [detail for _, status, detail in outcomes if status == "error"]
    assert errors == [], "\n".join(errors)
    assert [process.exitcode for process in processes] == [0] * len(processes)
    return [value for _, _, value in outcomes]


def _child(target, args, index, start_together, results):
    # Nothing is open after the fork (the parent closed all); never reuse a parent connection.
    connections.close_all()
    try:
        _configure_connection(connections["default"])
        start_together.wait(timeout=60)
        results.put((index, "ok", target(*args)))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))
    finally:
        connections.close_all()


def _configure_connection(database):
    if database.vendor == "sqlite":
        # SQLite's busy handler is not fair: with 16 writers hammering one file, a process can
        # keep losing the write lock for longer than the embedded default's 20 s timeout. This
        # test checks correctness under contention, so a starved writer may wait longer.
        database.settings_dict["OPTIONS"]["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
    else:
        # Each posting commits while holding the account lock; not waiting for the WAL flush
        # keeps 1,600 serialized commits quick. Locking and visibility are unchanged.
        with database.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")


def debit_one_usd_repeatedly(account_id, worker):
    account = Account.objects.get(pk=account_id)
    succeeded = refused = 0
    for n in range(DEBITS_PER_PROCESS):
        try:
            post_entry(
                account=account,
                amount_micros=-1 * USD,
                kind=EntryKind.USAGE,
                now=NOW,
                idempotency_key=f"race:{worker}:{n}",
            )
            succeeded += 1
        except InsufficientCredit:
            refused += 1
    return succeeded, refused


def mixed_amounts(worker):
    """Return one process's fixed postings: a top-up, then two debits, twenty times over.

    Every list starts with a top-up and the debits grow until they outweigh the top-ups, so the
    postpaid balance goes from credit into debt: top-ups both create grants and repay debt.
    """
    amounts = []
    for n in range(60):
        if n % 3 == 0:
            amounts.append((5 + worker) * USD + n)
        else:
            amounts.append(-(worker + n + 1) * 250_001)
    return amounts


def post_known_amounts(account_id, amounts_micros, worker):
    account = Account.objects.get(pk=account_id)
    for n, amount in enumerate(amounts_micros):
        post_entry(
            account=account,
            amount_micros=amount,
            kind=EntryKind.TOPUP if amount > 0 else EntryKind.USAGE,
            now=NOW,
            idempotency_key=f"mixed:{worker}:{n}",
        )
    return len(amounts_micros)


def test_sixteen_processes_spend_a_prepaid_balance_exactly_once_and_never_overdraw(
    transactional_db, make_ledger_account
):
    account = make_ledger_account("prepaid")
    post_entry(account=account, amount_micros=1_000 * USD, kind=EntryKind.TOPUP, now=NOW)
    started = time.monotonic()

    results = run_in_processes(
        debit_one_usd_repeatedly, [(account.pk, worker) for worker in range(PROCESSES)]
    )

    elapsed = time.monotonic() - started
    succeeded = sum(s for s, _ in results)
    refused = sum(r for _, r in results)
    assert (succeeded, refused) == (1_000, 600)
    account.refresh_from_db()
    assert account.balance_micros == 0
    usage = LedgerEntry.objects.filter(account=account, kind=EntryKind.USAGE)
    assert usage.count() == 1_000
    assert not LedgerEntry.objects.filter(account=account, balance_after_micros__lt=0).exists()
    # No lost update: each debit saw the balance the previous one left, so every balance from
    # 999 USD down to 0 appears exactly once.
    assert sorted(usage.values_list("balance_after_micros", flat=True)) == [
        n * USD for n in range(1_000)
    ]
    assert ledger_drift() == []
    print(
        f"\n{connections['default'].vendor}: 1,600 debits from {PROCESSES} processes in "
        f"{elapsed:.1f} s"
    )


def test_concurrent_top_ups_and_debits_end_where_a_sequential_model_ends(
    transactional_db, make_ledger_account
):
    account = make_ledger_account("postpaid")
    # Each process posts its own fixed list; on a postpaid account none of them can be refused.
    plans = [mixed_amounts(worker) for worker in range(8)]
    started = time.monotonic()

    posted = run_in_processes(
        post_known_amounts, [(account.pk, amounts, worker) for worker, amounts in enumerate(plans)]
    )

    elapsed = time.monotonic() - started
    expected_balance = sum(sum(amounts) for amounts in plans)
    expected_entries = sum(len(amounts) for amounts in plans)
    assert sum(posted) == expected_entries
    account.refresh_from_db()
    assert account.balance_micros == expected_balance
    entries = LedgerEntry.objects.filter(account=account).order_by("pk")
    assert entries.count() == expected_entries
    assert entries.aggregate(total=Sum("amount_micros"))["total"] == expected_balance
    # Entries are inserted under the lock, so in key order each balance is the running sum.
    running = 0
    balances = []
    for amount, balance_after in entries.values_list("amount_micros", "balance_after_micros"):
        running += amount
        balances.append(balance_after)
        assert balance_after == running
    assert min(balances) < 0 < max(balances)
    for worker, amounts in enumerate(plans):
        stored = entries.filter(idempotency_key__startswith=f"mixed:{worker}:")
        assert sorted(stored.values_list("amount_micros", flat=True)) == sorted(amounts)
    assert ledger_drift() == []
    print(
        f"\n{connections['default'].vendor}: {expected_entries} mixed postings from "
        f"{len(plans)} processes in {elapsed:.1f} s"
    )
