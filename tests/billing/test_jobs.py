"""Scheduled jobs and the commands that run them by hand, as of the clock (SPEC O3, section 12).

Jobs read the clock (`timezone.now()`), so these tests move it with time-machine.
"""

import importlib
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.management import CommandError, call_command
from django.db.models import F
from django.utils.module_loading import import_string
from django_q.models import Schedule

from accounts.models import Account
from billing import jobs
from billing.models import (
    EntryKind,
    Invoice,
    InvoiceReason,
    InvoiceStatus,
    PaymentMethod,
)
from billing.models import (
    TestCardBehaviour as Card,
)
from tests.billing.postings import post_entry
from tests.billing.usage_reports import (
    USD,
    add_card,
    entries,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
    report_minutes,
    report_usage_of_458_usd,
)
from tests.conftest import NOW

LATER = NOW + timedelta(days=3)
AFTER_FIRST = datetime(2026, 4, 15, 1, 0, tzinfo=UTC)
# SPEC O3: the scheduled jobs and how often they run.
REQUIRED = {
    "Threshold invoicing": ("billing.jobs.invoice_thresholds", 30),
    "Period close": ("billing.jobs.close_periods", 60),
    "Reservation expiry": ("usage.jobs.release_holds", 5),
    "Credit expiry": ("billing.jobs.expire_credit", 60),
    "Dunning retries": ("billing.jobs.collect_invoices", 15),
    "Ledger check": ("billing.jobs.check_ledger", 24 * 60),
}


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def command(name: str, *args) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def threshold_account(make_account):
    account = make_account("voice-payg")
    add_card(account)
    report_usage_of_458_usd(account, now=LATER)
    return account


@pytest.fixture
def expiring_account(make_account):
    account = make_account("voice-prepaid")
    post_entry(
        account=account,
        amount_micros=5 * USD,
        kind=EntryKind.PROMOTIONAL,
        now=NOW,
        grant_expires_at=NOW + timedelta(days=7),
    )
    return account


@pytest.fixture
def declined_invoice(threshold_account):
    """A threshold invoice whose first charge was declined; the card works again since."""
    PaymentMethod.objects.filter(account=threshold_account).update(test_behaviour=Card.DECLINE)
    with at(LATER):
        jobs.invoice_thresholds()
    PaymentMethod.objects.filter(account=threshold_account).update(test_behaviour=Card.SUCCEED)
    invoice = Invoice.objects.get(account=threshold_account)
    assert invoice.status == InvoiceStatus.OPEN
    return invoice


class drift:
    """Make an account's cached balance disagree with its ledger, and put it right after."""

    def __init__(self, account: Account):
        self.account = account

    def __enter__(self):
        Account.objects.filter(pk=self.account.pk).update(balance_micros=F("balance_micros") + 1)

    def __exit__(self, *exc):
        Account.objects.filter(pk=self.account.pk).update(balance_micros=F("balance_micros") - 1)


# The jobs ---------------------------------------------------------------------------------------


def test_the_threshold_job_invoices_and_charges_as_of_the_clock(threshold_account):
    with at(LATER):
        assert jobs.invoice_thresholds() == "1 threshold invoice(s)"

    invoice = Invoice.objects.get(account=threshold_account)
    assert (invoice.reason, invoice.status, invoice.total_micros) == (
        InvoiceReason.THRESHOLD,
        InvoiceStatus.PAID,
        458 * USD,
    )
    assert invoice.issued_at == invoice.paid_at == LATER
    assert reload(threshold_account).balance_micros == 0
    with at(LATER + timedelta(minutes=30)):
        assert jobs.invoice_thresholds() == "0 threshold invoice(s)"


def test_the_period_close_job_closes_ended_periods_and_charges_their_invoices(make_account):
    account = make_account("voice-payg")
    add_card(account)
    report_minutes(account, 100, now=LATER)

    with at(AFTER_FIRST - timedelta(days=1)):
        assert jobs.close_periods() == "0 period(s) closed, 0 invoice(s) charged"
    with at(AFTER_FIRST):
        assert jobs.close_periods() == "1 period(s) closed, 1 invoice(s) charged"
    with at(AFTER_FIRST + timedelta(hours=1)):
        assert jobs.close_periods() == "0 period(s) closed, 0 invoice(s) charged"

    [invoice] = Invoice.objects.filter(account=account)
    assert (invoice.status, invoice.created_at) == (InvoiceStatus.PAID, AFTER_FIRST)
    assert len(entries(account, EntryKind.INVOICE_PAYMENT)) == 1


def test_the_credit_expiry_job_writes_off_credit_past_its_expiry(expiring_account):
    with at(NOW + timedelta(days=6)):
        assert jobs.expire_credit() == "credit expired on 0 account(s)"
    with at(NOW + timedelta(days=7)):
        assert jobs.expire_credit() == "credit expired on 1 account(s)"
        assert jobs.expire_credit() == "credit expired on 0 account(s)"

    [expiry] = entries(expiring_account, EntryKind.EXPIRY)
    assert (expiry.amount_micros, expiry.created_at) == (-5 * USD, NOW + timedelta(days=7))
    assert reload(expiring_account).balance_micros == 0


def test_the_dunning_job_retries_declined_invoices_when_they_are_due(declined_invoice):
    with at(LATER + timedelta(hours=23)):
        assert jobs.collect_invoices() == "0 invoice(s) charged"
    with at(LATER + timedelta(days=1)):
        assert jobs.collect_invoices() == "1 invoice(s) charged"

    invoice = Invoice.objects.get(pk=declined_invoice.pk)
    assert invoice.status == InvoiceStatus.PAID
    assert reload(invoice.account).past_due_since is None


def test_the_ledger_check_job_is_quiet_when_every_balance_matches(make_account, settings):
    settings.STAFF_ALERT_EMAILS = ["finance@example.test"]
    make_account("voice-prepaid", credit_micros=20 * USD)

    assert jobs.check_ledger() == "0 account(s) drift"
    assert [m for m in mail.outbox if "drift" in m.subject] == []


def test_the_ledger_check_job_emails_staff_about_drift(make_account, settings):
    settings.STAFF_ALERT_EMAILS = ["finance@example.test", "ops@example.test"]
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    mail.outbox.clear()

    with drift(account):
        assert jobs.check_ledger() == "1 account(s) drift"

    [alert] = mail.outbox
    assert alert.to == ["finance@example.test", "ops@example.test"]
    assert alert.subject == "Meterline: 1 account(s) drift from their ledger"
    assert f"{account.public_id}: cached 20000001, ledger 20000000" in alert.body


def test_the_ledger_check_job_emails_the_admins_when_no_staff_address_is_set(
    make_account, settings
):
    settings.STAFF_ALERT_EMAILS = []
    settings.ADMINS = [("Operator", "admin@example.test")]
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    mail.outbox.clear()

    with drift(account):
        jobs.check_ledger()

    [alert] = mail.outbox
    assert alert.to == ["admin@example.test"]
    assert "drift" in alert.subject


@pytest.mark.parametrize("name", sorted(jobs.SCHEDULES))
def test_every_scheduled_job_runs_on_a_quiet_database(db, name):
    function, _ = jobs.SCHEDULES[name]

    with at(AFTER_FIRST):
        result = import_string(function)()

    assert isinstance(result, str)
    assert result


# The commands -----------------------------------------------------------------------------------


def test_invoice_thresholds_command_invoices_as_of_now(threshold_account):
    with at(LATER):
        assert command("invoice_thresholds") == "1 threshold invoice(s)\n"

    assert Invoice.objects.get(account=threshold_account).status == InvoiceStatus.PAID


def test_close_periods_command_closes_as_of_now(make_account):
    account = make_account("voice-prepaid", credit_micros=20 * USD)

    with at(AFTER_FIRST):
        assert command("close_periods") == "1 period(s) closed, 0 invoice(s) charged\n"

    assert Invoice.objects.get(account=account).closing_balance_micros == 20 * USD


def test_expire_credit_command_expires_as_of_now(expiring_account):
    with at(NOW + timedelta(days=8)):
        assert command("expire_credit") == "credit expired on 1 account(s)\n"


def test_collect_invoices_command_charges_what_is_due_now(declined_invoice):
    with at(LATER + timedelta(days=1)):
        assert command("collect_invoices") == "1 invoice(s) charged\n"


def test_buy_recurring_credit_command_buys_the_period_that_began_once(
    make_account, django_capture_on_commit_callbacks
):
    from billing.models import RecurringCreditSettings

    account = make_account("credits-monthly")
    add_card(account)
    RecurringCreditSettings.objects.create(account=account, enabled=True, amount_micros=25 * USD)

    with at(AFTER_FIRST), django_capture_on_commit_callbacks(execute=True):
        assert command("buy_recurring_credit") == "1 recurring credit purchase(s) started\n"
        assert command("buy_recurring_credit") == "0 recurring credit purchase(s) started\n"

    assert [e.amount_micros for e in entries(account, EntryKind.RECURRING_TOPUP)] == [25 * USD]


def test_check_ledger_command_passes_when_balances_match_their_ledger(make_account):
    make_account("voice-prepaid", credit_micros=20 * USD)

    assert "Ledger OK" in command("check_ledger")


def test_check_ledger_command_fails_and_lists_drifting_accounts(make_account):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    errors = StringIO()

    with drift(account), pytest.raises(CommandError, match="1 account"):
        call_command("check_ledger", stdout=StringIO(), stderr=errors)

    assert account.public_id in errors.getvalue()


@pytest.mark.parametrize("name", sorted(jobs.SCHEDULES))
def test_every_scheduled_job_has_a_command_of_its_name(db, name):
    function, _ = jobs.SCHEDULES[name]
    job = function.rsplit(".", 1)[1]

    with at(AFTER_FIRST):
        assert command(job).strip()


# Schedules --------------------------------------------------------------------------------------


def schedules() -> dict[str, tuple[str, int]]:
    return {s.name: (s.func, s.minutes) for s in Schedule.objects.all()}


def test_setup_schedules_registers_every_job_and_is_idempotent(db):
    assert command("setup_schedules") == f"{len(jobs.SCHEDULES)} schedules registered.\n"
    first = list(Schedule.objects.order_by("pk").values_list("pk", "name"))
    command("setup_schedules")

    assert Schedule.objects.count() == len(jobs.SCHEDULES)
    assert list(Schedule.objects.order_by("pk").values_list("pk", "name")) == first
    assert schedules() == jobs.SCHEDULES
    assert set(Schedule.objects.values_list("repeats", flat=True)) == {-1}
    assert {name: s for name, s in schedules().items() if name in REQUIRED} == REQUIRED


def test_setup_schedules_puts_back_a_schedule_staff_changed_or_deleted(db):
    command("setup_schedules")
    Schedule.objects.filter(name="Period close").update(minutes=5)
    Schedule.objects.filter(name="Ledger check").delete()

    command("setup_schedules")

    assert schedules() == jobs.SCHEDULES


def test_the_migration_registers_the_schedules(db):
    from django.apps import apps

    migration = importlib.import_module("billing.migrations.0005_register_schedules")
    Schedule.objects.all().delete()

    migration.forwards(apps, schema_editor=None)
    migration.forwards(apps, schema_editor=None)

    assert schedules() == jobs.SCHEDULES
