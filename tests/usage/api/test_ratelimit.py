"""Per-key rate limits of the customer API, on Redis and on the database (SPEC G2)."""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import time_machine
from django.conf import settings as django_settings
from django.db import OperationalError, connections
from django.test import Client
from django.utils import timezone

from tests.child_processes import child_database_url
from usage.api import ratelimit
from usage.models import RateLimitCounter

RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
# Redis always runs in CI: a missing Redis is a failure, never a silent skip.
TEST_REDIS_URL = django_settings.REDIS_URL or "redis://127.0.0.1:6379/15"
BASE_DIR = Path(django_settings.BASE_DIR)


@pytest.fixture
def redis_url():
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}")
    return TEST_REDIS_URL


@pytest.fixture(params=["database", "redis"])
def backend(request, settings):
    """Run the test once with each counter store."""
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return request.param


@pytest.fixture
def account(make_account):
    return make_account("llm-api")


@pytest.fixture
def free_key(account, make_key):
    return make_key(account, tier="free")


def get_balance(client, token):
    return client.get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {token}")


def without_request_id(response) -> dict:
    body = json.loads(response.content)  # not .json(): the test client caches that dict
    assert body["error"].pop("request_id") == response["X-Request-ID"]
    return body


def mid_minute():
    return timezone.now().replace(second=30, microsecond=0)


def test_free_key_gets_429_with_retry_after_after_ten_requests(client, free_key, backend):
    moment = mid_minute()
    window_end = int(moment.timestamp()) + 30

    with time_machine.travel(moment, tick=False):
        answers = [get_balance(client, free_key.token) for _ in range(11)]

    assert [a.status_code for a in answers] == [200] * 10 + [429]
    assert [a["x-ratelimit-remaining-requests"] for a in answers] == [
        *(str(n) for n in range(9, -1, -1)),
        "0",
    ]
    assert all(a["x-ratelimit-limit-requests"] == "10" for a in answers)
    assert all(a["x-ratelimit-reset-requests"] == str(window_end) for a in answers)
    refused = answers[-1]
    assert refused["Retry-After"] == "30"
    assert refused.json() == {
        "error": {
            "message": refused.json()["error"]["message"],
            "type": "rate_limit_error",
            "code": "429",
            "request_id": refused["X-Request-ID"],
        }
    }
    assert "Retry-After" not in answers[0]


def test_limit_resets_in_the_next_minute(client, free_key, backend):
    moment = mid_minute()
    with time_machine.travel(moment, tick=False):
        for _ in range(10):
            get_balance(client, free_key.token)
        assert get_balance(client, free_key.token).status_code == 429

    with time_machine.travel(moment + timedelta(seconds=30), tick=False):
        answer = get_balance(client, free_key.token)

    assert answer.status_code == 200
    assert answer["x-ratelimit-remaining-requests"] == "9"


def test_retry_after_is_at_least_one_second(client, free_key, backend):
    moment = mid_minute().replace(second=59, microsecond=900_000)
    with time_machine.travel(moment, tick=False):
        answers = [get_balance(client, free_key.token) for _ in range(11)]

    assert answers[-1].status_code == 429
    assert answers[-1]["Retry-After"] == "1"


def test_keys_are_limited_separately(client, account, make_key, backend):
    first, second = make_key(account), make_key(account)
    with time_machine.travel(mid_minute(), tick=False):
        for _ in range(10):
            get_balance(client, first.token)
        assert get_balance(client, first.token).status_code == 429

        assert get_balance(client, second.token).status_code == 200


def test_limit_is_the_plan_tier_limit(client, account, make_key, plans, db):
    elevated = make_key(account, tier="elevated")
    paid = make_key(account, tier="paid")

    assert get_balance(client, elevated.token)["x-ratelimit-limit-requests"] == "60"
    assert get_balance(client, paid.token)["x-ratelimit-limit-requests"] == "100"

    plans["llm-api"].rate_limits = {"free": 3, "paid": 250}
    plans["llm-api"].save()
    free = make_key(account, tier="free")
    assert get_balance(client, free.token)["x-ratelimit-limit-requests"] == "3"
    assert get_balance(client, paid.token)["x-ratelimit-limit-requests"] == "250"
    # A tier the plan does not name falls back to the settings.
    assert get_balance(client, elevated.token)["x-ratelimit-limit-requests"] == "60"


def test_plan_without_limits_uses_the_settings_tiers(client, make_account, make_key, settings):
    settings.RATE_LIMIT_TIERS = {"free": 4, "elevated": 40, "paid": 400}
    key = make_key(make_account("voice-prepaid"), tier="elevated")

    assert get_balance(client, key.token)["x-ratelimit-limit-requests"] == "40"


def test_every_answer_to_a_customer_key_carries_the_headers(client, free_key, backend):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {free_key.token}"}
    with time_machine.travel(mid_minute(), tick=False):
        answers = [
            client.get("/api/v1/balance", **auth),
            client.get("/api/v1/usage", **auth),
            client.get("/api/v1/pricing", **auth),
            client.post("/api/v1/authorize", {"feature": "sms"}, "application/json", **auth),
            client.post("/api/v1/authorize", {"feature": "?"}, "application/json", **auth),
            client.post("/api/v1/events", {"events": []}, "application/json", **auth),
            client.put("/api/v1/calls/c", {}, "application/json", **auth),
            client.post("/api/v1/calls/c/refund", {}, "application/json", **auth),
            client.post("/api/v1/authorize", "{", "application/json", **auth),
            client.get("/api/v1/balance", **auth),
            client.get("/api/v1/balance", **auth),
        ]

    assert [a.status_code for a in answers] == [
        200,
        200,
        200,
        200,
        400,
        403,
        403,
        403,
        400,
        200,
        429,
    ]
    for number, answer in enumerate(answers, start=1):
        assert all(name in answer for name in RATE_HEADERS), answer.status_code
        assert answer["x-ratelimit-remaining-requests"] == str(max(0, 10 - number))


def test_a_customer_key_asking_for_no_operation_is_counted_and_labelled(client, free_key, backend):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {free_key.token}"}
    with time_machine.travel(mid_minute(), tick=False):
        answers = [
            client.get("/api/v1/no-such-thing", **auth),
            client.delete("/api/v1/balance", **auth),
            client.get("/api/v1/calls/c", **auth),
            client.get("/api/v1/balance", **auth),
        ]

    assert [a.status_code for a in answers] == [404, 405, 405, 200]
    assert [a["x-ratelimit-remaining-requests"] for a in answers] == ["9", "8", "7", "6"]
    assert all(a["x-ratelimit-limit-requests"] == "10" for a in answers)
    assert answers[1]["Allow"] == "GET"


def test_a_customer_key_over_its_limit_gets_429_on_any_path(client, free_key, backend):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {free_key.token}"}
    with time_machine.travel(mid_minute(), tick=False):
        for _ in range(10):
            get_balance(client, free_key.token)
        unknown = client.get("/api/v1/no-such-thing", **auth)
        wrong_method = client.delete("/api/v1/balance", **auth)

    for answer in (unknown, wrong_method):
        assert answer.status_code == 429
        assert answer.json()["error"]["type"] == "rate_limit_error"
        assert answer["Retry-After"] == "30"
        assert answer["x-ratelimit-remaining-requests"] == "0"
    assert ratelimit.recent_429_counts([free_key.api_key.key_id]) == {free_key.api_key.key_id: 2}


def test_no_operation_answers_tell_a_caller_without_the_secret_nothing(
    client, free_key, make_key, backend
):
    key_id, secret = free_key.token.split(":")
    forged = f"{key_id}:{secret[:-1]}{'b' if secret[-1] == 'a' else 'a'}"
    revoked = make_key(free_key.api_key.account)
    revoked.api_key.revoked_at = timezone.now()
    revoked.api_key.save(update_fields=["revoked_at"])
    anonymous = client.get("/api/v1/no-such-thing")
    with time_machine.travel(mid_minute(), tick=False):
        answers = [
            client.get("/api/v1/no-such-thing", HTTP_AUTHORIZATION=authorization)
            for authorization in (
                f"Bearer {forged}",
                f"Bearer {revoked.token}",
                f"Bearer {make_key().token}",  # a platform key has no limit to report
                "Bearer not-a-key",
                "Basic abc",
            )
        ]
        after = get_balance(client, free_key.token)

    for answer in answers:
        assert answer.status_code == 404
        # The same answer, but for its own request id (issue 18).
        assert without_request_id(answer) == without_request_id(anonymous)
        assert not any(name in answer for name in RATE_HEADERS)
    # The forged key's requests spent nothing of the real key's limit.
    assert after["x-ratelimit-remaining-requests"] == "9"


def test_no_operation_answers_stay_404_while_the_database_is_out(
    client, free_key, backend, monkeypatch
):
    def database_out(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("usage.api.app.admit_key", database_out)

    answer = client.get("/api/v1/no-such-thing", HTTP_AUTHORIZATION=f"Bearer {free_key.token}")

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "404"


def test_refused_requests_are_counted_per_key_and_day(client, account, make_key, backend):
    limited, calm = make_key(account), make_key(account)
    moment = mid_minute()
    with time_machine.travel(moment, tick=False):
        for _ in range(13):
            get_balance(client, limited.token)
        get_balance(client, calm.token)

    counts = ratelimit.recent_429_counts([limited.api_key.key_id, calm.api_key.key_id], now=moment)

    assert counts == {limited.api_key.key_id: 3, calm.api_key.key_id: 0}
    long_after = moment + timedelta(days=8)
    assert ratelimit.recent_429_counts([limited.api_key.key_id], now=long_after) == {
        limited.api_key.key_id: 0
    }


def test_old_database_windows_are_deleted(db):
    now = timezone.now()
    window = int(now.timestamp() // 60)
    day = int(now.timestamp() // 86_400)
    for key_window in (
        window,
        window - 1,
        window - 2,
        window - 500,
        -day,
        -(day - 35),
        -(day - 36),
    ):
        RateLimitCounter.objects.create(key_id="mlk_old", window=key_window, count=1)

    ratelimit.delete_old_counters(now=now)

    kept = set(RateLimitCounter.objects.values_list("window", flat=True))
    assert kept == {window, window - 1, -day, -(day - 35)}


def test_unreachable_redis_fails_open_with_a_warning(client, free_key, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    with caplog.at_level(logging.WARNING, logger="usage.api.ratelimit"):
        answers = [get_balance(client, free_key.token) for _ in range(12)]

    assert [a.status_code for a in answers] == [200] * 12
    assert answers[-1]["x-ratelimit-limit-requests"] == "10"
    assert "Redis is unreachable" in caplog.text


def test_redis_counters_count_and_expire(redis_url):
    counters = ratelimit.RedisCounters(redis_url)
    key_id = f"mlk_test_{os.getpid()}_{time.monotonic_ns()}"
    window, day = 1_000, 20
    try:
        counts = [counters.incr_window(key_id, window, now=timezone.now()) for _ in range(3)]
        assert counts == [1, 2, 3]
        counters.incr_day(key_id, day)
        counters.incr_day(key_id, day)

        assert counters.day_counts([key_id], range(day, day + 1)) == {key_id: 2}
        window_ttl = counters.client.ttl(f"{ratelimit.REDIS_PREFIX}:{key_id}:{window}")
        day_ttl = counters.client.ttl(f"{ratelimit.REDIS_PREFIX}:429:{key_id}:{day}")
        assert 0 < window_ttl <= 2 * ratelimit.WINDOW_SECONDS
        assert 35 * ratelimit.DAY_SECONDS < day_ttl <= 36 * ratelimit.DAY_SECONDS
    finally:
        counters.client.delete(
            f"{ratelimit.REDIS_PREFIX}:{key_id}:{window}",
            f"{ratelimit.REDIS_PREFIX}:429:{key_id}:{day}",
        )


def test_redis_counters_load_their_script_again_when_redis_forgot_it(redis_url):
    # As after a Redis restart or a failover: EVALSHA answers NOSCRIPT.
    counters = ratelimit.RedisCounters(redis_url)
    counters.incr_and_expire.sha = "0" * 40
    key_id = f"mlk_test_{os.getpid()}_{time.monotonic_ns()}"
    try:
        assert counters.incr_window(key_id, 1_000, now=timezone.now()) == 1
        assert counters.incr_window(key_id, 1_000, now=timezone.now()) == 2
    finally:
        counters.client.delete(f"{ratelimit.REDIS_PREFIX}:{key_id}:1000")


@pytest.mark.django_db(transaction=True)
def test_database_counter_loses_no_update_under_concurrency(settings):
    settings.REDIS_URL = ""
    counters = ratelimit.DatabaseCounters()
    now = timezone.now()
    window = int(now.timestamp() // 60)
    seen: list[int] = []
    lock = threading.Lock()

    def worker():
        try:
            for _ in range(10):
                count = counters.incr_window("mlk_race", window, now=now)
                with lock:
                    seen.append(count)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Sequentially, 80 increments answer 1..80 once each; concurrency must not change that.
    assert sorted(seen) == list(range(1, 81))
    assert RateLimitCounter.objects.get(key_id="mlk_race", window=window).count == 80


# Across processes ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """`gunicorn config.wsgi -w 2` on the test database, stopped by its pid."""

    def __init__(self, *, log_path: Path, redis_url: str):
        self.log_path = log_path
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "DATABASE_URL": child_database_url(),
            "REDIS_URL": redis_url,
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            # Load Django before forking so that both workers answer as soon as they exist.
            "--preload",
            "--access-logfile",
            "-",
            "--access-logformat",
            "served-by %(p)s %(s)s %(U)s",
            # Several test runs may start gunicorn at once; they must not share its socket.
            "--no-control-socket",
        ]
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=BASE_DIR, env=env, stdout=log, stderr=log, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def served_by(self, log_text: str, path: str) -> set[str]:
        return set(re.findall(rf"served-by <?(\d+)>? \d+ {re.escape(path)}$", log_text, re.M))

    def wait_until_both_workers_answer(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gunicorn exited:\n{self.log()}")
            with ThreadPoolExecutor(max_workers=6) as pool:
                list(pool.map(lambda _: _status(f"{self.base_url}/api/v1/openapi.json"), range(6)))
            if len(self.served_by(self.log(), "/api/v1/openapi.json")) == 2:
                return
            time.sleep(0.2)
        pytest.fail(f"gunicorn did not start two workers:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # quick shutdown of master and workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def gunicorn(tmp_path):
    servers: list[Gunicorn] = []

    def start(*, redis_url: str) -> Gunicorn:
        server = Gunicorn(log_path=tmp_path / f"gunicorn-{len(servers)}.log", redis_url=redis_url)
        servers.append(server)
        server.wait_until_both_workers_answer()
        return server

    yield start
    for server in servers:
        server.stop()


def _status(url: str, token: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", ["database", "redis"])
def test_limit_holds_across_web_processes(gunicorn, make_account, make_key, store, request):
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else ""
    account = make_account("llm-api")
    server = gunicorn(redis_url=redis_url)
    url = f"{server.base_url}/api/v1/balance"

    # A batch counts only if it fell in one minute window and both workers answered part of
    # it; otherwise repeat it with a fresh key.
    for _attempt in range(5):
        key = make_key(account, tier="free")
        log_offset = len(server.log())
        window = int(time.time() // 60)
        with ThreadPoolExecutor(max_workers=15) as pool:
            statuses = list(pool.map(lambda _, token=key.token: _status(url, token), range(15)))
        time.sleep(0.3)  # the access log line is written just after the answer
        one_window = int(time.time() // 60) == window
        if one_window and len(server.served_by(server.log()[log_offset:], "/api/v1/balance")) == 2:
            break
    else:
        pytest.fail(f"no batch was served by both workers within one minute:\n{server.log()}")

    assert sorted(statuses) == [200] * 10 + [429] * 5


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/api/v1/no-such-thing", 404),
        ("put", "/api/v1/calls/a/b", 404),  # a call id containing "/"
        ("delete", "/api/v1/calls/a/b/refund", 404),
        ("patch", "/api/v1/", 404),
        ("post", "/api/v1/balance", 405),
        ("delete", "/api/v1/authorize", 405),
    ],
)
def test_an_unsafe_method_on_no_operation_is_a_counted_json_error_not_a_csrf_page(
    free_key, backend, method, path, status
):
    # A browser-like client that enforces CSRF, as the middleware does for every real request.
    client = Client(enforce_csrf_checks=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {free_key.token}"}
    with time_machine.travel(mid_minute(), tick=False):
        first = getattr(client, method)(path, **auth)
        second = getattr(client, method)(path, **auth)

    for answer in (first, second):
        assert answer.status_code == status, answer.content[:200]
        assert answer["Content-Type"] == "application/json"
        assert answer.json()["error"]["code"] == str(status)
    assert [a["x-ratelimit-remaining-requests"] for a in (first, second)] == ["9", "8"]
