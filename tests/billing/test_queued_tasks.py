"""Queued work survives moves (requirement 6): tasks and schedules name stable entry points that
take keywords, and the paths of work queued before a move still run, resolved as django-q2's
worker resolves them (pydoc.locate) and called with the arguments they were queued with."""

import importlib
import inspect
import pydoc
import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine
from django.apps import apps
from django.conf import settings as django_settings
from django.utils.module_loading import import_string
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from billing import jobs, tasks
from billing.invoicing.invoices import invoice_thresholds
from billing.models import (
    AutoTopUpSettings,
    EntryKind,
    Invoice,
    InvoiceStatus,
    Notification,
    NotificationStatus,
    PaymentMethod,
    TopUp,
    TopUpStatus,
)
from billing.moved_paths import MOVED
from billing.payments.auto_topup import save_auto_topup_settings
from billing.payments.cards import add_test_card
from billing.payments.collection import collect_due_invoices, collect_invoice
from billing.task_queue import enqueue
from tests.billing.postings import post_entry
from tests.billing.usage_reports import (
    USD,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
    report_usage_of_458_usd,
)
from tests.conftest import NOW
from tests.usage import metering

held_account = metering.held_account  # a fixture


def run_in_worker(func: str, *args, **kwargs) -> str:
    """Run a queued task as a django-q2 worker does and return its result.

    sync=True makes django-q2 pass the task through its own worker code in this process: the
    dotted path is resolved with pydoc.locate, then called with the queued arguments; a path
    that does not resolve, or a call that fails, raises here.
    """
    task_id = async_task(func, *args, sync=True, **kwargs)
    task = Task.objects.get(id=task_id)
    assert task.success, task.result
    return task.result


@pytest.fixture
def queued_tasks(monkeypatch):
    """Capture what is queued for the task worker instead of queueing it."""
    captured = []
    monkeypatch.setattr(
        "billing.task_queue.async_task", lambda func, **kwargs: captured.append((func, kwargs))
    )
    return captured


@pytest.fixture
def pending_auto_topup(make_account, queued_tasks, settings, django_capture_on_commit_callbacks):
    """A 20 USD auto-top-up whose charge was queued and has not run yet."""
    account = make_account("voice-prepaid", credit_micros=30 * USD)
    add_test_card(account=account, behaviour="succeed", now=NOW)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )
    settings.PAYMENTS_SYNC = False  # queued, as in production
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        post_entry(account=account, amount_micros=-25 * USD, kind=EntryKind.USAGE, now=NOW)
    topup = TopUp.objects.get(account=account)
    assert topup.status == TopUpStatus.PENDING
    return topup


@pytest.fixture
def pending_notifications(make_account):
    """Two recorded receipts, not sent yet."""
    account = make_account("voice-prepaid")
    return [
        Notification.objects.create(
            account=account, kind="topup_receipt", key=f"queued-{n}", context={"amount": "$5"}
        )
        for n in (1, 2)
    ]


def statuses(notifications) -> list[str]:
    return [Notification.objects.get(pk=n.pk).status for n in notifications]


# Entry points ------------------------------------------------------------------------------------

ENTRY_POINTS = [
    *(f"billing.tasks.{name}" for name, _ in inspect.getmembers(tasks, inspect.isfunction)),
    *(func for func, _ in jobs.SCHEDULES.values()),
]


@pytest.mark.parametrize("path", ENTRY_POINTS)
def test_every_entry_point_takes_keywords_only_and_ignores_unknown_ones(path):
    parameters = inspect.signature(import_string(path)).parameters.values()

    kinds = {p.kind for p in parameters}

    assert kinds <= {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD}
    assert inspect.Parameter.VAR_KEYWORD in kinds


def test_tasks_are_queued_by_their_stable_path_with_keywords(pending_auto_topup, queued_tasks):
    assert ("billing.tasks.charge_auto_topup", {"topup_id": pending_auto_topup.pk}) in queued_tasks


def test_a_card_change_is_queued_by_its_stable_path(
    make_account, queued_tasks, settings, django_capture_on_commit_callbacks
):
    settings.PAYMENTS_SYNC = False
    account = make_account("voice-payg")

    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour="succeed", now=NOW)

    assert queued_tasks == [("billing.tasks.card_changed", {"account_id": account.pk})]


def test_arguments_django_q2_would_keep_for_itself_are_refused(queued_tasks):
    with pytest.raises(ValueError, match="django-q2 options"):
        enqueue("billing.tasks.send_notification", notification_id=1, timeout=5)

    assert queued_tasks == []


def test_a_stable_path_runs_in_the_worker_and_ignores_what_it_does_not_know(
    pending_notifications, mailoutbox
):
    notice = pending_notifications[0]

    result = run_in_worker(
        "billing.tasks.send_notification", notification_id=notice.pk, sent_by="a newer release"
    )

    assert result == "sent"
    assert statuses([notice]) == [NotificationStatus.SENT]
    assert len(mailoutbox) == 1


# Paths queued before the moves -------------------------------------------------------------------


def test_an_auto_top_up_charge_queued_before_the_move_still_charges(pending_auto_topup):
    result = run_in_worker("billing.auto_topup.charge_auto_topup", pending_auto_topup.pk)

    pending_auto_topup.refresh_from_db()
    assert pending_auto_topup.status == TopUpStatus.SUCCEEDED
    assert result == f"Auto-top-up {pending_auto_topup.public_id}: succeeded"
    assert reload(pending_auto_topup.account).balance_micros == 25 * USD


def test_a_card_change_queued_before_the_move_still_runs(make_account):
    account = make_account("voice-payg")

    assert run_in_worker("billing.cards.card_changed", account.pk) == "0 invoice(s) retried"


def test_a_notification_queued_before_the_move_is_still_sent(pending_notifications, mailoutbox):
    notice = pending_notifications[0]

    assert run_in_worker("billing.notifications.send_notification", notice.pk) == "sent"

    assert statuses([notice]) == [NotificationStatus.SENT]
    assert len(mailoutbox) == 1


def test_notifications_queued_together_before_the_move_are_still_sent(
    pending_notifications, mailoutbox
):
    ids = [n.pk for n in pending_notifications]

    assert run_in_worker("billing.notifications.send_notifications", ids) == "2 of 2 sent"

    assert statuses(pending_notifications) == [NotificationStatus.SENT] * 2
    assert len(mailoutbox) == 2


def test_a_schedule_of_a_job_that_moved_still_runs(held_account):
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert run_in_worker("billing.jobs.release_holds") == "1 hold(s) released"

    assert reload(held_account).held_micros == 0


def test_every_old_path_resolves_to_a_stable_entry_point():
    for old, (new, _) in MOVED.items():
        assert pydoc.locate(old) is not None, old
        assert new in ENTRY_POINTS, new


@pytest.mark.parametrize(
    "path",
    [
        "billing.auto_topup.refund",  # a module that moved, a name it never had
        "billing.notifications.no_such_task",
        "billing.jobs.no_such_job",
        "billing.no_such_module.task",
    ],
)
def test_a_path_that_never_existed_still_does_not_resolve(path):
    assert pydoc.locate(path) is None


def test_the_moved_paths_do_not_stand_in_for_modules_that_exist():
    # Importing a submodule asks the package's __getattr__ first: it must say no.
    code = (
        "import types\n"
        "from billing import notifications\n"
        "assert isinstance(notifications, types.ModuleType), notifications\n"
        "assert notifications.__name__ == 'billing.notifications'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=django_settings.BASE_DIR)


# The schedules -----------------------------------------------------------------------------------


def test_the_migration_points_schedules_at_the_job_s_new_path(db):
    migration = importlib.import_module("billing.migrations.0013_schedules_name_stable_job_paths")
    Schedule.objects.all().delete()
    moved = Schedule.objects.create(name="Reservation expiry", func="billing.jobs.release_holds")
    kept = Schedule.objects.create(name="Period close", func="billing.jobs.close_periods")

    migration.forwards(apps, schema_editor=None)

    assert Schedule.objects.get(pk=moved.pk).func == "usage.jobs.release_holds"
    assert Schedule.objects.get(pk=kept.pk).func == "billing.jobs.close_periods"

    migration.backwards(apps, schema_editor=None)

    assert Schedule.objects.get(pk=moved.pk).func == "billing.jobs.release_holds"


# Follow-ups that outlive a lost task (issue 14 item 8) -------------------------------------------


def test_a_card_change_whose_task_is_lost_is_collected_by_the_next_dunning_run(
    make_account, queued_tasks, settings, django_capture_on_commit_callbacks
):
    account = make_account("voice-payg")
    PaymentMethod.objects.create(
        account=account, gateway_id="test_pm_declines", is_default=True, test_behaviour="decline"
    )
    report_usage_of_458_usd(account, now=NOW)
    [invoice] = invoice_thresholds(now=NOW)
    collect_invoice(invoice_id=invoice.pk, now=NOW)
    assert reload(account).past_due_since == NOW
    settings.PAYMENTS_SYNC = False  # queued, as in production
    changed_at = NOW + timedelta(hours=1)

    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour="succeed", now=changed_at)
    assert queued_tasks == [("billing.tasks.card_changed", {"account_id": account.pk})]
    # The worker that took the task was killed: it never runs. The next dunning run (every 15
    # minutes) finds the invoice due since the card change.
    collected = collect_due_invoices(now=changed_at + timedelta(minutes=15))

    assert collected == 1
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID
    assert reload(account).past_due_since is None


def test_a_card_change_re_arms_auto_top_up_without_waiting_for_its_task(
    make_account, queued_tasks, settings, django_capture_on_commit_callbacks
):
    account = make_account("voice-prepaid", credit_micros=30 * USD)
    add_test_card(account=account, behaviour="decline", now=NOW)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )
    AutoTopUpSettings.objects.filter(account=account).update(
        armed=False, consecutive_failures=3, next_attempt_at=None
    )
    settings.PAYMENTS_SYNC = False

    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour="succeed", now=NOW)

    row = AutoTopUpSettings.objects.get(account=account)
    assert (row.armed, row.consecutive_failures) == (True, 0)
