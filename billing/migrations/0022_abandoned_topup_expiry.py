"""Schedule the expiry of abandoned top-ups (billing.jobs.expire_abandoned_topups).

Registers every schedule, as 0005 does: `register_schedules` changes nothing that is already
right, so this only adds the new row on a database migrated before the job existed.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from billing.jobs import register_schedules

    register_schedules(apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0021_plan_fees"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
