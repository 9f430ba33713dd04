"""What a usage charge reads with the account's lock (usage.charging.lock).

The lock is what every report of one busy account waits for, so the state the charge and the
balance watchers need is read in the locking statement itself. These tests check that the
state read there is the state the charge acts on: auto-top-up and alert settings, expired
credit, open holds.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.ledger import posting
from billing.ledger.locks import lock_account
from billing.ledger.posting import Posting
from billing.models import AlertSettings, CreditGrant, EntryKind, TopUp, TopUpKind
from billing.payments.auto_topup import save_auto_topup_settings
from billing.payments.cards import add_test_card
from tests.billing.postings import post_entry
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    call,
    entries,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
)
from usage.charging.lock import lock_for_charge
from usage.ingest.calls import report_call
from usage.models import Call, Reservation
from usage.reports import Conflict


@pytest.fixture
def prepaid(make_account, django_capture_on_commit_callbacks):
    """voice-prepaid (0.08 USD a minute) with 10.05 USD and a card on file."""
    account = make_account("voice-prepaid", credit_micros=10 * USD + 50_000)
    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour="succeed", now=NOW)
    return account


def auto_topup(account, *, enabled: bool) -> None:
    save_auto_topup_settings(
        account=account,
        enabled=enabled,
        threshold_micros=10 * USD,
        amount_micros=20 * USD,
        now=NOW,
    )


def auto_topups(account) -> int:
    return TopUp.objects.filter(account=account, kind=TopUpKind.AUTO).count()


def test_a_call_that_takes_the_balance_below_the_auto_top_up_threshold_starts_one_top_up(
    prepaid,
):
    auto_topup(prepaid, enabled=True)

    report_call(report=call(prepaid, 60), now=NOW)  # 10.05 - 0.08: below 10 USD
    report_call(report=call(prepaid, 60), now=NOW)  # still below: the same crossing

    assert auto_topups(prepaid) == 1


def test_a_call_starts_no_top_up_when_auto_top_up_is_turned_off(prepaid):
    auto_topup(prepaid, enabled=False)

    report_call(report=call(prepaid, 60), now=NOW)

    assert auto_topups(prepaid) == 0


def test_a_call_that_takes_the_balance_below_the_alert_threshold_disarms_the_alert_once(
    prepaid,
):
    AlertSettings.objects.update_or_create(
        account=prepaid,
        defaults={"low_balance_threshold_micros": 10 * USD, "low_balance_armed": True},
    )

    report_call(report=call(prepaid, 60), now=NOW)
    report_call(report=call(prepaid, 60), now=NOW)

    settings = AlertSettings.objects.get(account=prepaid)
    assert (settings.low_balance_armed, settings.low_balance_crossings) == (False, 1)


def test_the_locking_statement_reads_expired_credit_and_open_holds(prepaid):
    post_entry(
        account=prepaid,
        amount_micros=USD,
        kind=EntryKind.PROMOTIONAL,
        now=NOW - timedelta(days=2),
        grant_expires_at=NOW - timedelta(minutes=1),
    )
    with transaction.atomic():
        lock = lock_for_charge(prepaid.pk)
    assert (lock.locked.grants.expired_micros(now=NOW), lock.has_open_holds) == (USD, False)

    Reservation.objects.create(
        public_id="hold_test",
        account=prepaid,
        call_id="held-call",
        amount_micros=0,
        max_seconds=60,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )
    with transaction.atomic():
        assert lock_for_charge(prepaid.pk).has_open_holds


def test_a_call_report_reads_settings_grants_and_holds_only_in_the_locking_statement(prepaid):
    auto_topup(prepaid, enabled=True)
    AlertSettings.objects.update_or_create(
        account=prepaid, defaults={"low_balance_threshold_micros": USD}
    )

    with CaptureQueriesContext(connection) as queries:
        report_call(report=call(prepaid, 60), now=NOW)

    tables = ("alertsettings", "autotopupsettings", "creditgrant", "usage_reservation")
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and any(table in q["sql"] for table in tables)
    ]
    # One statement, right after the lock: not the locking statement itself (usage.charging.lock).
    [read] = reads
    [lock] = [q["sql"] for q in queries.captured_queries if "accounts_account a WHERE" in q["sql"]]
    sqls = [q["sql"] for q in queries.captured_queries]
    assert sqls.index(read) == sqls.index(lock) + 1
    if connection.features.has_select_for_update:
        assert lock.endswith("FOR UPDATE")


# A first report of a call is not looked up again under the lock -------------------------------


def create_meanwhile(monkeypatch, **fields):
    """Make another report create the call after report_call looked for it, before the lock."""
    from usage.ingest import calls

    prepare = calls._prepare

    def prepare_then_create(**kwargs):
        prepared = prepare(**kwargs)
        report, now = kwargs["item"].report, kwargs["item"].now
        if not Call.objects.filter(call_id=report.call_id).exists():
            Call.objects.create(call_id=report.call_id, created_at=now, **fields)
        return prepared

    monkeypatch.setattr(calls, "_prepare", prepare_then_create)


def test_a_call_created_meanwhile_by_an_earlier_report_is_charged_once(prepaid, monkeypatch):
    create_meanwhile(monkeypatch, account=prepaid, status="in_progress", direction="inbound")

    result, changed = report_call(report=call(prepaid, 60, call_id="race"), now=NOW)

    assert changed
    assert (result.status, result.cost_micros) == ("completed", 80_000)
    assert Call.objects.filter(call_id="race").count() == 1
    assert [e.amount_micros for e in entries(prepaid, EntryKind.USAGE)] == [-80_000]
    assert balance(prepaid) == 10 * USD + 50_000 - 80_000


def test_a_call_created_meanwhile_for_another_account_is_a_conflict_and_charges_nothing(
    prepaid, make_account, monkeypatch
):
    other = make_account("voice-prepaid", credit_micros=USD)
    create_meanwhile(monkeypatch, account=other, status="in_progress", direction="inbound")

    with pytest.raises(Conflict):
        report_call(report=call(prepaid, 60, call_id="race"), now=NOW)

    assert entries(prepaid, EntryKind.USAGE) == []
    assert balance(prepaid) == 10 * USD + 50_000
    assert Call.objects.get(call_id="race").account == other


def test_a_call_spends_the_grants_read_with_the_lock_in_spending_order(prepaid):
    later = NOW + timedelta(days=20)
    sooner = NOW + timedelta(days=10)
    for expires_at, amount in ((later, 30_000), (sooner, 50_000)):
        post_entry(
            account=prepaid,
            amount_micros=amount,
            kind=EntryKind.PROMOTIONAL,
            now=NOW - timedelta(days=1),
            grant_expires_at=expires_at,
        )

    report_call(report=call(prepaid, 60), now=NOW)  # 0.08 USD

    remaining = dict(
        CreditGrant.objects.filter(account=prepaid).values_list("expires_at", "remaining_micros")
    )
    # The earliest expiry first, then the next; the credit that never expires is untouched.
    assert remaining == {sooner: 0, later: 0, None: 10 * USD + 50_000}


def test_a_new_final_call_is_written_once_after_its_ledger_entry_on_postgresql(prepaid):
    with CaptureQueriesContext(connection) as queries:
        result, _ = report_call(report=call(prepaid, 60), now=NOW)

    writes = [
        q["sql"].split(" ", 3)[:3]
        for q in queries.captured_queries
        if q["sql"].startswith(("INSERT", "UPDATE")) and "usage_call" in q["sql"].split("(")[0]
    ]
    if connection.vendor == "postgresql":
        # The id was drawn before the lock, so the row is written whole, once.
        assert writes == [["INSERT", "INTO", '"usage_call"']]
    else:
        assert len(writes) == 2  # inserted for its id, then completed
    result.refresh_from_db()
    [usage] = entries(prepaid, EntryKind.USAGE)
    assert (result.ledger_entry, usage.cause) == (usage, result)
    assert (result.charged_micros, result.cost_micros) == (80_000, 80_000)


@pytest.mark.slow
def test_what_is_read_with_the_lock_is_what_the_previous_holder_committed(
    transactional_db, make_account
):
    """The state is read by a statement after the lock, not by the locking one: a SELECT ...
    FOR UPDATE that waited returns its join's other rows from before the holder committed."""
    if connection.vendor != "postgresql":
        pytest.skip("Row locks: PostgreSQL only (SQLite locks the whole database).")
    account = make_account("voice-prepaid", credit_micros=USD)
    holder_has_lock, release = threading.Event(), threading.Event()
    seen = {}

    def holder():
        try:
            with transaction.atomic():
                posting.post_entries(
                    locked=lock_account(account.pk),
                    postings=[Posting(amount_micros=-1_000, kind=EntryKind.USAGE)],
                    now=NOW,
                )
                holder_has_lock.set()
                release.wait(10)
        finally:
            connection.close()

    def waiter():
        try:
            with transaction.atomic():
                locked = lock_for_charge(account.pk).locked
                seen["balance"] = locked.account.balance_micros
                seen["grants"] = sum(g.remaining_micros for g in locked.grants.grants)
        finally:
            connection.close()

    first = threading.Thread(target=holder)
    first.start()
    assert holder_has_lock.wait(10)
    second = threading.Thread(target=waiter)
    second.start()
    _wait_until_a_backend_waits_for_a_lock()
    release.set()
    first.join(10)
    second.join(10)

    assert seen == {"balance": USD - 1_000, "grants": USD - 1_000}


def _wait_until_a_backend_waits_for_a_lock() -> None:
    with connection.cursor() as cursor:
        for _ in range(100):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("The second transaction never waited for the lock.")
