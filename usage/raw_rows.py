"""Model instances from rows read with raw SQL, converted the way the ORM converts them.

The gateway's hottest statements (usage.key_lookup, usage.charge_lock) join several tables in
one query, written by hand: compiling them through the ORM cost more than the database's work.
`ModelColumns` gives such a statement a model's column list under a table alias and turns the
row's slice of values back into an instance, with the same converters the ORM applies.
"""

from functools import cache

from django.db import connection
from django.db.models import Model


class ModelColumns:
    """The concrete columns of a model under a table alias, and how to read them back."""

    def __init__(self, model: type[Model], alias: str):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self.alias = alias
        self._pk_index = self.fields.index(model._meta.pk)

    @cache  # noqa: B019 - a handful of module-level instances, one entry per database vendor
    def _converters(self, vendor: str) -> list[tuple]:
        converters = []
        for field in self.fields:
            col = field.get_col(self.alias)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            converters.append((col, found))
        return converters

    def build(self, values) -> Model:
        row = []
        for value, (col, converters) in zip(
            values, self._converters(connection.vendor), strict=True
        ):
            for converter in converters:
                value = converter(value, col, connection)
            row.append(value)
        return self.model.from_db(connection.alias, self.names, row)

    def build_or_none(self, values) -> Model | None:
        """Build the instance, or return None for the NULLs of a LEFT JOIN that found no row."""
        return None if values[self._pk_index] is None else self.build(values)

    def spans(self, *others: "ModelColumns") -> list[slice]:
        """Return the slice of a row each of these columns (self first, then others) occupies
        when a statement selects them in that order."""
        slices, start = [], 0
        for columns in (self, *others):
            slices.append(slice(start, start + len(columns.names)))
            start += len(columns.names)
        return slices
