"""Audit records are append-only in the database too, and the staff groups exist (SPEC P4, L2).

Support: look at everything, credit usage back and grant credit (up to the Support limit,
settings.SUPPORT_GRANT_LIMIT_MICROS). Finance: everything, including money refunds, adjustments,
plan changes, approvals, voiding invoices and the reconciliation page.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER billing_audit_append_only
    BEFORE UPDATE OR DELETE ON billing_auditrecord
    FOR EACH ROW EXECUTE FUNCTION billing_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS billing_audit_append_only ON billing_auditrecord;
DROP FUNCTION IF EXISTS billing_audit_append_only();
"""
SQLITE_CREATE = """
CREATE TRIGGER billing_audit_append_only BEFORE UPDATE ON billing_auditrecord
BEGIN SELECT RAISE(ABORT, 'audit records are append-only (UPDATE refused)'); END;
"""

VIEW_MODELS = [
    ("accounts", "account"),
    ("accounts", "apikey"),
    ("accounts", "user"),
    ("billing", "ledgerentry"),
    ("billing", "creditgrant"),
    ("billing", "invoice"),
    ("billing", "plan"),
    ("billing", "rate"),
    ("billing", "modelprice"),
    ("billing", "topup"),
    ("billing", "refund"),
    ("billing", "auditrecord"),
    ("billing", "refundapproval"),
    ("usage", "call"),
    ("usage", "usageevent"),
]
SUPPORT = ["credit_back", "grant_credit"]
FINANCE = [
    "credit_back",
    "grant_credit",
    "refund_topup",
    "adjust_balance",
    "move_account_plan",
    "approve_refund",
    "void_invoice",
    "view_reconciliation",
    "change_plan",  # edit Plan rows
    "add_rate",
    "change_rate",
    # The admin lets a rate or model price be withdrawn until it takes effect; without these
    # Finance could not, once the admin asked for the model permission as well.
    "delete_rate",
    "add_modelprice",
    "change_modelprice",
    "delete_modelprice",
    "change_account",
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_CREATE)
    # Permissions are normally created after migrate; the groups need them now.
    for app_label in ("accounts", "billing", "usage"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True  # historical app configs have none; create_permissions needs one
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = [
        Permission.objects.get(content_type__app_label=app, codename=f"view_{model}")
        for app, model in VIEW_MODELS
    ]

    def billing_perms(codenames):
        return list(
            Permission.objects.filter(content_type__app_label="billing", codename__in=codenames)
        ) + list(
            Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames)
        )

    support, _ = Group.objects.get_or_create(name="Support")
    support.permissions.set([*view, *billing_perms(SUPPORT)])
    finance, _ = Group.objects.get_or_create(name="Finance")
    finance.permissions.set([*view, *billing_perms(FINANCE)])


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS billing_audit_append_only;")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0009_auditrecord_refundapproval"),
        ("usage", "0001_initial"),
        ("accounts", "0003_account_unbilled_micros"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
