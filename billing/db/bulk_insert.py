"""Inserting many new rows of one model at once: COPY on PostgreSQL, bulk_create elsewhere.

Period close writes a few hundred thousand invoices and invoice lines. Django's `bulk_create`
prepares every value of every row through its field (and psycopg then quotes each into the
statement's text), which cost more than the database's own work. COPY sends the rows as they
are. `insert_objects` takes the primary keys from the table's sequence first, so the caller
gets them back as `bulk_create` would give them and can point other rows at them.

Values go to COPY as Python gives them: integers, strings, booleans, aware datetimes and None.
Fields of other types (JSON, decimals, ...) go through Django's preparation in
`insert_objects`; `insert_rows` callers pass ready values.

Usage ingestion (usage.ingest.events) uses the lower level: `allocate_ids` then `copy_insert` of
plain dicts, with no model instance per row at all; for a batch of 1,000 events, bulk_create was
most of the request.
"""

import json
from collections.abc import Sequence

from django.db import connection, models
from django.db.models import JSONField, Model

# Field types whose Python value psycopg adapts as it is.
_AS_IS = (
    models.AutoField,
    models.BigAutoField,
    models.IntegerField,  # and its subclasses: Big, Small, PositiveSmall, ...
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.DateTimeField,
    models.ForeignKey,
)


def insert_objects(model: type[models.Model], objects: Sequence[models.Model]) -> None:
    """Insert unsaved instances of `model` and set their primary keys, in this transaction."""
    if not objects:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects, batch_size=1000)
        return
    meta = model._meta
    if any(obj.pk is not None for obj in objects):
        raise ValueError("insert_objects inserts new rows only.")
    for obj, pk in zip(objects, allocate_ids(model, len(objects)), strict=True):
        obj.pk = pk
    fields = meta.concrete_fields
    _copy(model, [field.column for field in fields], _rows(objects, fields))
    for obj in objects:
        obj._state.adding = False
        obj._state.db = connection.alias


def insert_rows(model: type[models.Model], names: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Insert rows given as tuples of values of the fields `names` (attnames: `invoice_id`).

    `names` are all the model's fields but the primary key: COPY fills in no Django defaults.
    No primary keys come back: for rows nothing else points at (invoice lines).
    """
    missing = {f.attname for f in model._meta.concrete_fields if not f.primary_key} - set(names)
    if missing:
        raise ValueError(f"insert_rows needs every field; missing: {', '.join(sorted(missing))}")
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            [model(**dict(zip(names, row, strict=True))) for row in rows], batch_size=1000
        )
        return
    columns = [model._meta.get_field(name).column for name in names]
    _copy(model, columns, rows)


def _copy(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    quote = connection.ops.quote_name
    statement = (
        f"COPY {quote(model._meta.db_table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    )
    # psycopg's own cursor, so its errors are turned into Django's (IntegrityError, ...) here.
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _rows(objects: Sequence[models.Model], fields) -> list[list]:
    """Return the column values of each object, in `fields` order."""
    rows = [[getattr(obj, field.attname) for field in fields] for obj in objects]
    for index, field in enumerate(fields):
        if isinstance(field, models.ForeignKey):
            for obj, row in zip(objects, rows, strict=True):
                if row[index] is None and field.is_cached(obj):
                    # Assigned before the related row had its key (as bulk_create allows).
                    related = getattr(obj, field.name)
                    row[index] = related.pk if related is not None else None
        elif not isinstance(field, _AS_IS):
            for row in rows:
                row[index] = field.get_db_prep_save(row[index], connection)
    return rows


def copy_available() -> bool:
    return connection.vendor == "postgresql"


def allocate_ids(model: type[Model], count: int) -> list[int]:
    """Draw `count` primary keys from the model's table sequence (PostgreSQL only)."""
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, count],
        )
        return [pk for (pk,) in cursor.fetchall()]


def copy_insert(model: type[Model], rows: list[dict]) -> None:
    """Insert rows, given as {attname: value} with their primary keys, with one COPY.

    PostgreSQL only. Values go in as they are: ints, text, datetimes, None; a field a row
    leaves out gets its default; JSON fields are dumped with their encoder. A unique violation
    raises Django's IntegrityError, as an insert would.
    """
    if not rows:
        return
    fields = list(model._meta.concrete_fields)
    columns = [(f.attname, f.get_default() if f.has_default() else None) for f in fields]
    # One encoder per call, where json.dumps(value, cls=...) makes one per value; the text is
    # the same (json.dumps passes the encoder no options).
    encoders = [
        (index, (f.encoder or json.JSONEncoder)().encode)
        for index, f in enumerate(fields)
        if isinstance(f, JSONField)
    ]

    def values(row: dict) -> list:
        out = [row.get(name, default) for name, default in columns]
        for index, encode in encoders:
            if out[index] is not None:
                out[index] = encode(out[index])
        return out

    _copy(model, [f.column for f in fields], [values(row) for row in rows])
