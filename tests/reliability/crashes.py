"""Killing a worker at a chosen point of a job, for the crash tests.

`run_until_killed(job, kill_point)` forks a child that arms the kill point and runs `job()`; the
kill point sends the child SIGKILL when the job reaches it, so nothing of the child's Python runs
afterwards: no `finally`, no rollback, no on-commit callback. The parent asserts the child died
that way, so a test whose job never reached its kill point fails instead of passing vacuously.

Kill points hook into what every implementation of a job must do, not into its private helpers:
the database (an INSERT into a table, a COMMIT, seen through Django's connection) and the
payment gateway (`settings.PAYMENT_GATEWAY`, replaced here by `RecordingGateway`).

`RecordingGateway` answers like the test-mode gateway, but remembers its answers in a file shared
by every process of the test, as Stripe remembers idempotency keys for a day: a crashed worker's
retry gets the first answer. Every call is logged, so a test can count the charges really made.
`mail_sent()` reads the file email backend's output, which also survives the killed child.
"""

import fcntl
import json
import multiprocessing
import os
import re
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connections

from billing.payments.gateway.protocol import ChargeOutcome
from billing.payments.gateway.test_mode import TestModeGateway

JOB_TIMEOUT_SECONDS = 60


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# Kill points ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Where the child dies: `before_commit` / `after_commit` of the first transaction that
    inserted into `table`, or `after_charge`: right after the gateway made a new charge."""

    where: str
    table: str = ""

    def arm(self) -> None:
        if self.where == "after_charge":
            RecordingGateway.kill_after_charge = True
            return
        connection = connections["default"]
        insert = re.compile(rf'^\s*INSERT INTO "?{re.escape(self.table)}"?[\s(]', re.IGNORECASE)
        wrote = []

        def watch(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if insert.match(sql):
                wrote.append(sql)
            return result

        real_commit, real_rollback = connection._commit, connection._rollback

        def wrote_rows() -> bool:
            if wrote:
                return True
            if connection.vendor != "postgresql":
                return False
            # Rows may go in by COPY (billing.db.bulk_insert), which Django's execute wrappers
            # never see: ask PostgreSQL whether this transaction wrote any row of the table.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {connection.ops.quote_name(self.table)} "
                    "WHERE xmin::text = (txid_current_if_assigned() %% 4294967296)::text)",
                    [],  # with parameters, so that %% is read as one %
                )
                return cursor.fetchone()[0]

        def commit():
            written = wrote_rows()  # asked before the commit ends the transaction
            if written and self.where == "before_commit":
                _die()  # the rows are written, the transaction is not committed
            real_commit()
            if written and self.where == "after_commit":
                _die()  # committed; nothing that runs after the commit happens

        def rollback():
            wrote.clear()
            real_rollback()

        connection.execute_wrappers.append(watch)
        connection._commit = commit
        connection._rollback = rollback

    def __str__(self) -> str:
        return f"{self.where}:{self.table}" if self.table else self.where


def _child(job, kill_point: KillPoint) -> None:
    # The child opens its own connection (see tests.usage.metering.in_processes).
    connections.close_all()
    kill_point.arm()
    job()
    connections.close_all()


def run_until_killed(job, kill_point: KillPoint) -> None:
    """Run `job()` in a forked child that is killed at `kill_point`; fail if it is not."""
    connections.close_all()
    process = multiprocessing.get_context("fork").Process(target=_child, args=(job, kill_point))
    process.start()
    process.join(JOB_TIMEOUT_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
    assert process.exitcode == -signal.SIGKILL, (
        f"the job ended with exit code {process.exitcode} without reaching {kill_point}"
    )


# A gateway that outlives the worker ----------------------------------------------------------


class RecordingGateway(TestModeGateway):
    """The test-mode gateway with Stripe's idempotency across processes, and a call log of its
    charges; its other operations are the test-mode gateway's."""

    path: Path | None = None  # the JSON-lines log, set by the `recording_gateway` fixture
    kill_after_charge = False

    def charge_saved_card(
        self, *, account, amount_micros, idempotency_key, description, metadata=None
    ) -> ChargeOutcome:
        with self._locked() as log:
            known = {c["key"]: c for c in _read(log) if c["new"]}
            first = known.get(idempotency_key)
            if first is not None:
                outcome = ChargeOutcome(**first["outcome"])
            else:
                fresh = TestModeGateway()
                fresh._results = {}  # this log, not the process's memory, remembers answers
                outcome = fresh.charge_saved_card(
                    account=account,
                    amount_micros=amount_micros,
                    idempotency_key=idempotency_key,
                    description=description,
                    metadata=metadata,
                )
            log.write(
                json.dumps(
                    {
                        "key": idempotency_key,
                        "account": account.public_id,
                        "amount_micros": amount_micros,
                        "new": first is None,
                        "outcome": outcome.__dict__,
                    }
                )
                + "\n"
            )
            log.flush()
        if first is None and self.kill_after_charge:
            _die()  # the card is charged; our database does not know it yet
        return outcome

    @classmethod
    @contextmanager
    def _locked(cls):
        with open(cls.path, "a+") as log:
            fcntl.flock(log, fcntl.LOCK_EX)
            try:
                log.seek(0)
                yield log
            finally:
                fcntl.flock(log, fcntl.LOCK_UN)

    @classmethod
    def calls(cls) -> list[dict]:
        if cls.path is None or not cls.path.exists():
            return []
        with open(cls.path) as log:
            return _read(log)

    @classmethod
    def charges(cls) -> list[dict]:
        """The charges really made: first calls with a key that moved money."""
        return [c for c in cls.calls() if c["new"] and c["outcome"]["status"] == "succeeded"]


def _read(log) -> list[dict]:
    return [json.loads(line) for line in log.read().splitlines() if line.strip()]


def mail_sent() -> list[str]:
    """The notification key of every email the file backend wrote, in every process."""
    folder = Path(settings.EMAIL_FILE_PATH)
    keys = []
    for path in sorted(folder.glob("*.log")):
        keys += re.findall(r"^X-Meterline-Notification: (.+)$", path.read_text(), re.MULTILINE)
    return keys
