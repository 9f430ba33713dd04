"""A real django-q2 task worker (`manage.py qcluster`) on the test's own database and broker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.child_processes import child_database_url

BASE_DIR = Path(django_settings.BASE_DIR)


class Worker:
    """`manage.py qcluster` with one worker process, stopped by its process group's id."""

    def __init__(self, *, log_path: Path):
        self.log_path = log_path
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "DATABASE_URL": child_database_url(),
            "REDIS_URL": django_settings.REDIS_URL,
            "Q_WORKERS": "1",
        }
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """Kill the cluster outright (sentinel, workers, monitor, pusher), as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


@pytest.fixture
def task_worker(tmp_path):
    workers: list[Worker] = []

    def start() -> Worker:
        worker = Worker(log_path=tmp_path / f"qcluster-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()


def wait_for(condition, *, seconds: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {seconds} s\n{log()}")
