"""Model instances from raw SQL rows, converted the way the ORM converts them.

On the usage hot path, compiling a queryset costs more than running its query (an indexed
lookup of a few rows). Code there may write the SELECT itself and turn the rows back into the
ordinary model instances with `Columns`, so the rest of the code cannot tell the difference:
each value goes through the same database converters as in a queryset (decimals and datetimes
on SQLite, JSON, ...). usage.reads.keys, usage.reads.calls and usage.charging.lock use it for the
gateway's joins.
"""

from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Col


class Columns:
    """The concrete columns of a model under a table alias, and how to read them back."""

    def __init__(self, model: type[Model], alias: str):
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self._pk_index = self.fields.index(model._meta.pk)
        self._converters: dict[str, list[tuple[int, Col, list]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def converters(self, conn: BaseDatabaseWrapper) -> list[tuple[int, Col, list]]:
        """Return (position, column, converters) of each field that has converters on this
        database, found once per vendor; most fields have none and are skipped when reading."""
        vendor = conn.vendor
        if vendor not in self._converters:
            found = []
            for position, field in enumerate(self.fields):
                col = field.get_col(self.alias)
                converters = conn.ops.get_db_converters(col) + col.get_db_converters(conn)
                if converters:
                    found.append((position, col, converters))
            self._converters[vendor] = found
        return self._converters[vendor]

    def build(self, values, conn: BaseDatabaseWrapper | None = None) -> Model:
        """Return the instance of a row's values for these columns, in their order."""
        conn = conn or connection
        row = list(values)
        for position, col, converters in self.converters(conn):
            value = row[position]
            for converter in converters:
                value = converter(value, col, conn)
            row[position] = value
        return self.model.from_db(conn.alias, self.names, row)

    def build_or_none(self, values, conn: BaseDatabaseWrapper | None = None) -> Model | None:
        """Build the instance, or return None for the NULLs of a LEFT JOIN that found no row."""
        return None if values[self._pk_index] is None else self.build(values, conn)

    def spans(self, *others: "Columns") -> list[slice]:
        """Return the slice of a row each of these columns (self first, then `others`) takes
        when a statement selects them in that order."""
        slices, start = [], 0
        for columns in (self, *others):
            slices.append(slice(start, start + len(columns)))
            start += len(columns)
        return slices


def column_in(column: str, values: list) -> tuple[str, list]:
    """Return the condition "`column` is one of `values`" and its parameters.

    On PostgreSQL one array parameter (`= ANY(%s)`): psycopg caches the parsing of a query
    only up to 50 parameters, and parsing one with a parameter per value took milliseconds
    for a batch of 100 events. Elsewhere an IN list.
    """
    if not values:
        raise ValueError("A condition on a list of values needs at least one value.")
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)
