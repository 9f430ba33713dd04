"""Run Python code against `config.settings` in a subprocess, with the environment a host has.

The test settings force DEBUG on and fix other values at import time, so settings read from the
environment are tested by loading them afresh in a child process.
"""

import os
import subprocess
import sys

from django.conf import settings

# What the test run (or the developer's shell) set that a host would not.
_DROPPED_PREFIXES = ("DJANGO_", "DEBUG", "SECURE_", "SESSION_", "CSRF_", "METERLINE_", "Q_")


def run_settings_probe(code: str, **environment: str) -> subprocess.CompletedProcess:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES) and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **environment)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
