"""Register the scheduled jobs with django-q2 (SPEC O3), as `manage.py setup_schedules` does."""

from django.db import migrations


def forwards(apps, schema_editor):
    from billing.jobs import register_schedules

    register_schedules(apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_invoicenumbersequence_subscription_last_closed_at_and_more"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
