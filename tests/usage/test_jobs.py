"""Usage's scheduled job and its command, as of the clock (SPEC O3); billing's: tests/billing."""

from datetime import timedelta
from io import StringIO

import time_machine
from django.core.management import call_command

from tests.conftest import NOW
from tests.usage import metering
from tests.usage.metering import (
    held,
    no_ledger_drift,  # noqa: F401 - autouse
)
from usage import jobs

held_account = metering.held_account  # a fixture


def test_the_hold_release_job_frees_credit_held_by_calls_that_never_reported(held_account):
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        assert jobs.release_holds() == "0 hold(s) released"
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert jobs.release_holds() == "1 hold(s) released"

    assert held(held_account) == 0


def test_release_holds_command_releases_as_of_now(held_account):
    out = StringIO()

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        call_command("release_holds", stdout=out, stderr=StringIO())

    assert out.getvalue() == "1 hold(s) released\n"
