"""Per-request cost of the gateway API's hot path, in this process (complements bench_api.py).

    uv run python scripts/profile_api.py [--requests 300] [--profile authorize|events|calls]

Load on a shared machine moves bench_api.py's throughput figures a lot; this measures what one
request costs the server, which load moves much less: CPU time (process time) and wall time per
request through the Django test client with production settings (DEBUG off), and the SQL
queries of one request. Same fixtures as bench_api.py, in a fresh PostgreSQL database
(PROFILE_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/meterline_profile_api) with
Redis (REDIS_URL) for the cache and rate limits. `--profile` prints a cProfile of one run.
"""

import argparse
import cProfile
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchdb import prepare_database, setup_django  # noqa: E402

DATABASE_URL = os.environ.get(
    "PROFILE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterline_profile_api"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", choices=["authorize", "events", "calls"])
    options = parser.parse_args()

    prepare_database(DATABASE_URL)
    setup_django(DATABASE_URL, REDIS_URL=REDIS_URL)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from scripts.bench_api import Requests, create_fixtures

    fixtures = create_fixtures()
    client = Client()

    def sender(run: str):
        # The same requests as bench_api.py's clients send, through the test client.
        requests = Requests(fixtures, run)

        def send(i: int):
            method, path, body, headers = requests(0, i)
            return client.generic(
                method, path, body or "", content_type="application/json", headers=headers
            )

        return send

    runs = {
        "plain /healthz": (sender("healthz"), 1),
        "authorize": (sender("authorize"), 1),
        "events": (sender("events"), 10),
        "calls": (sender("calls"), 1),
    }
    print(f"Per-request server cost, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {_load()}")
    for name, (send, divisor) in runs.items():
        n = max(options.requests // divisor, 5)
        offset = 10_000
        for i in range(3):  # warm up: URLconf, connections, caches
            _check(send(offset + i))
        with CaptureQueriesContext(connection) as queries:
            _check(send(offset + 3))
        # Copied now: the next request's request_started signal empties the query log.
        captured = list(queries.captured_queries)
        profile = cProfile.Profile() if options.profile == name else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for i in range(n):
            _check(send(i))
        if profile:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"  {name:<15} {n:>5} requests: {1000 * cpu / n:7.2f} ms CPU, "
            f"{1000 * wall / n:7.2f} ms wall per request; {len(captured)} queries"
        )
        if profile:
            pstats.Stats(profile).sort_stats(
                os.environ.get("PROFILE_SORT", "cumulative")
            ).print_stats(int(os.environ.get("PROFILE_LINES", "40")))
            for q in captured:
                print("   ", q["sql"][:200])


def _check(response) -> None:
    if response.status_code != 200:
        raise SystemExit(f"HTTP {response.status_code}: {response.content[:300]!r}")


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0]


if __name__ == "__main__":
    main()
