"""Refuse UPDATE and DELETE of ledger entries in the database itself (SPEC L2).

PostgreSQL: a trigger raises on any UPDATE or DELETE. TRUNCATE (test flushes, an operator who
really means to wipe everything) is not affected. SQLite: a trigger refuses UPDATE; DELETE is
refused by the model only, because SQLite has no TRUNCATE and Django flushes test tables with
DELETE.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_ledger_append_only
    BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry;
DROP FUNCTION IF EXISTS billing_ledger_append_only();
"""


SQLITE_CREATE = """
CREATE TRIGGER billing_ledger_append_only BEFORE UPDATE ON billing_ledgerentry
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only (UPDATE refused)'); END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS billing_ledger_append_only;"


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # params=None: the function body's '%' is PL/pgSQL's, not a query placeholder.
        schema_editor.execute(CREATE, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_CREATE)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(DROP)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
