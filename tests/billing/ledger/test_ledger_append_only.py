"""Ledger entries are append-only in the model and in the database (SPEC L2), and the ledger
check command finds drift (SPEC L3)."""

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import AppendOnlyError, EntryKind, LedgerEntry
from tests.billing.postings import post_entry

USD = 1_000_000


@pytest.fixture
def entry(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    return post_entry(account=account, amount_micros=20 * USD, kind=EntryKind.TOPUP, now=now)


def stored(entry):
    return LedgerEntry.objects.filter(pk=entry.pk).values_list("amount_micros", flat=True).get()


def test_saving_an_existing_entry_again_raises(entry):
    entry = LedgerEntry.objects.get(pk=entry.pk)
    entry.amount_micros = 1

    with pytest.raises(AppendOnlyError):
        entry.save()

    assert stored(entry) == 20 * USD


def test_deleting_an_entry_raises(entry):
    entry = LedgerEntry.objects.get(pk=entry.pk)

    with pytest.raises(AppendOnlyError):
        entry.delete()

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_a_raw_sql_update_of_an_entry_is_refused_by_the_database(entry):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE billing_ledgerentry SET amount_micros = 1 WHERE id = %s", [entry.pk])

    assert stored(entry) == 20 * USD


def test_a_queryset_update_of_entries_is_refused_by_the_database(entry):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(description="rewritten")

    assert LedgerEntry.objects.get(pk=entry.pk).description == ""


def test_a_raw_sql_delete_of_an_entry_is_refused_by_postgresql(entry, is_postgres):
    # SQLite has no TRUNCATE, so Django's test flush deletes rows and the SQLite trigger only
    # refuses UPDATE (migration 0002); there the model's delete() is the guard.
    if not is_postgres:
        with pytest.raises(AppendOnlyError):
            LedgerEntry.objects.get(pk=entry.pk).delete()
        return

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM billing_ledgerentry WHERE id = %s", [entry.pk])

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_check_ledger_reports_ok_when_every_balance_matches(entry, capsys):
    call_command("check_ledger")

    assert "Ledger OK" in capsys.readouterr().out


def test_check_ledger_fails_when_a_cached_balance_drifts(entry, capsys):
    Account.objects.filter(pk=entry.account_id).update(balance_micros=19 * USD)

    with pytest.raises(CommandError, match="1 account"):
        call_command("check_ledger")

    account = entry.account
    assert f"{account.public_id}: cached {19 * USD}, ledger {20 * USD}" in capsys.readouterr().err
    (drift,) = ledger_drift()
    assert (drift.cached_micros, drift.ledger_micros, drift.grants_micros) == (
        19 * USD,
        20 * USD,
        20 * USD,
    )
