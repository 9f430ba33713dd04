"""Allowance moved to billing (billing 0012): drop it from usage's state, keep the table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0002_reservation_allowance_seconds"),
        ("billing", "0012_allowance_moves_to_billing"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Allowance")],
            database_operations=[],
        ),
    ]
