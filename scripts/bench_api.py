"""Benchmark of the gateway API's hot path. Prints its figures.

    uv run python scripts/bench_api.py [--seconds 10] [--workers 4]

What it does, all on this machine:
1. Creates a fresh PostgreSQL database (BENCH_DATABASE_URL, default
   postgres://postgres@127.0.0.1:5432/meterline_bench) and migrates it; Redis (REDIS_URL,
   default redis://127.0.0.1:6379/14) backs the cache and rate limits as in production.
2. Starts gunicorn with production settings (DEBUG off) and N sync workers on 127.0.0.1.
3. Drives it from client processes on the same machine (keep-alive HTTP/1.1) and prints:
   - reference figures from the same run: a plain Django JSON view without database
     (`/healthz`) at 32 clients, and a raw `COPY` of the same rows the ingestion run wrote;
   - batched ingestion: POST /api/v1/events, 100 LLM events per request, one hot account;
     then checks that the balance is exact and the ledger clean;
   - single call reports on one hot account from 32 clients (throughput, p50/p99), and on two
     hot accounts at once (16 clients each);
   - authorize at 4 clients (p50/p99) and at 32 clients;
   - a realistic mix: 1,000 accounts (half voice, half LLM) with a Zipf-shaped share of the
     traffic (the busiest account gets the most, the thousandth a sliver), call reports, event
     batches (20 events) and authorize together from 32 clients: items per second in all and
     p99 per operation, then the ledger check;
   - resident memory (RSS) of each web worker after the runs.
Every rate is printed beside the plain view's rate of the same run and as a ratio to it: the
machine and its load move both alike, so ratios compare across machines (issue 20's goals are
ratios). The load generator shares the cores with the server, so figures are lower bounds.
"""

import argparse
import collections
import http.client
import io
import json
import multiprocessing
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import accumulate as itertools_accumulate
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterline_bench"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
SERVER_ENV = {
    "DATABASE_URL": BENCH_DB,
    "REDIS_URL": REDIS_URL,
    "DEBUG": "false",
    "PAYMENTS_TEST_MODE": "true",  # no Stripe keys here: simulated payments
    "SECRET_KEY": "bench-" + "x" * 60,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
    "LOG_LEVEL": "WARNING",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_database() -> None:
    import psycopg

    url = urlparse(BENCH_DB)
    name = url.path.lstrip("/")
    admin = BENCH_DB.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    # Test settings build dj-stripe's tables from one squashed migration (a minute faster);
    # the server itself runs with the production settings.
    env = {**os.environ, **SERVER_ENV, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run([sys.executable, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)


def setup_django() -> None:
    os.environ.update(SERVER_ENV)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()


def create_fixtures(*, mix_accounts: int = 0) -> dict:
    """Accounts and keys for the runs (`mix_accounts` more for the mix); rate limits lifted so
    they measure the server."""
    from django.db import transaction
    from django.utils import timezone

    from accounts.keys import issue_api_key
    from accounts.models import KeyKind
    from billing.models import Plan
    from billing.plans.example_plans import load_example_plans
    from billing.plans.onboarding import create_account

    load_example_plans()
    Plan.objects.filter(code__in=["llm-api", "voice-prepaid"]).update(
        rate_limits={"free": 10**9, "elevated": 10**9, "paid": 10**9}
    )
    now = timezone.now()
    llm = create_account(
        name="Bench LLM",
        email="bench-llm@example.test",
        plan=Plan.objects.get(code="llm-api"),
        now=now,
        credit_micros=10**12,
    )
    voice = create_account(
        name="Bench Voice",
        email="bench-voice@example.test",
        plan=Plan.objects.get(code="voice-prepaid"),
        now=now,
        credit_micros=10**12,
    )
    voice2 = create_account(
        name="Bench Voice 2",
        email="bench-voice2@example.test",
        plan=Plan.objects.get(code="voice-prepaid"),
        now=now,
        credit_micros=10**12,
    )
    platform = issue_api_key(kind=KeyKind.PLATFORM, name="bench", now=now).token
    customer = issue_api_key(kind=KeyKind.CUSTOMER, name="bench", now=now, account=llm).token
    # The mix's accounts, busiest first: voice and LLM in turn. One transaction: one WAL flush
    # for all of them, not one per statement.
    mix_voice, mix_llm, mix_keys = [], [], []
    with transaction.atomic():
        _mix_accounts(mix_accounts, now, mix_voice, mix_llm, mix_keys)
    return {
        "llm": llm.public_id,
        "voice": voice.public_id,
        "voice2": voice2.public_id,
        "platform": platform,
        "customer": customer,
        "llm_start_micros": llm.balance_micros,
        "mix_voice": mix_voice,
        "mix_llm": mix_llm,
        "mix_keys": mix_keys,
    }


def _mix_accounts(count, now, mix_voice, mix_llm, mix_keys) -> None:
    from accounts.keys import issue_api_key
    from accounts.models import KeyKind
    from billing.models import Plan
    from billing.plans.onboarding import create_account

    plans = {plan.code: plan for plan in Plan.objects.filter(code__in=["voice-prepaid", "llm-api"])}
    for rank in range(count):
        plan = "voice-prepaid" if rank % 2 == 0 else "llm-api"
        account = create_account(
            name=f"Mix {rank}",
            email=f"mix-{rank}@example.test",
            plan=plans[plan],
            now=now,
            credit_micros=10**12,
        )
        if plan == "voice-prepaid":
            mix_voice.append(account.public_id)
        else:
            mix_llm.append(account.public_id)
            key = issue_api_key(kind=KeyKind.CUSTOMER, name="mix", now=now, account=account)
            mix_keys.append(key.token)


MIX_ACCOUNTS = 1000
ZIPF_EXPONENT = 1.1
# Share of the mix's requests: call reports, event batches, authorize.
MIX_OPERATIONS = {"call": 0.45, "events": 0.10, "authorize": 0.45}
MIX_EVENTS_PER_REQUEST = 20


# Load generation ------------------------------------------------------------------------------


def _client(args) -> tuple[int, list[tuple[str, float]], int]:
    port, requests, seconds, client_no = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies: list[tuple[str, float]] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        method, path, body, headers = requests(client_no, i)
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((requests.operation(path), time.perf_counter() - started))
        if response.status >= 300:
            errors += 1
            if errors < 3:
                print(f"    HTTP {response.status} on {path}", file=sys.stderr)
        i += 1
    conn.close()
    return i, latencies, errors


def run_load(port: int, requests, *, clients: int, seconds: float) -> dict:
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_client, [(port, requests, seconds, c) for c in range(clients)])
    elapsed = time.perf_counter() - started
    tagged = [lat for _, lats, _ in results for lat in lats]
    latencies = sorted(lat for _, lat in tagged)
    count = sum(n for n, _, _ in results)
    by_operation = collections.defaultdict(list)
    for operation, lat in tagged:
        by_operation[operation].append(lat)
    return {
        "requests": count,
        "rps": count / seconds,
        "errors": sum(e for _, _, e in results),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else 0,
        "p99_ms": _p99_ms(latencies),
        "elapsed": elapsed,
        "operations": {
            op: {"requests": len(lats), "p99_ms": _p99_ms(sorted(lats))}
            for op, lats in by_operation.items()
        },
    }


def _p99_ms(latencies: list[float]) -> float:
    return 1000 * latencies[max(int(len(latencies) * 0.99) - 1, 0)] if latencies else 0


class Requests:
    """Picklable request factories for the client processes."""

    def __init__(self, fixtures: dict, run: str):
        self.f = fixtures
        self.run = run
        # Ids unique to this run, so no two runs report the same call or event.
        self.token = secrets.token_hex(4)

    @staticmethod
    def operation(path: str) -> str:
        if path.startswith("/api/v1/calls/"):
            return "call"
        return path.rsplit("/", 1)[-1]

    def __call__(self, client: int, i: int):
        f = self.f
        if self.run == "mix":
            return self._mix(client, i)
        if self.run == "healthz":
            return "GET", "/healthz", None, {}
        if self.run == "authorize":
            body = json.dumps({"feature": "llm", "model": "gpt-4o-mini", "provider": "openai"})
            return "POST", "/api/v1/authorize", body, _headers(f["customer"])
        if self.run == "events":
            now = datetime.now(UTC).isoformat()
            events = [
                {
                    "id": f"ev-{self.token}-{client}-{i}-{n}",
                    "account": f["llm"],
                    "type": "llm",
                    "occurred_at": now,
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "input_tokens": 1000,
                    "output_tokens": 200,
                }
                for n in range(100)
            ]
            return "POST", "/api/v1/events", json.dumps({"events": events}), _headers(f["platform"])
        if self.run in ("calls", "calls2"):
            ended = datetime.now(UTC)
            # Two hot accounts: the clients split between them.
            account = f["voice2"] if self.run == "calls2" and client % 2 else f["voice"]
            body = {
                "account": account,
                "status": "completed",
                "direction": "inbound",
                "connected_at": (ended - timedelta(seconds=83)).isoformat(),
                "ended_at": ended.isoformat(),
            }
            return (
                "PUT",
                f"/api/v1/calls/call-{self.token}-{client}-{i}",
                json.dumps(body),
                _headers(f["platform"]),
            )
        raise ValueError(self.run)

    def _mix(self, client: int, i: int):
        if not hasattr(self, "_random"):
            # In the client process: its own sequence, the same shape for every client.
            self._random = random.Random(f"{self.token}-{client}")  # nosec B311 - load shape
            ranks = range(1, MIX_ACCOUNTS // 2 + 1)
            self._zipf = list(itertools_accumulate(1 / rank**ZIPF_EXPONENT for rank in ranks))
        rnd = self._random
        operation = rnd.choices(list(MIX_OPERATIONS), weights=list(MIX_OPERATIONS.values()))[0]
        n = rnd.choices(range(len(self._zipf)), cum_weights=self._zipf)[0]
        f = self.f
        now = datetime.now(UTC)
        if operation == "authorize":
            body = json.dumps({"feature": "llm", "model": "gpt-4o-mini", "provider": "openai"})
            return "POST", "/api/v1/authorize", body, _headers(f["mix_keys"][n])
        if operation == "events":
            events = [
                {
                    "id": f"mix-{self.token}-{client}-{i}-{k}",
                    "account": f["mix_llm"][n],
                    "type": "llm",
                    "occurred_at": now.isoformat(),
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "input_tokens": 1000,
                    "output_tokens": 200,
                }
                for k in range(MIX_EVENTS_PER_REQUEST)
            ]
            return "POST", "/api/v1/events", json.dumps({"events": events}), _headers(f["platform"])
        body = {
            "account": f["mix_voice"][n],
            "status": "completed",
            "direction": "inbound",
            "connected_at": (now - timedelta(seconds=83)).isoformat(),
            "ended_at": now.isoformat(),
        }
        return (
            "PUT",
            f"/api/v1/calls/mix-{self.token}-{client}-{i}",
            json.dumps(body),
            _headers(f["platform"]),
        )


def _headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# Reference: raw COPY ---------------------------------------------------------------------------


def copy_reference(rows: int) -> float:
    """Rows per second of a raw COPY of event-shaped rows into a scratch table."""
    import psycopg

    with psycopg.connect(BENCH_DB, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE copy_ref (event_id text, account_id bigint, type text, "
            "occurred_at timestamptz, content_hash text, model text, quantity bigint, "
            "output_tokens bigint, cost_micros bigint)"
        )
        buffer = io.StringIO()
        now = datetime.now(UTC).isoformat()
        for n in range(rows):
            buffer.write(f"ref-{n}\t1\tllm\t{now}\t{'a' * 64}\tgpt-4o-mini\t1000\t200\t270\n")
        data = buffer.getvalue()
        started = time.perf_counter()
        with conn.cursor().copy("COPY copy_ref FROM STDIN") as copy:
            copy.write(data)
        return rows / (time.perf_counter() - started)


def warm_up(port: int, fixtures: dict, *, workers: int) -> None:
    """Wait for the server, then make every worker load its URLconf and connections."""
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            break
        except OSError:
            time.sleep(0.2)
    for run in ("healthz", "authorize", "events", "calls"):
        run_load(port, Requests(fixtures, run), clients=workers * 2, seconds=1)


def worker_rss(master_pid: int) -> list[float]:
    children = subprocess.run(
        ["pgrep", "-P", str(master_pid)],  # the benchmark host's pgrep  # nosec B607
        capture_output=True,
        text=True,
    ).stdout.split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4)
    options = parser.parse_args()

    print(
        f"Meterline API benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, {options.workers} gunicorn workers"
    )
    prepare_database()
    setup_django()
    fixtures = create_fixtures(mix_accounts=MIX_ACCOUNTS)

    port = free_port()
    # The server's request log goes to a file, not between the figures.
    server_log = (ROOT / "var" / "bench_api_server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            str(options.workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **SERVER_ENV},
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        warm_up(port, fixtures, workers=options.workers)
        seconds = options.seconds
        figures = {}
        figures["plain_32"] = run_load(
            port, Requests(fixtures, "healthz"), clients=32, seconds=seconds
        )
        figures["events_8"] = run_load(
            port, Requests(fixtures, "events"), clients=8, seconds=seconds
        )
        figures["calls_32"] = run_load(
            port, Requests(fixtures, "calls"), clients=32, seconds=seconds
        )
        figures["auth_4"] = run_load(
            port, Requests(fixtures, "authorize"), clients=4, seconds=seconds
        )
        figures["auth_32"] = run_load(
            port, Requests(fixtures, "authorize"), clients=32, seconds=seconds
        )
        figures["calls2_32"] = run_load(
            port, Requests(fixtures, "calls2"), clients=32, seconds=seconds
        )
        figures["mix_32"] = run_load(port, Requests(fixtures, "mix"), clients=32, seconds=seconds)
        rss = worker_rss(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server_log.close()

    from accounts.models import Account
    from billing.ledger.drift import ledger_drift
    from usage.models import UsageEvent

    events = UsageEvent.objects.filter(account__public_id=fixtures["llm"])
    count = events.count()
    cost = sum(events.values_list("cost_micros", flat=True))
    balance = Account.objects.get(public_id=fixtures["llm"]).balance_micros
    exact = balance == fixtures["llm_start_micros"] - cost
    copy_rps = copy_reference(max(count, 10_000))
    drift = ledger_drift()

    plain = figures["plain_32"]["rps"]

    def line(name, f, *, items=1, unit="req/s", goal=""):
        rate = f["rps"] * items
        print(
            f"  {name:<48} {rate:>8.0f} {unit:<9} = {rate / plain:5.2f} x plain  "
            f"p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms  errors {f['errors']}"
            + (f"  goal {goal}" if goal else "")
        )

    print("\nReference figures (same run, same machine); ratios below are to the plain view")
    line("plain JSON view, no database, 32 clients", figures["plain_32"])
    print(f"  {'raw COPY of event rows':<48} {copy_rps:>8.0f} rows/s")
    print("\nGateway API")
    line(
        "events, 100 per request, 8 clients",
        figures["events_8"],
        items=100,
        unit="events/s",
        goal=">= 10 x",
    )
    print(
        f"  {'':<48} {count} events stored; balance exact: {exact}; "
        f"ledger drift: {len(drift)} accounts"
    )
    line(
        "call reports, one hot account, 32 clients",
        figures["calls_32"],
        goal=">= 0.5 x, p99 < 150 ms",
    )
    line("call reports, two hot accounts, 16 clients each", figures["calls2_32"])
    line("authorize, 4 clients", figures["auth_4"])
    line("authorize, 32 clients", figures["auth_32"], goal=">= 0.6 x")
    mix = figures["mix_32"]
    ops = mix["operations"]
    items = (
        ops.get("call", {}).get("requests", 0)
        + ops.get("authorize", {}).get("requests", 0)
        + MIX_EVENTS_PER_REQUEST * ops.get("events", {}).get("requests", 0)
    ) / options.seconds
    print(
        f"\nRealistic mix: {MIX_ACCOUNTS} accounts, Zipf s={ZIPF_EXPONENT}, 32 clients, "
        + ", ".join(f"{share:.0%} {op}" for op, share in MIX_OPERATIONS.items())
        + f" ({MIX_EVENTS_PER_REQUEST} events per batch)"
    )
    print(
        f"  {'items (calls + events + authorizations)':<48} {items:>8.0f} items/s   "
        f"= {items / plain:5.2f} x plain  ({mix['rps']:.0f} req/s, errors {mix['errors']})"
    )
    for op, f in sorted(ops.items()):
        print(
            f"  {op:<48} {f['requests'] / options.seconds:>8.0f} req/s     "
            f"= {f['requests'] / options.seconds / plain:5.2f} x plain  p99 {f['p99_ms']:6.1f} ms"
        )
    print(f"  ledger check after all runs: {len(drift)} accounts with drift")
    print(
        "\nWeb worker RSS after the runs: "
        f"{', '.join(f'{r:.0f} MB' for r in rss)} (target < 150 MB)"
    )


if __name__ == "__main__":
    main()
