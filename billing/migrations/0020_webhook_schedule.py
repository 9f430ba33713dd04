"""Register the webhook delivery sweep (webhooks.jobs.retry_deliveries) with the other jobs."""

from django.db import migrations


def register_schedules(apps, schema_editor):
    from billing.jobs import register_schedules

    register_schedules(apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0019_audit_actor_key"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(register_schedules, migrations.RunPython.noop)]
