"""Restore drill: prove that a PostgreSQL backup of Meterline restores into a working copy.

    uv run python scripts/restore_drill.py [--days 30] [--keep]

What it does, as docs/operations.md ("Backups") tells an operator to do it:

1. builds a source database with the example plans and `--days` of demo history (the demo's
   accounts on every plan, made by the real services: usage, top-ups, invoices, refunds);
2. backs it up with `pg_dump --format=custom`, the documented backup command;
3. restores the dump into a new database with `pg_restore`;
4. compares the two: the row count of every table, every account's balance and its ledger sum,
   and that the ledger's append-only trigger came back;
5. runs `manage.py check_ledger` on the restored copy (zero drift), then the same period close
   (as of the first day after every current period) on both databases, and compares balances,
   invoices and ledger entries again, and checks the ledger once more.

Exits non-zero at the first difference. The databases (DRILL_SERVER_URL, default
postgres://postgres@127.0.0.1:5432, names below) are dropped at the end unless `--keep`.

The children run with config.test_settings, whose dj-stripe migration module builds the same
tables in seconds instead of a minute (tests/djstripe_migrations); our own apps run their real
migrations, so the schema restored is the one production has.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("DRILL_SERVER_URL", "postgres://postgres@127.0.0.1:5432")
SOURCE_DB = "meterline_drill_source"
RESTORED_DB = "meterline_drill_restored"

# Run as a child on a database (one process, as each start costs seconds): optionally the
# ledger check, then a period close as of the first day after every current period, then
# optionally the ledger check again. `check_ledger` exits non-zero on drift.
_CLOSE = """
import sys
import django
django.setup()
from datetime import timedelta
from django.core.management import call_command
from django.db.models import Max
from django.utils import timezone
from billing.invoicing.period_close import close_periods
from billing.models import Subscription
check = sys.argv[1] == "check"
if check:
    call_command("check_ledger")
end = Subscription.objects.aggregate(end=Max("current_period_end"))["end"] or timezone.now()
print(f"closed {close_periods(now=end + timedelta(days=1))}")
if check:
    call_command("check_ledger")
"""
# Written by the drill's own ledger checks on the restored copy only.
_DRILL_WRITES = {"billing_ledgercheck"}


def database_url(name: str) -> str:
    return f"{SERVER_URL.rstrip('/')}/{name}"


def recreate(name: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(name: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def run(command: list[str], *, database: str | None = None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    if database:
        env.update(
            DATABASE_URL=database_url(database),
            DJANGO_SETTINGS_MODULE="config.test_settings",
        )
    result = subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed: {' '.join(command[:3])} ... (exit {result.returncode})")
    return result.stdout


def manage(database: str, *arguments: str) -> str:
    return run([sys.executable, "manage.py", *arguments], database=database)


def state(name: str) -> dict:
    """Return what must survive a restore: row counts of every table, balances, ledger sums."""
    with psycopg.connect(database_url(name)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        counts = {
            table: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in tables
        }
        balances = conn.execute(
            "SELECT a.public_id, a.balance_micros, coalesce(sum(e.amount_micros), 0) "
            "FROM accounts_account a LEFT JOIN billing_ledgerentry e ON e.account_id = a.id "
            "GROUP BY a.public_id, a.balance_micros ORDER BY a.public_id"
        ).fetchall()
        invoices = conn.execute(
            "SELECT number, account_id, status, total_micros FROM billing_invoice "
            "ORDER BY number NULLS LAST, id"
        ).fetchall()
        triggers = sorted(
            row[0]
            for row in conn.execute(
                "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relname = 'billing_ledgerentry' AND NOT t.tgisinternal"
            )
        )
    return {
        "counts": counts,
        "balances": balances,
        "invoices": invoices,
        "triggers": triggers,
    }


def compare(label: str, source: dict, restored: dict) -> None:
    for key in source:
        if source[key] != restored[key]:
            if key == "counts":
                differ = {
                    table: (source[key][table], restored[key].get(table))
                    for table in source[key]
                    if source[key][table] != restored[key].get(table)
                }
                raise SystemExit(f"{label}: row counts differ (source, restored): {differ}")
            raise SystemExit(f"{label}: {key} differ")
    drifting = [row for row in restored["balances"] if row[1] != row[2]]
    if drifting:
        raise SystemExit(f"{label}: balances differ from their ledger: {drifting[:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="Days of demo history (30).")
    parser.add_argument("--keep", action="store_true", help="Keep both databases afterwards.")
    args = parser.parse_args()
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True)

    try:
        recreate(SOURCE_DB)
        manage(SOURCE_DB, "demo", "--no-serve", "--days", str(args.days))
        before = state(SOURCE_DB)
        say(
            f"source: {len(before['balances'])} accounts, "
            f"{before['counts']['billing_ledgerentry']} ledger entries, "
            f"{before['counts']['usage_call']} calls, {before['counts']['usage_usageevent']} "
            f"events, {len(before['invoices'])} invoices"
        )
        with tempfile.TemporaryDirectory() as folder:
            dump = Path(folder) / "meterline.dump"
            run(
                [
                    *("pg_dump", "--format=custom", "--no-owner", "--file", str(dump)),
                    *("--dbname", database_url(SOURCE_DB)),
                ]
            )
            say(f"pg_dump: {dump.stat().st_size:,} bytes")
            recreate(RESTORED_DB)
            run(
                [
                    *("pg_restore", "--no-owner", "--exit-on-error", "--jobs", "2"),
                    *("--dbname", database_url(RESTORED_DB), str(dump)),
                ]
            )
        say("pg_restore: done")
        compare("after restore", before, state(RESTORED_DB))
        say(
            f"restored copy equals the source: {len(before['counts'])} tables, "
            f"{len(before['balances'])} balances, ledger trigger {before['triggers']}"
        )
        # On the copy: check_ledger, the period close, check_ledger again; the same close on
        # the source, and both must come out the same.
        restored_out = run([sys.executable, "-c", _CLOSE, "check"], database=RESTORED_DB)
        say(restored_out.strip().replace("\n", " | "))
        closed_source = run([sys.executable, "-c", _CLOSE, "-"], database=SOURCE_DB).strip()
        if closed_source not in restored_out:
            raise SystemExit(f"period close differs: source {closed_source!r}")
        source_after, after = state(SOURCE_DB), state(RESTORED_DB)
        for table in _DRILL_WRITES:
            source_after["counts"].pop(table)
            after["counts"].pop(table)
        compare("after period close", source_after, after)
        say(
            f"period close on both: {len(after['invoices'])} invoices "
            f"(from {len(before['invoices'])}), the same balances, zero drift"
        )
        say("restore drill passed")
    finally:
        if not args.keep:
            drop(SOURCE_DB)
            drop(RESTORED_DB)


if __name__ == "__main__":
    main()
