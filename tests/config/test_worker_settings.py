"""Background worker limits come from the environment (SPEC O1) and refuse a retry that is too
short: django-q2 would deliver a task still running to a second worker."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

_PROBE = """
import django
django.setup()
from django.conf import settings
print(settings.Q_CLUSTER["timeout"], settings.Q_CLUSTER["retry"])
"""


def load_settings(**environment):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "Q_")) and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **environment)
    return subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, "600 900"), ({"Q_TIMEOUT": "1800"}, "1800 2100"), ({"Q_RETRY": "1200"}, "600 1200")],
)
def test_task_timeout_and_retry_come_from_the_environment(environment, expected):
    result = load_settings(**environment)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == expected


def test_a_retry_not_longer_than_the_timeout_is_refused_with_a_clear_message():
    result = load_settings(Q_TIMEOUT="1800", Q_RETRY="900")

    assert result.returncode != 0
    assert "Q_RETRY (900 s) must be longer than Q_TIMEOUT (1800 s)" in result.stderr
