"""Benchmark of the customer dashboard. Prints its figures.

    uv run python scripts/bench_dashboard.py [--calls 1000000] [--requests 60]

Builds a fresh PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/meterline_bench_dashboard) holding:
- the demo dataset of `manage.py demo` (accounts on every example plan, 90 days of usage,
  invoices, alerts, keys), built by the real services;
- one more account, "Heavy Voice", with N rated calls over the same 90 days (1,000,000 by
  default), written with COPY like scripts/bench_invoicing.py: the calls with their price
  explanations, a ledger entry for each, the daily rollups and a top-up that pays for them.

Then measures, in this process, through the Django test client with production settings
(DEBUG off, so no query logging), the server-side time of the dashboard's pages for the heavy
account and for a demo account: p50, p95 and max over `--requests` requests each after two
warm-up requests, and the number of SQL queries of one request. Target: p95 < 150 ms.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchdb import copy_rows, prepare_database, setup_django  # noqa: E402

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterline_bench_dashboard"
)
USD = 1_000_000
RATE_PER_MINUTE = "0.08"  # voice-prepaid
PAGES = [
    ("overview", ""),
    ("usage", "usage/"),
    ("usage, 90 days", "usage/?start={start}&end={end}"),
    ("call log", "usage/log/?kind=calls"),
    ("call log, page 200", "usage/log/?kind=calls&after={cursor}"),
    ("billing", "billing/"),
    ("statement", "billing/statement/"),
    ("API keys", "keys/"),
]


def heavy_account(*, calls: int, now: datetime):
    """Open "Heavy Voice" and write `calls` rated calls over 90 days with COPY."""
    from decimal import ROUND_HALF_UP, Decimal

    from django.db import connection

    from accounts.models import Account, User
    from billing.models import Plan
    from billing.plans.onboarding import create_account
    from usage.models import Call

    start = now - timedelta(days=90)
    owner = User.objects.create_user(email="heavy@meterline.test")  # force_login only
    account = create_account(
        name="Heavy Voice",
        email=owner.email,
        plan=Plan.objects.get(code="voice-prepaid"),
        now=start,
        owner=owner,
    )
    rate = Decimal(RATE_PER_MINUTE)
    rng = random.Random(7)
    span = (now - start).total_seconds() - 3600
    moments = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(calls))
    rows, days = [], {}
    total = 0
    for n, ended in enumerate(moments):
        seconds = rng.randint(10, 600)
        cost = int((Decimal(seconds) * rate / 60 * USD).quantize(Decimal(1), ROUND_HALF_UP))
        total += cost
        rows.append((n, ended, seconds, cost))
        day = days.setdefault(ended.date(), [0, 0, 0])
        day[0] += 1
        day[1] += seconds
        day[2] += cost

    def explanation(seconds: int, cost: int) -> str:
        exact = Decimal(seconds) * rate / 60
        return json.dumps(
            {
                "raw": {
                    "rule": "connect to end",
                    "raw_ms": seconds * 1000 + 123,
                    "rounding": "rounded to the nearest second",
                },
                "billed_seconds": seconds,
                "allowance_seconds": 0,
                "paid_seconds": seconds,
                "lines": [
                    {
                        "component": "call",
                        "key": "",
                        "quantity": seconds,
                        "unit": "second",
                        "rate": RATE_PER_MINUTE,
                        "exact": str(exact),
                        "amount": f"{cost / USD:.6f}",
                    }
                ],
                "rounding": "each line rounded once, half-up to the micro-dollar",
                "cost": f"{cost / USD:.6f}",
                "uncollected": 0,
            }
        )

    credit = total + 250 * USD  # a top-up that paid for it all, with 250 USD left
    with connection.cursor() as cursor:
        cur = cursor.cursor
        cur.execute(
            "INSERT INTO billing_creditgrant (account_id, kind, amount_micros, remaining_micros,"
            " priority, expires_at, created_at, expired_at) VALUES (%s, 'topup', %s, %s, 0,"
            " NULL, %s, NULL) RETURNING id",
            [account.pk, credit, credit - total, start],
        )
        grant_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO billing_ledgerentry (account_id, kind, amount_micros,"
            " balance_after_micros, created_at, grant_id, description, cause_id, reason)"
            " VALUES (%s, 'topup', %s, %s, %s, %s, 'Top-up', '', '')",
            [account.pk, credit, credit, start, grant_id],
        )
        copy_rows(
            cur,
            "usage_call",
            [
                "call_id",
                "account_id",
                "status",
                "direction",
                "connected_at",
                "ended_at",
                "hold_seconds",
                "destination",
                "llm",
                "billable_seconds",
                "allowance_seconds",
                "cost_micros",
                "charged_micros",
                "uncollected_micros",
                "explanation",
                "final_hash",
                "charged_at",
                "refunded_micros",
                "created_at",
                "updated_at",
            ],
            (
                (
                    f"heavy-{n:07d}",
                    account.pk,
                    "completed",
                    "inbound",
                    ended - timedelta(seconds=seconds, milliseconds=123),
                    ended,
                    0,
                    "",
                    "",
                    seconds,
                    0,
                    cost,
                    cost,
                    0,
                    explanation(seconds, cost),
                    "",
                    ended,
                    0,
                    ended,
                    ended,
                )
                for n, ended, seconds, cost in rows
            ),
        )
        balance = credit

        def entries():
            nonlocal balance
            for n, ended, seconds, cost in rows:
                balance -= cost
                description = f"Call heavy-{n:07d}: {seconds} s"
                yield (account.pk, "usage", -cost, balance, ended, description, "", "")

        copy_rows(
            cur,
            "billing_ledgerentry",
            [
                "account_id",
                "kind",
                "amount_micros",
                "balance_after_micros",
                "created_at",
                "description",
                "cause_id",
                "reason",
            ],
            entries(),
        )
        rollups = []
        for day, (items, seconds, cost) in sorted(days.items()):
            rollups.append((account.pk, day, False, "call", items, seconds, cost))
            rollups.append((account.pk, day, True, "call", items, seconds, cost))
        copy_rows(
            cur,
            "usage_usagerollup",
            [
                "account_id",
                "day",
                "is_line",
                "component",
                "provider",
                "model",
                "items",
                "quantity",
                "output_tokens",
                "allowance_seconds",
                "cost_micros",
                "savings_micros",
                "refunded_micros",
            ],
            ((*r[:4], "", "", r[4], r[5], 0, 0, r[6], 0, 0) for r in rollups),
        )
        Account.objects.filter(pk=account.pk).update(balance_micros=credit - total)
        cur.execute("ANALYZE")
    # The benchmark's sanity checks are asserts; it never runs with -O.
    assert Call.objects.filter(account=account).count() == calls  # nosec B101
    return Account.objects.get(pk=account.pk), owner


def measure(client, url: str, requests: int) -> dict:
    from django.db import connection

    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)  # nosec B101
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
    # Counted by a wrapper: the request_started signal empties connection.queries.
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)
    ):
        client.get(url)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "p50": statistics.median(timings),
        "p95": timings[max(int(len(timings) * 0.95) - 1, 0)],
        "max": timings[-1],
        "queries": len(queries),
        "bytes": len(response.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60)
    options = parser.parse_args()
    print(
        f"Meterline dashboard benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, PostgreSQL, Django test client, DEBUG off"
    )
    started = time.perf_counter()
    prepare_database(BENCH_DB, cache_table=True)
    print(f"  migrated in {time.perf_counter() - started:.1f} s")
    setup_django(BENCH_DB)

    from django.test import Client
    from django.utils import timezone

    from accounts.demo.build import build_demo
    from accounts.demo.data import CUSTOMER_EMAIL
    from accounts.models import Account, User
    from billing.ledger.drift import ledger_drift
    from usage.pages.usage_log import LogFilter, log_page

    now = timezone.now()
    started = time.perf_counter()
    build_demo(now=now)
    print(f"  demo dataset (real services, 90 days) built in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    heavy, owner = heavy_account(calls=options.calls, now=now)
    print(
        f"  Heavy Voice: {options.calls:,} rated calls, ledger entries and rollups by COPY "
        f"in {time.perf_counter() - started:.1f} s"
    )
    drift = ledger_drift()
    print(f"  check_ledger: {len(drift)} account(s) drift")

    # The cursor of the log's 200th page (10,000 calls back), as "Older" would reach it.
    cursor = ""
    for _ in range(199):
        cursor = log_page(account=heavy, log_filter=LogFilter(kind="calls", cursor=cursor))[
            "next_cursor"
        ]
    today = now.date()
    fill = {
        "start": (today - timedelta(days=89)).isoformat(),
        "end": today.isoformat(),
        "cursor": cursor,
    }
    demo = Account.objects.get(name="Acme Voice PAYG")
    targets = [
        (heavy, owner, f"Heavy Voice ({options.calls:,} calls)"),
        (demo, User.objects.get(email=CUSTOMER_EMAIL), "demo account Acme Voice PAYG"),
    ]
    worst = 0.0
    for account, user, label in targets:
        client = Client()
        client.force_login(user)
        print(f"\n{label} (target p95 < 150 ms), {options.requests} requests a page")
        print(f"  {'page':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8} {'KB':>6}")
        for name, path in PAGES:
            if "{cursor}" in path and account is not heavy:
                continue
            url = f"/app/a/{account.public_id}/{path.format(**fill)}"
            figures = measure(client, url, options.requests)
            worst = max(worst, figures["p95"])
            print(
                f"  {name:<22} {figures['p50']:>8.1f} {figures['p95']:>8.1f} "
                f"{figures['max']:>8.1f} {figures['queries']:>8} {figures['bytes'] / 1024:>6.0f}"
            )
    print(f"\nworst p95: {worst:.1f} ms ({'within' if worst < 150 else 'over'} the 150 ms target)")


if __name__ == "__main__":
    main()
