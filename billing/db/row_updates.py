"""Setting one integer column of many rows, each to its own value, in a few statements.

Jobs that touch thousands of rows in one transaction (period close) write their results with
this instead of Django's `bulk_update`, whose `CASE WHEN pk = ... THEN ...` expression is built
and compiled in Python, one node per row, and cost more than the database work it asked for.

- Rows that share a value (most accounts' unbilled amount after an invoice is 0) are set with
  one `UPDATE ... WHERE pk IN (...)` per value.
- Many distinct values go in one `UPDATE ... FROM (VALUES (pk, value), ...)` per batch, which
  PostgreSQL and SQLite (3.33 and later) both understand; other databases fall back to
  `bulk_update`.
"""

import sqlite3
from collections import defaultdict
from collections.abc import Mapping

from django.db import connection, models

# Up to this many distinct values, one `WHERE pk IN` update per value is cheaper than a join.
FEW_VALUES = 8
# Rows per statement: SQLite allows 999 parameters per query (two per row in VALUES).
BATCH = 450


def _update_from_values_supported() -> bool:
    if connection.vendor == "postgresql":
        return True
    if connection.vendor == "sqlite":
        return sqlite3.sqlite_version_info >= (3, 33, 0)
    return False


def update_by_pk(model: type[models.Model], column: str, values: Mapping[int, int]) -> None:
    """Set `column` (an integer field) of each row `pk` to `values[pk]`."""
    if not values:
        return
    field = model._meta.get_field(column)
    if not isinstance(field, models.IntegerField):
        # Values are sent as bare literals and typed by the database: only integers are safe.
        raise TypeError(f"update_by_pk sets integer columns only, not {column}.")
    by_value: dict[int, list[int]] = defaultdict(list)
    for pk, value in values.items():
        by_value[int(value)].append(pk)
    if len(by_value) <= FEW_VALUES or not _update_from_values_supported():
        if len(by_value) > FEW_VALUES:
            objects = [model(pk=pk, **{column: value}) for pk, value in values.items()]
            model.objects.bulk_update(objects, [column], batch_size=BATCH)
            return
        for value, pks in by_value.items():
            for offset in range(0, len(pks), BATCH * 2):
                model.objects.filter(pk__in=pks[offset : offset + BATCH * 2]).update(
                    **{column: value}
                )
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk_column = quote(model._meta.pk.column)
    target = quote(field.column)
    rows = sorted(values.items())  # a fixed order: concurrent writers take row locks alike
    with connection.cursor() as cursor:
        for offset in range(0, len(rows), BATCH):
            batch = rows[offset : offset + BATCH]
            # VALUES columns are named column1, column2 on both databases (no alias list on
            # SQLite). Python ints become integer literals, so no cast is needed.
            placeholders = ", ".join(["(%s, %s)"] * len(batch))
            cursor.execute(
                f"UPDATE {table} SET {target} = v.column2 "  # noqa: S608  # nosec B608 - quoted model names
                f"FROM (VALUES {placeholders}) AS v WHERE {table}.{pk_column} = v.column1",
                [item for pair in batch for item in (pair[0], int(pair[1]))],
            )
