"""Background worker limits come from the environment (SPEC O1) and refuse a retry that is too
short: django-q2 would deliver a task still running to a second worker."""

import pytest

from tests.settings_probe import run_settings_probe

_PROBE = """
import django
django.setup()
from django.conf import settings
print(settings.Q_CLUSTER["timeout"], settings.Q_CLUSTER["retry"])
"""


def load_settings(**environment):
    return run_settings_probe(_PROBE, **environment)


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
