"""Schedule rows name the jobs by their stable paths: the hold release job is usage's now.

`Schedule.func` is a dotted path that django-q2 resolves when the job runs. Rows registered
before the job moved still say billing.jobs.release_holds (which resolves too, through
billing.moved_paths, until that alias is removed); this points them at usage.jobs.release_holds.
The mapping is written out here, not imported, so that this migration means the same later.
"""

from django.db import migrations

MOVED_JOBS = {"billing.jobs.release_holds": "usage.jobs.release_holds"}


def forwards(apps, schema_editor):
    schedule = apps.get_model("django_q", "Schedule")
    for old, new in MOVED_JOBS.items():
        schedule.objects.filter(func=old).update(func=new)


def backwards(apps, schema_editor):
    schedule = apps.get_model("django_q", "Schedule")
    for old, new in MOVED_JOBS.items():
        schedule.objects.filter(func=new).update(func=old)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0012_allowance_moves_to_billing"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
