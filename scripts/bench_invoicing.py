"""Benchmark of invoicing at scale. Prints its figures.

    uv run python scripts/bench_invoicing.py [--accounts 100000]

Builds a fresh PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/meterline_bench_invoicing) holding N accounts on the six
example plans, each with a month of charged usage (ledger entries, credit grants, unbilled
lines, allowances), written with COPY. Then measures, in this process, as the worker would run
them:
- the threshold sweep: the query that finds the postpaid accounts over their threshold, and
  the whole job that invoices them (1% of the postpaid accounts are over it);
- period close of every account at the period end: invoices, statements, allowance resets,
  included credit grants;
- the worker's peak memory (max RSS), and `check_ledger` afterwards.
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchdb import copy_rows, prepare_database, reset_sequences, setup_django  # noqa: E402

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterline_bench_invoicing"
)
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
USD = 1_000_000
# Share of accounts per plan.
MIX = [
    ("voice-prepaid", 0.35),
    ("voice-payg", 0.30),
    ("voice-enterprise", 0.10),
    ("credits-monthly", 0.10),
    ("llm-api", 0.10),
    ("flex-router", 0.05),
]


def generate(accounts: int) -> dict:
    """Write N accounts with a month of usage; every balance agrees with its ledger."""
    from django.db import connection

    from billing.models import Plan
    from billing.plans.example_plans import load_example_plans

    load_example_plans()
    plans = {p.code: p for p in Plan.objects.all()}
    created = PERIOD_START - timedelta(days=1)
    used = PERIOD_START + timedelta(days=20)
    rows = {
        "accounts": [],
        "subs": [],
        "entries": [],
        "grants": [],
        "unbilled": [],
        "allowances": [],
    }
    boundaries = []
    acc = 0.0
    for code, share in MIX:
        acc += share
        boundaries.append((acc, code))
    over_threshold = 0
    for n in range(1, accounts + 1):
        code = next(c for b, c in boundaries if (n / accounts) <= b + 1e-12)
        plan = plans[code]
        prepaid = plan.billing_mode == "prepaid"
        usage = 3 * USD + (n % 97) * 10_000  # 3.00 to 3.96 USD of usage
        if code == "voice-payg" and n % 100 == 0:
            usage = 250 * USD  # over the 200 USD threshold
            over_threshold += 1
        entries, grants = rows["entries"], rows["grants"]
        grant_id = len(grants) + 1
        if prepaid:
            credit = 50 * USD
            kind = "allowance" if code == "credits-monthly" else "topup"
            expires = PERIOD_END if code == "credits-monthly" else None
            grants.append((grant_id, n, kind, credit, credit - usage, 0, expires, created, None))
            entries.append((n, kind, credit, credit, created, grant_id, "Credit"))
            entries.append((n, "usage", -usage, credit - usage, used, None, "Usage"))
            balance = credit - usage
            unbilled = usage
        else:
            entries.append((n, "usage", -usage, -usage, used, None, "Usage"))
            balance = -usage
            unbilled = usage
        rows["accounts"].append(
            (
                n,
                f"acc_bench{n:08d}",
                f"Bench {n}",
                f"bench{n}@example.test",
                "",
                None,
                "prepaid" if prepaid else "postpaid",
                balance,
                0,
                unbilled,
                None,
                "",
                created,
                "{}",
            )
        )
        rows["subs"].append(
            (
                n,
                n,
                plan.pk,
                1,
                PERIOD_START,
                PERIOD_END,
                code == "voice-enterprise",
                None,
                None,
                created,
                False,
                "",
            )
        )
        first = usage * 2 // 5
        rows["unbilled"].append((n, "llm", "", "gpt-4o", 10, 1200, first, 0))
        rows["unbilled"].append((n, "voice_engine", "", "", 10, 1200, usage - first, 0))
        if plan.included_minutes:
            rows["allowances"].append(
                (n, PERIOD_START, PERIOD_END, plan.included_minutes * 60, 0, 1200)
            )
    with connection.cursor() as cursor:
        cur = cursor.cursor
        copy_rows(
            cur,
            "accounts_account",
            [
                "id",
                "public_id",
                "name",
                "email",
                "extra_billing_emails",
                "parent_id",
                "billing_mode",
                "balance_micros",
                "held_micros",
                "unbilled_micros",
                "past_due_since",
                "stripe_customer_id",
                "created_at",
                "metadata",
            ],
            rows["accounts"],
        )
        copy_rows(
            cur,
            "billing_subscription",
            [
                "id",
                "account_id",
                "plan_id",
                "anchor_day",
                "current_period_start",
                "current_period_end",
                "rollover_enabled",
                "pending_plan_id",
                "last_closed_at",
                "created_at",
                "allowance_locked",
                "allowance_unlock_reason",
            ],
            rows["subs"],
        )
        copy_rows(
            cur,
            "billing_creditgrant",
            [
                "id",
                "account_id",
                "kind",
                "amount_micros",
                "remaining_micros",
                "priority",
                "expires_at",
                "created_at",
                "expired_at",
            ],
            rows["grants"],
        )
        copy_rows(
            cur,
            "billing_ledgerentry",
            [
                "account_id",
                "kind",
                "amount_micros",
                "balance_after_micros",
                "created_at",
                "grant_id",
                "description",
                "cause_id",
                "reason",
            ],
            ((*e, "", "") for e in rows["entries"]),
        )
        copy_rows(
            cur,
            "billing_unbilledline",
            [
                "account_id",
                "component",
                "provider",
                "model",
                "items",
                "quantity",
                "amount_micros",
                "savings_micros",
            ],
            rows["unbilled"],
        )
        copy_rows(
            cur,
            "usage_allowance",
            [
                "account_id",
                "period_start",
                "period_end",
                "included_seconds",
                "rollover_seconds",
                "used_seconds",
            ],
            rows["allowances"],
        )
        reset_sequences(cur, ["accounts_account", "billing_subscription", "billing_creditgrant"])
        cursor.execute("ANALYZE")
    return {
        "accounts": accounts,
        "over_threshold": over_threshold,
        **{k: len(v) for k, v in rows.items()},
    }


def backend_cpu_seconds(connection) -> float | None:
    """CPU time used so far by this connection's PostgreSQL backend, if it runs on this host."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=None, help="accounts per close transaction")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.generate_only:
        setup_django(BENCH_DB)
        started = time.perf_counter()
        counts = generate(options.accounts)
        print(f"  generated {counts} in {time.perf_counter() - started:.1f} s (COPY)")
        return
    print(
        f"Meterline invoicing benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, PostgreSQL, load average {os.getloadavg()[0]:.1f}"
    )
    prepare_database(BENCH_DB)
    # In a child process, so that the peak memory measured below is the worker's own.
    subprocess.run(
        [sys.executable, __file__, "--generate-only", "--accounts", str(options.accounts)],
        check=True,
    )
    setup_django(BENCH_DB)

    from django.db import connection, reset_queries

    from billing.invoicing.invoices import accounts_over_threshold, invoice_thresholds
    from billing.invoicing.period_close import CHUNK, close_periods
    from billing.ledger.drift import ledger_drift
    from billing.models import Invoice, InvoiceLine

    now = PERIOD_START + timedelta(days=25)
    started = time.perf_counter()
    due = accounts_over_threshold()
    sweep_query = time.perf_counter() - started
    started = time.perf_counter()
    invoices = invoice_thresholds(now=now)
    sweep_job = time.perf_counter() - started
    print("\nThreshold sweep (target < 1 s over 100,000 accounts)")
    print(
        f"  finding due accounts: {sweep_query * 1000:.0f} ms "
        f"({len(due)} of {options.accounts} over the threshold)"
    )
    print(f"  whole job, invoicing them: {sweep_job:.2f} s ({len(invoices)} invoices)")

    reset_queries()
    close_at = PERIOD_END + timedelta(minutes=30)
    chunk = options.chunk or CHUNK
    queries = 0

    def count_queries(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    backend_started = backend_cpu_seconds(connection)
    started = time.perf_counter()
    cpu_started = time.process_time()
    with connection.execute_wrapper(count_queries):
        closed = close_periods(now=close_at, chunk=chunk)
    close_time = time.perf_counter() - started
    close_cpu = time.process_time() - cpu_started
    backend_cpu = backend_cpu_seconds(connection)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    documents = Invoice.objects.filter(reason="period")
    print("\nPeriod close (target < 60 s for 100,000 accounts, worker < 300 MB)")
    print(f"  closed {closed} periods in {close_time:.1f} s ({closed / close_time:.0f} accounts/s)")
    chunks = -(-closed // chunk)
    print(
        f"  {chunk} accounts per chunk: {queries} queries in {chunks} chunks "
        f"({queries / chunks:.0f} per chunk, COPY not counted)"
    )
    if backend_started is not None and backend_cpu is not None:
        print(
            f"  CPU used: worker {close_cpu:.1f} s, PostgreSQL backend "
            f"{backend_cpu - backend_started:.1f} s (load average now {os.getloadavg()[0]:.1f})"
        )
    print(
        f"  wrote {documents.filter(kind='invoice').count()} invoices, "
        f"{documents.filter(kind='statement').count()} statements, "
        f"{InvoiceLine.objects.count()} lines"
    )
    print(f"  worker peak memory (max RSS): {peak_mb:.0f} MB")
    started = time.perf_counter()
    drift = ledger_drift()
    print(f"\ncheck_ledger: {len(drift)} accounts drift ({time.perf_counter() - started:.1f} s)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        print(f"database size: {cursor.fetchone()[0] / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
