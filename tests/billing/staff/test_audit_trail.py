"""The audit trail of staff actions is append-only, in the model and in the database (SPEC L2)."""

import pytest
from django.db import IntegrityError, connection, transaction

from billing import staff
from billing.models import AuditRecord
from tests.billing.staff_data import USD, new_key
from tests.conftest import NOW


@pytest.fixture
def record(finance, make_account) -> AuditRecord:
    return staff.grant_credit(
        account=make_account(),
        amount_micros=USD,
        reason="Voucher",
        actor=finance,
        key=new_key(),
        now=NOW,
    ).record


def test_an_audit_record_cannot_be_changed_or_deleted_through_the_model(record):
    record.reason = "Something else"

    with pytest.raises(PermissionError):
        record.save()
    with pytest.raises(PermissionError):
        record.delete()

    assert AuditRecord.objects.get(pk=record.pk).reason == "Voucher"


def test_the_database_refuses_to_update_an_audit_record(record):
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE billing_auditrecord SET reason = 'rewritten'")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditRecord.objects.filter(pk=record.pk).update(reason="rewritten")

    assert AuditRecord.objects.get(pk=record.pk).reason == "Voucher"


def test_the_database_refuses_a_raw_delete_of_an_audit_record_on_postgresql(record, is_postgres):
    if not is_postgres:
        # SQLite's trigger refuses UPDATE only, on purpose: Django empties SQLite test
        # databases with DELETE (PostgreSQL uses TRUNCATE, which row triggers do not see).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = %s",
                ["billing_audit_append_only"],
            )
            [(sql,)] = cursor.fetchall()
        assert "BEFORE UPDATE ON billing_auditrecord" in sql
        return
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM billing_auditrecord")
