"""What the benchmark scripts share: a throwaway PostgreSQL database, Django, and COPY.

Each benchmark builds its own database (dropped and recreated, never the default one), migrates
it with the test settings (dj-stripe's tables from one squashed migration, a minute faster; our
own apps migrate for real), then runs Django with the production settings (DEBUG off) against it
and writes bulk data with PostgreSQL's COPY.
"""

import io
import os
import subprocess
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Production-like settings for a benchmark process; DATABASE_URL is added per benchmark.
BENCH_ENV = {
    "DEBUG": "false",
    "PAYMENTS_TEST_MODE": "true",  # no Stripe keys here: simulated payments
    "SECRET_KEY": "bench-" + "x" * 60,
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "SECURE_SSL_REDIRECT": "false",
    "LOG_LEVEL": "WARNING",
}
# Rows handed to PostgreSQL per COPY write, so no table is ever held whole in memory.
COPY_CHUNK_ROWS = 50_000


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def prepare_database(url: str, *, cache_table: bool = False) -> None:
    """Drop and recreate the database at `url`, then migrate it."""
    import psycopg

    name = database_name(url)
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        **BENCH_ENV,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
    }
    commands = [["migrate", "--no-input", "-v0"]]
    if cache_table:  # the database cache, when REDIS_URL is not set
        commands.append(["createcachetable", "-v0"])
    for command in commands:
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


def setup_django(url: str, **extra_env: str) -> None:
    """Start Django with production settings (DEBUG off) against the benchmark database."""
    # Whitenoise warns that collectstatic has not run; pages, not files, are measured.
    warnings.filterwarnings("ignore", message="No directory at")
    os.environ.update({**BENCH_ENV, "DATABASE_URL": url, **extra_env})
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    # Production settings serve hashed static files from a manifest that `collectstatic`
    # writes; page rendering is what is measured here, so name the files plainly.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def copy_value(value) -> str:
    """One value in COPY's text format: NULL as \\N, backslashes, tabs and newlines escaped."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def copy_line(row: Iterable) -> str:
    return "\t".join(copy_value(v) for v in row) + "\n"


def copy_rows(cursor, table: str, columns: list[str], rows: Iterable[tuple]) -> int:
    """COPY tuples into a table in chunks; return how many rows were written.

    `cursor` is a psycopg cursor (Django's `connection.cursor().cursor`).
    """
    return copy_text(cursor, table, columns, (copy_line(row) for row in rows))


def copy_text(cursor, table: str, columns: list[str], lines: Iterable[str]) -> int:
    """COPY lines already in COPY's text format (one row each, ending in a newline)."""
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for line in lines:
            buffer.write(line)
            count += 1
            if count % COPY_CHUNK_ROWS == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


def reset_sequences(cursor, tables: Iterable[str]) -> None:
    """Point each table's id sequence past the ids COPY wrote explicitly."""
    for table in tables:
        cursor.execute(
            # Table names of our own models, passed by the benchmarks, never input.
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # nosec B608
            f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )


def close_periods(*, now):
    """Run the period-close job function as of `now`, wherever billing keeps it.

    It lives in `billing.invoicing.invoices`; a change under way moves it to
    `billing.invoicing.period_close`. Benchmarks call the job function itself, so they measure
    whichever the code has.
    """
    import importlib
    import importlib.util

    moved = importlib.util.find_spec("billing.invoicing.period_close") is not None
    module = importlib.import_module(
        "billing.invoicing.period_close" if moved else "billing.invoicing.invoices"
    )
    return module.close_periods(now=now)
