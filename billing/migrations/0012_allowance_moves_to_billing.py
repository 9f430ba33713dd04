"""The Allowance model moves from the usage app to billing; its table, usage_allowance, stays.

State only: the table, its rows and constraints are not touched (usage 0003 drops the model
from usage's state once this has added it here).
"""

import django.db.models.deletion
import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_invitation_tierrequest"),
        ("billing", "0011_recurring_credit"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Allowance",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("period_start", models.DateTimeField()),
                        ("period_end", models.DateTimeField()),
                        ("included_seconds", models.BigIntegerField()),
                        ("rollover_seconds", models.BigIntegerField(default=0)),
                        ("used_seconds", models.BigIntegerField(default=0)),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="allowances",
                                to="accounts.account",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "usage_allowance",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("account", "period_start"), name="one_allowance_per_period"
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("used_seconds__gte", 0),
                                    (
                                        "used_seconds__lte",
                                        django.db.models.expressions.CombinedExpression(
                                            models.F("included_seconds"),
                                            "+",
                                            models.F("rollover_seconds"),
                                        ),
                                    ),
                                ),
                                name="allowance_used_within_included",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
