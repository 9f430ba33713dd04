"""fpdf is loaded by the PDF views only (billing/admin.py pdf_view explains the 25 MB it costs)."""

import subprocess
import sys

PROBE = """
import sys, django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # imports every view module, as a web process does
import billing.tasks, billing.jobs, usage.jobs  # what a worker loads
print("fpdf" in sys.modules)
"""


def test_starting_a_web_or_worker_process_does_not_load_fpdf():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    assert result.stdout.strip().splitlines()[-1] == "False"
