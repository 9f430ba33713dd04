"""Scale run: millions of rated usage items on PostgreSQL, then what they cost to serve.

    uv run python scripts/scale_run.py [--items 10000000] [--accounts 100000] [--keep]

Builds its own database (SCALE_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/meterline_scale; its name must contain "scale"), dropped and
recreated, never the default one. Refuses to start with less than 15 GB free on this disk
(the full run takes about that while it runs). Then, in this process, with production settings
(DEBUG off, no query logging):

1. generates the items with scripts/usage_generator.py: calls and chat, SMS, LLM, embedding and
   flex events over the six example plans, rated by the real rating functions, with their
   ledger entries, top-ups, rollups and unbilled lines, written with COPY (items/s);
2. checks them: `check_ledger`'s drift query, and rollup totals against item totals;
3. measures the real ingestion path for comparison: POST /api/v1/events through Django's test
   client (in process, one client), 1,000 events a request, on accounts of the generated data;
4. measures the dashboard: overview and usage pages, as a logged-in owner, for a sample of
   accounts that includes the largest (p50, p95, max);
5. runs the threshold sweep and period close over every account with `billing.invoicing.invoices`'s
   job functions (`invoice_thresholds`, `close_periods`), as the worker would;
6. prints the size of the usage, ledger and rollup tables per item and of the whole database.

The database is dropped at the end unless --keep is given (the disk is shared).
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchdb import (  # noqa: E402
    close_periods,
    database_name,
    drop_database,
    prepare_database,
    setup_django,
)

SCALE_DB = os.environ.get(
    "SCALE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterline_scale"
)
MIN_FREE_GB = 15
# Tables that hold the items and what charging them wrote, for the size per item.
ITEM_TABLES = [
    "usage_call",
    "usage_usageevent",
    "billing_ledgerentry",
    "usage_usagerollup",
    "billing_unbilledline",
    "billing_creditgrant",
    "billing_topup",
    "usage_usagecarry",
    "usage_allowance",
    "accounts_account",
    "billing_subscription",
]
PAGES = [("overview", ""), ("usage", "usage/")]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * share + 0.5) - 1, 0)]


def check_consistency() -> None:
    from django.db import connection

    from billing.ledger.drift import ledger_drift

    started = time.perf_counter()
    drift = ledger_drift()
    print(f"  check_ledger: {len(drift)} account(s) drift ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COALESCE(SUM(cost_micros), 0) FROM usage_call)"
            " + (SELECT COALESCE(SUM(cost_micros), 0) FROM usage_usageevent),"
            " (SELECT COALESCE(SUM(cost_micros), 0) FROM usage_usagerollup WHERE NOT is_line),"
            " (SELECT COALESCE(SUM(cost_micros), 0) FROM usage_usagerollup WHERE is_line),"
            " (SELECT COALESCE(SUM(amount_micros), 0) FROM billing_unbilledline),"
            " (SELECT COALESCE(SUM(unbilled_micros), 0) FROM accounts_account)"
        )
        items, rollup_items, rollup_lines, unbilled, cached = map(int, cursor.fetchone())
    agree = items == rollup_items == rollup_lines == unbilled == cached
    print(
        f"  items cost {items / 1e6:,.2f} USD; rollups (items, lines), unbilled lines and cached "
        f"unbilled {'all agree' if agree else 'DISAGREE'} ({time.perf_counter() - started:.1f} s)"
    )
    if drift or not agree:
        raise SystemExit("The generated data is inconsistent.")


def measure_api(*, generated, events: int, now) -> None:
    from django.test import Client

    from accounts.keys import issue_api_key
    from accounts.models import Account, KeyKind

    token = issue_api_key(kind=KeyKind.PLATFORM, name="scale run", now=now).token
    rng = random.Random(3)
    targets = [pk for pk in generated.account_ids if generated.plan_of[pk] in EVENT_PLANS]
    rng.shuffle(targets)
    targets = targets[:200]
    public = dict(Account.objects.filter(pk__in=targets).values_list("pk", "public_id"))
    client = Client()
    per_request, per_account = 1000, 50
    requests = max(events // per_request, 1)
    timings, accepted, number = [], 0, 0
    occurred = (now - timedelta(minutes=5)).isoformat()
    for request in range(requests):
        batch = []
        for slot in range(per_request // per_account):
            pk = targets[(request * 20 + slot) % len(targets)]
            for _ in range(per_account):
                number += 1
                batch.append(
                    {
                        "id": f"api-{number}",
                        "account": public[pk],
                        "occurred_at": occurred,
                        **EVENT_PLANS[generated.plan_of[pk]],
                    }
                )
        body = json.dumps({"events": batch})
        started = time.perf_counter()
        response = client.post(
            "/api/v1/events",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"events answered {response.status_code}: {response.content[:300]}")
        accepted += sum(r["status"] == "accepted" for r in response.json()["results"])
    total = sum(timings)
    print(
        f"\nReal ingestion path: POST /api/v1/events, Django test client in this process, "
        f"{per_request} events a request over {per_request // per_account} accounts"
    )
    print(
        f"  {accepted:,} of {requests * per_request:,} events accepted in {total:.1f} s: "
        f"{accepted / total:,.0f} events/s (request p50 {statistics.median(timings) * 1000:.0f} "
        f"ms, p95 {percentile(timings, 0.95) * 1000:.0f} ms)"
    )


# One event per plan whose accounts report events; the real path rates them.
EVENT_PLANS = {
    "llm-api": {
        "type": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1200,
        "output_tokens": 300,
    },
    "voice-payg": {"type": "chat", "messages": 4},
    "flex-router": {
        "type": "llm",
        "provider": "openai",
        "model": "gpt-4o",
        "start_within": "00h-00m-30s",
        "standard_price": "0.1530",
        "flex_price": "0.0810",
        "input_tokens": 2000,
        "output_tokens": 400,
    },
}


def measure_dashboard(*, generated, accounts: int, requests: int, now) -> None:
    from django.test import Client

    from accounts.models import Account, Membership, Role, User

    rng = random.Random(5)
    largest = [pk for pk, _ in generated.largest[:3]]
    others = [pk for pk in generated.account_ids if pk not in largest]
    sample = largest + rng.sample(others, min(accounts - len(largest), len(others)))
    counts = dict(generated.largest)
    timings = {name: [] for name, _ in PAGES}
    biggest = {}
    for pk in sample:
        account = Account.objects.get(pk=pk)
        user = User.objects.create_user(email=f"owner{pk}@scale.test")
        Membership.objects.create(user=user, account=account, role=Role.OWNER, created_at=now)
        client = Client()
        client.force_login(user)
        for name, path in PAGES:
            url = f"/app/a/{account.public_id}/{path}"
            response = client.get(url)  # warm-up
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
            for _ in range(requests):
                started = time.perf_counter()
                client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                timings[name].append(elapsed)
                if pk == largest[0]:
                    biggest.setdefault(name, []).append(elapsed)
    print(
        f"\nDashboard, Django test client, logged-in owner: {len(sample)} accounts (the 3 "
        f"largest and {len(sample) - 3} at random), {requests} requests a page each"
    )
    print(
        f"  {'page':<10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   largest account "
        f"({counts[largest[0]]:,} items): p95, max"
    )
    for name, _ in PAGES:
        values = timings[name]
        print(
            f"  {name:<10} {statistics.median(values):>8.1f} {percentile(values, 0.95):>8.1f} "
            f"{max(values):>8.1f}   {percentile(biggest[name], 0.95):.1f} ms, "
            f"{max(biggest[name]):.1f} ms"
        )


def measure_invoicing(*, generated, now) -> None:
    from billing.invoicing.invoices import accounts_over_threshold, invoice_thresholds
    from billing.models import Invoice, InvoiceLine

    started = time.perf_counter()
    due = accounts_over_threshold()
    query = time.perf_counter() - started
    started = time.perf_counter()
    invoices = invoice_thresholds(now=now)
    sweep = time.perf_counter() - started
    print(
        f"\nInvoice run over {generated.accounts:,} accounts "
        "(billing.invoicing.invoices job functions)"
    )
    print(
        f"  threshold sweep: finding due accounts {query * 1000:.0f} ms ({len(due):,} over the "
        f"threshold); whole job {sweep:.1f} s, {len(invoices):,} invoices"
    )
    close_at = generated.period_end + timedelta(minutes=30)
    started = time.perf_counter()
    closed = close_periods(now=close_at)
    close = time.perf_counter() - started
    documents = Invoice.objects.filter(reason="period")
    print(
        f"  period close: {closed:,} periods in {close:.1f} s ({closed / close:,.0f} accounts/s); "
        f"{documents.filter(kind='invoice').count():,} invoices, "
        f"{documents.filter(kind='statement').count():,} statements, "
        f"{InvoiceLine.objects.count():,} lines"
    )


def print_sizes(items: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        sizes = {}
        for table in ITEM_TABLES:
            cursor.execute("SELECT pg_total_relation_size(%s), pg_relation_size(%s)", [table] * 2)
            sizes[table] = cursor.fetchone()
        cursor.execute("SELECT pg_database_size(current_database())")
        database = cursor.fetchone()[0]
    total = sum(total for total, _ in sizes.values())
    print("\nDatabase size (pg_total_relation_size: table, TOAST and indexes)")
    for table, (size, heap) in sizes.items():
        print(
            f"  {table:<22} {size / 2**20:>9,.0f} MB ({heap / 2**20:,.0f} MB heap) "
            f"{size / items:>7.0f} B/item"
        )
    print(f"  {'these tables':<22} {total / 2**20:>9,.0f} MB  {total / items:>7.0f} B/item")
    print(f"  {'whole database':<22} {database / 2**20:>9,.0f} MB  {database / items:>7.0f} B/item")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--api-events", type=int, default=100_000)
    parser.add_argument("--dashboard-accounts", type=int, default=20)
    parser.add_argument("--dashboard-requests", type=int, default=5)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="generator processes (one per core)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    options = parser.parse_args()

    name = database_name(SCALE_DB)
    default = os.environ.get("DATABASE_URL", "")
    if "scale" not in name or (default and database_name(default) == name):
        raise SystemExit(f"Refusing to use database {name!r}: its name must contain 'scale'.")
    free_gb = shutil.disk_usage(ROOT).free / 2**30
    if free_gb < MIN_FREE_GB:
        raise SystemExit(f"Only {free_gb:.1f} GB free on this disk; the run needs {MIN_FREE_GB}.")

    print(
        f"Meterline scale run: {options.items:,} items over {options.accounts:,} accounts, "
        f"{os.cpu_count()} cores, PostgreSQL database {name}, {free_gb:.0f} GB free, {load()}"
    )
    started = time.perf_counter()
    prepare_database(SCALE_DB, cache_table=True)
    print(f"  migrated in {time.perf_counter() - started:.1f} s")
    try:
        setup_django(SCALE_DB)
        run(options)
    finally:
        if options.keep:
            print(f"\nKept database {name}.")
        else:
            from django.db import connections

            connections.close_all()
            drop_database(SCALE_DB)
            print(f"\nDropped database {name}.")


def run(options) -> None:
    from django.utils import timezone

    from billing.plans.example_plans import load_example_plans
    from scripts.usage_generator import generate_usage

    load_example_plans()
    now = timezone.now()
    print("\nGeneration (rated by usage.rating, written with COPY)")
    generated = generate_usage(
        items=options.items,
        accounts=options.accounts,
        now=now,
        seed=options.seed,
        workers=options.workers,
        bulk=True,
        report_progress=True,
    )
    g = generated
    print(
        f"  {g.items:,} items ({g.calls:,} calls, {g.events:,} events) over {g.accounts:,} "
        f"accounts in {g.seconds:.1f} s: {g.items / g.seconds:,.0f} items/s "
        f"({options.workers} worker processes)"
    )
    print(
        f"  of which building the secondary indexes after the load {g.index_seconds:.1f} s; "
        f"COPY (waiting on PostgreSQL) {g.copy_seconds:.1f} s summed over the workers; "
        f"rating functions called for {g.ratings:,} items, the others memoised"
    )
    print(
        f"  wrote {g.entries:,} ledger entries, {g.topups:,} top-ups, {g.rollups:,} rollup rows, "
        f"{g.unbilled_lines:,} unbilled lines; usage {g.cost_micros / 1e6:,.2f} USD; "
        f"period {g.period_start:%Y-%m-%d} to {g.period_end:%Y-%m-%d}"
    )
    print(
        "  largest accounts (items): "
        + ", ".join(f"{g.plan_of[pk]} {count:,}" for pk, count in g.largest[:5])
    )
    print(
        f"  peak memory of this process so far (max RSS): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, of the workers "
        f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB"
    )
    print(f"  {load()}")
    print_sizes(g.items)
    check_consistency()
    measure_api(generated=g, events=options.api_events, now=timezone.now())
    measure_dashboard(
        generated=g,
        accounts=options.dashboard_accounts,
        requests=options.dashboard_requests,
        now=timezone.now(),
    )
    measure_invoicing(generated=g, now=timezone.now())
    print(
        f"\nPeak memory of this process (max RSS): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; {load()}"
    )


if __name__ == "__main__":
    main()
