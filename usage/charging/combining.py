"""Group commit per account (flat combining): one holder charges every waiting report at once.

WARNING (locking): one busy account's reports used to queue on its row lock and each held it
for a transaction of its own (eight statements and a WAL flush). Here a report first tries to
take the account's charge turn, a transaction-level advisory lock taken before the row lock
(usage.reads.pending, with the pending reports in the same statement):
- it gets the turn: it charges the reports other requests left pending for the account, in
  the order they arrived, then its own, all in one transaction under one row lock (one balance
  update, one rollup upsert), writes each pending report's outcome, and commits once;
- it does not: it leaves its report as a `PendingCharge` row (committed at once, so that the
  holder sees it), waits until the holder's transaction ends, and reads its outcome. If the
  row is still pending (it came after the holder read the pending rows, or the holder died
  and its transaction rolled back), it tries to take the turn itself; so a dead holder's
  reports are charged by the next one, once and only once: its outcome is written in the
  transaction that charges it.
The turn is taken with a try, never waited for, so no request waits for the turn while others
wait for it; all waiting is on the lock in shared mode, which every waiter gets together.

Only PostgreSQL has advisory locks; elsewhere (SQLite, one writer anyway) a report is charged
in a transaction of its own, through the same `charge` function.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from billing.db.advisory import available, wait_until_free
from billing.db.row_updates import update_by_pk
from usage.models import PendingCharge
from usage.reads.pending import take_turn

# The namespace of charge-turn advisory locks: the key is the account's id.
LOCK_NAMESPACE = 20_001
# Reports one holder takes in one transaction: more would hold the row lock long enough to
# delay the account's other writers (top-ups, refunds) noticeably.
MAX_REPORTS = 200


@dataclass(frozen=True)
class Answer:
    """A pending report's outcome as stored for its request: `outcome` (> 0, the caller's
    code) and an integer `value` (say, the id of the row the charge wrote)."""

    outcome: int
    value: int | None = None


def charge_combined(
    *,
    account_id: int,
    report: dict,
    charge: Callable[[Sequence[dict]], list[Any]],
    answer: Callable[[Any], Answer],
) -> Any:
    """Charge `report` (JSON-able) to the account, together with the reports of other
    requests waiting for the account.

    `charge(reports)` is called inside the transaction that holds the account's charge turn;
    it locks the account and returns one result per report, in order, and must not raise for
    one report's fault (see usage.ingest.calls). `answer(result)` is what a waiting request
    reads of its result. Return this report's result when this request charged it, else the
    `Answer` the request that charged it wrote.
    """
    if not available():
        with transaction.atomic():
            return charge([report])[0]
    with transaction.atomic():
        rows = take_turn(namespace=LOCK_NAMESPACE, account_id=account_id, limit=MAX_REPORTS)
        if rows is not None:
            return _charge_pending(rows, charge, answer, own=report)
    pending = PendingCharge.objects.create(account_id=account_id, report=report)
    while True:
        wait_until_free(namespace=LOCK_NAMESPACE, key=account_id)
        done = _answer_of(pending.pk)
        if done is not None:
            return done
        with transaction.atomic():
            rows = take_turn(namespace=LOCK_NAMESPACE, account_id=account_id, limit=MAX_REPORTS)
            if rows is not None:
                return _charge_pending(rows, charge, answer, own_pk=pending.pk)


def _charge_pending(rows, charge, answer, *, own: dict | None = None, own_pk=None):
    """Charge the pending `rows` (and `own`, last); the turn is held."""
    if own_pk is not None and own_pk not in {pk for pk, _ in rows}:
        # More than MAX_REPORTS came before it: charge those first, its turn comes next.
        rows = rows[: MAX_REPORTS - 1] + list(
            PendingCharge.objects.filter(pk=own_pk).values_list("pk", "report")
        )
    reports = [report for _, report in rows] + ([own] if own is not None else [])
    results = charge(reports)
    answers = {pk: answer(result) for (pk, _), result in zip(rows, results, strict=False)}
    if answers:
        update_by_pk(PendingCharge, "outcome", {pk: a.outcome for pk, a in answers.items()})
        values = {pk: a.value for pk, a in answers.items() if a.value is not None}
        update_by_pk(PendingCharge, "value", values)
    if own is not None:
        return results[-1]
    own_result = results[[pk for pk, _ in rows].index(own_pk)]
    # The holder's own row is answered in memory: it needs no row any more.
    PendingCharge.objects.filter(pk=own_pk).delete()
    return own_result


def _answer_of(pk: int) -> Answer | None:
    row = PendingCharge.objects.filter(pk=pk).exclude(outcome=0).values_list("outcome", "value")
    found = row.first()
    if found is None:
        return None
    PendingCharge.objects.filter(pk=pk).delete()
    return Answer(outcome=found[0], value=found[1])
