"""Model instances from raw SQL rows, converted the way the ORM converts them.

On the usage hot path, compiling a queryset costs more than running its query (an indexed
lookup of a few rows). Code there may write the SELECT itself and turn the rows back into the
ordinary model instances with `Columns`, so the rest of the code cannot tell the difference:
each value goes through the same database converters as in a queryset (decimals and datetimes
on SQLite, JSON, ...). usage.key_lookup does the same for the API key's join.
"""

from django.db import connection
from django.db.models import Model


class Columns:
    """The concrete columns of a model under a table alias, and how to read them back."""

    def __init__(self, model: type[Model], alias: str):
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self._converters: dict[str, list[tuple]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def converters(self) -> list[tuple]:
        """Return (column, converters) per field for the current database, found once."""
        vendor = connection.vendor
        if vendor not in self._converters:
            found = []
            for field in self.fields:
                col = field.get_col(self.alias)
                found.append(
                    (col, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
                )
            self._converters[vendor] = found
        return self._converters[vendor]

    def build(self, values) -> Model:
        """Return the instance of a row's values for these columns, in their order."""
        row = []
        for value, (col, converters) in zip(values, self.converters(), strict=True):
            for converter in converters:
                value = converter(value, col, connection)
            row.append(value)
        return self.model.from_db(connection.alias, self.names, row)


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
