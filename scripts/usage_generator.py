"""Rated usage at scale, written with COPY: what weeks of real ingestion leave behind.

`generate_usage` opens N accounts on the six example plans and gives them M usage items in the
current period: calls, and chat, SMS, LLM, embedding and flex events. Every item is rated by the
real rating functions (`usage.rating`) in time order per account, with minute aggregation's and
chat's carries and the enterprise allowance going from item to item as `usage.ingest.calls` and
`usage.ingest.events` rate them (scripts/scale_items.py). Around the ratings it writes what charging
them leaves (scripts/scale_charging.py):

- the calls and events with their price explanations;
- one ledger entry per charged item with the balance after it; prepaid accounts are topped up
  before their credit runs low (top-up rows, credit grants, entries); llm-api's signup credit
  and credits-monthly's included credit are spent first, in `billing.ledger`'s order;
- the daily rollups (item and line rows), the unbilled lines, the carries, the allowance used,
  and each account's cached balance and unbilled total.

So afterwards `billing.ledger.drift.ledger_drift()` finds nothing, rollups equal item totals, and
the real services (threshold invoicing, period close, the dashboard, the API) work on the data as on
their own. Items per account follow a power law: a few large accounts, a long tail.

Writing goes through COPY, a chunk of tens of thousands of items at a time (one transaction
each), so memory stays bounded whatever the size. `workers` > 1 splits the accounts over that
many forked processes, each with its own connection and id ranges. PostgreSQL only.
"""

import bisect
import heapq
import itertools
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scripts.benchdb import copy_text, reset_sequences

# Share of accounts per plan (as in scripts/bench_invoicing.py).
PLAN_MIX = [
    ("voice-prepaid", 0.35),
    ("voice-payg", 0.30),
    ("voice-enterprise", 0.10),
    ("credits-monthly", 0.10),
    ("llm-api", 0.10),
    ("flex-router", 0.05),
]
# Power-law exponent of items per account: the largest of 100,000 accounts gets ~4.5%.
SKEW = 0.9
# Tables written with explicit ids, whose sequences are moved past them afterwards.
ID_TABLES = [
    "accounts_account",
    "billing_subscription",
    "billing_ledgerentry",
    "billing_creditgrant",
    "billing_topup",
    "usage_call",
    "usage_usageevent",
]
# Tables whose secondary indexes a bulk load builds after the data.
BULK_TABLES = ["billing_ledgerentry", "usage_call", "usage_usageevent", "usage_usagerollup"]
ACCOUNT_COLUMNS = (
    "id public_id name email extra_billing_emails parent_id billing_mode balance_micros"
    " held_micros unbilled_micros past_due_since stripe_customer_id created_at metadata"
)
SUBSCRIPTION_COLUMNS = (
    "account_id plan_id anchor_day current_period_start current_period_end rollover_enabled"
    " pending_plan_id last_closed_at created_at allowance_locked allowance_unlock_reason"
)
COUNTERS = ["calls", "events", "entries", "topups", "rollups", "unbilled_lines", "cost_micros"]


@dataclass
class Generated:
    """What `generate_usage` wrote."""

    accounts: int = 0
    items: int = 0
    calls: int = 0
    events: int = 0
    entries: int = 0
    topups: int = 0
    rollups: int = 0
    unbilled_lines: int = 0
    cost_micros: int = 0
    ratings: int = 0  # items rated by calling a rating function; the others were memoised
    copy_seconds: float = 0.0  # summed over the workers
    index_seconds: float = 0.0
    seconds: float = 0.0
    period_start: datetime | None = None
    period_end: datetime | None = None
    account_ids: list[int] = field(default_factory=list)
    plan_of: dict[int, str] = field(default_factory=dict)
    # (account id, item count), largest first.
    largest: list[tuple[int, int]] = field(default_factory=list)


def item_counts(*, items: int, accounts: int, rng: random.Random) -> list[int]:
    """Split `items` over `accounts` by a power law, at least one each, in shuffled order."""
    if items < accounts:
        raise ValueError("Give every account at least one item: items >= accounts.")
    weights = [(rank + 1) ** -SKEW for rank in range(accounts)]
    total = sum(weights)
    spare = items - accounts
    counts = [1 + int(spare * w / total) for w in weights]
    counts[0] += items - sum(counts)  # rounding leftovers go to the largest
    rng.shuffle(counts)
    return counts


def generate_usage(
    *,
    items: int,
    accounts: int,
    now: datetime,
    seed: int = 9,
    workers: int = 1,
    bulk: bool = False,
    report_progress: bool = False,
) -> Generated:
    """Write `accounts` accounts with `items` rated usage items in the period containing `now`.

    Needs the example plans (`billing.plans.example_plans.load_example_plans`). Accounts open at the
    start of the period, whose anchor day is three weeks before `now` so that the period is
    well under way; items fall between its first hour and ten minutes before `now`.

    `bulk` loads the way pg_restore does, for a database of its own: foreign keys are not
    checked row by row (session_replication_role = replica; the data is built consistent, and
    the tests check it with them on), and the secondary indexes of the large tables are
    dropped first and built afterwards, one sort each instead of millions of random inserts.
    `workers` > 1 forks processes, so it needs committed data: not inside a test transaction.
    """
    from billing.models import Plan
    from billing.periods import period_containing

    started = time.perf_counter()
    anchor = min((now - timedelta(days=21)).day, 28)
    start, end = period_containing(anchor_day=anchor, moment=now)
    first_ms = 3_600_000
    span_ms = int((now - start).total_seconds() * 1000) - 600_000 - first_ms
    if span_ms <= 0:
        raise ValueError("`now` is too close to the period start.")
    _check_prices_fixed(start, now)
    plans = {p.code: p for p in Plan.objects.filter(code__in=dict(PLAN_MIX))}
    missing = set(dict(PLAN_MIX)) - set(plans)
    if missing:
        raise RuntimeError(f"Load the example plans first; missing {sorted(missing)}.")

    rng = random.Random(seed)
    counts = item_counts(items=items, accounts=accounts, rng=rng)
    boundaries = list(itertools.accumulate(share for _, share in PLAN_MIX))
    codes = [
        PLAN_MIX[min(bisect.bisect_left(boundaries, (n + 0.5) / accounts), len(PLAN_MIX) - 1)][0]
        for n in range(accounts)
    ]
    id_start = _next_ids()
    account_ids = list(range(id_start["accounts_account"], id_start["accounts_account"] + accounts))
    _open_accounts(account_ids, codes, plans=plans, anchor=anchor, start=start, end=end)
    from accounts.models import Account

    public_ids = dict(
        Account.objects.filter(pk__in=account_ids).values_list("pk", "public_id").iterator()
    )
    shards = _split(
        [
            (pk, public_ids[pk], code, count)
            for pk, code, count in zip(account_ids, codes, counts, strict=True)
        ],
        workers,
    )
    # Each shard writes ids from its own range; the sequences move past them all at the end.
    stride = 2 * items + 100 * accounts + 1000
    tasks = [
        {
            "accounts": shard,
            "first_ids": {t: id_start[t] + n * stride for t in ID_TABLES},
            "stride": stride,
            "tag": f"{rng.getrandbits(32):08x}{n:02d}",
            "seed": seed,
            "bulk": bulk,
            "start": start,
            "end": end,
            "first_ms": first_ms,
            "span_ms": span_ms,
            "report": report_progress,
            "started": started,
        }
        for n, shard in enumerate(shards)
    ]

    indexes = _start_bulk_load() if bulk else []
    index_seconds = 0.0
    try:
        if workers == 1:
            outcomes = [_run_shard(tasks[0])]
        else:
            import multiprocessing

            from django.db import connections

            connections.close_all()  # each forked worker opens its own
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                outcomes = pool.map(_run_shard, tasks)
    finally:
        if bulk:
            index_started = time.perf_counter()
            _end_bulk_load(indexes)
            index_seconds = time.perf_counter() - index_started
    _write_totals([line for outcome in outcomes for line in outcome.pop("totals")])

    result = Generated(
        accounts=accounts,
        items=items,
        period_start=start,
        period_end=end,
        account_ids=account_ids,
        plan_of=dict(zip(account_ids, codes, strict=True)),
        largest=sorted(zip(account_ids, counts, strict=True), key=lambda p: -p[1])[:10],
        index_seconds=index_seconds,
    )
    for outcome in outcomes:
        for name, value in outcome.items():
            setattr(result, name, getattr(result, name) + value)
    result.seconds = time.perf_counter() - started
    return result


def _check_prices_fixed(start: datetime, now: datetime) -> None:
    """Memoised ratings need one price per rate and model for the whole period."""
    from billing.models import ModelPrice, Rate

    changes = (
        Rate.objects.filter(effective_from__gt=start, effective_from__lte=now).count()
        + ModelPrice.objects.filter(effective_from__gt=start, effective_from__lte=now).count()
    )
    if changes:
        raise RuntimeError("A rate or model price changes inside the period; cannot memoise.")


def _next_ids() -> dict[str, int]:
    from django.db import connection

    ids = {}
    with connection.cursor() as cursor:
        for table in ID_TABLES:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")  # nosec B608 - ours
            ids[table] = cursor.fetchone()[0]
    return ids


def _open_accounts(account_ids, codes, *, plans, anchor, start, end) -> None:
    """Write the accounts and subscriptions first (balances come last), in one transaction."""
    from django.db import connection, transaction

    from accounts.models import new_public_id

    with transaction.atomic(), connection.cursor() as wrapper:
        cursor = wrapper.cursor
        copy_text(
            cursor,
            "accounts_account",
            ACCOUNT_COLUMNS.split(),
            (
                f"{pk}\t{new_public_id('acc')}\tScale {pk}\tscale{pk}@example.test\t\t\\N\t"
                f"{plans[code].billing_mode}\t0\t0\t0\t\\N\t\t{start}\t{{}}\n"
                for pk, code in zip(account_ids, codes, strict=True)
            ),
        )
        copy_text(
            cursor,
            "billing_subscription",
            SUBSCRIPTION_COLUMNS.split(),
            (
                f"{pk}\t{plans[code].pk}\t{anchor}\t{start}\t{end}\t"
                f"{'t' if plans[code].rollover_available else 'f'}\t\\N\t\\N\t{start}\tf\t\n"
                for pk, code in zip(account_ids, codes, strict=True)
            ),
        )


def _split(accounts: list[tuple], workers: int) -> list[list[tuple]]:
    """Share the accounts out so every worker gets about as many items; each in id order."""
    shards: list[list[tuple]] = [[] for _ in range(workers)]
    load = [(0, n) for n in range(workers)]
    for account in sorted(accounts, key=lambda a: -a[3]):
        items, n = heapq.heappop(load)
        shards[n].append(account)
        heapq.heappush(load, (items + account[3], n))
    return [sorted(shard) for shard in shards]


def _run_shard(task: dict) -> dict:
    """Generate one shard's items through this process's connection; return its counts."""
    from django.db import connection

    from billing.models import Plan
    from scripts.scale_items import Shard

    plans = {p.code: p for p in Plan.objects.filter(code__in=dict(PLAN_MIX))}
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        if task["bulk"]:
            cursor.execute("SET session_replication_role = replica")
        shard = Shard(
            cursor=cursor,
            plans=plans,
            start=task["start"],
            span_ms=task["first_ms"] + task["span_ms"],
            seed=task["seed"],
            tag=task["tag"],
            first_ids=task["first_ids"],
        )
        total = sum(a[3] for a in task["accounts"])
        reported = [0]

        def report(done: int) -> None:
            if done < reported[0] + total // 10:
                return
            reported[0] = done
            elapsed = time.perf_counter() - task["started"]
            print(
                f"  ... worker {task['tag'][-2:]}: {done:,} of {total:,} items, {elapsed:.0f} s",
                flush=True,
            )

        totals = shard.run_accounts(
            task["accounts"],
            start=task["start"],
            end=task["end"],
            first_ms=task["first_ms"],
            span_ms=task["span_ms"],
            progress=report if task["report"] and total > 1_000_000 else None,
        )
        if task["bulk"]:
            cursor.execute("RESET session_replication_role")
    # The ids a shard used must stay inside its range (a wrong top-up estimate could spill).
    for table, counter in (
        ("billing_ledgerentry", shard.entry_ids),
        ("billing_creditgrant", shard.grant_ids),
        ("billing_topup", shard.topup_ids),
    ):
        if next(counter) >= task["first_ids"][table] + task["stride"]:
            raise RuntimeError(f"Shard {task['tag']} ran out of {table} ids.")
    outcome = {name: getattr(shard, name) for name in COUNTERS}
    outcome.update(ratings=shard.ratings, copy_seconds=shard.sink.copy_seconds, totals=totals)
    return outcome


def _start_bulk_load() -> list[str]:
    """Drop the large tables' indexes that back no constraint; return their definitions."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = ANY(%s) AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            [BULK_TABLES],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in indexes]


def _end_bulk_load(indexes: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for definition in indexes:
            cursor.execute(definition)
        cursor.execute("RESET maintenance_work_mem")


def _write_totals(totals: list[str]) -> None:
    """Set every account's cached balance and unbilled total, and move the id sequences."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as wrapper:
        cursor = wrapper.cursor
        cursor.execute("DROP TABLE IF EXISTS scale_totals")  # left by an earlier call, in tests
        cursor.execute(
            "CREATE TEMP TABLE scale_totals (id bigint PRIMARY KEY, balance bigint,"
            " unbilled bigint) ON COMMIT DROP"
        )
        copy_text(cursor, "scale_totals", ["id", "balance", "unbilled"], totals)
        cursor.execute(
            "UPDATE accounts_account a SET balance_micros = t.balance,"
            " unbilled_micros = t.unbilled FROM scale_totals t WHERE a.id = t.id"
        )
        reset_sequences(cursor, ID_TABLES)
