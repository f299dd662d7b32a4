"""Upserting many rows of one table at once, without a model instance per row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections, router
from django.db.models import Model

# Field types whose Python values the database drivers take as they are (no per-value preparation needed).
_AS_IS = {
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "FloatField",
    "IntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
    "TextField",
}


def upsert(
    model: type[Model], rows: Sequence[dict[str, Any]], *, unique_fields: Sequence[str], update_fields: Sequence[str]
) -> int:
    """Insert `rows`, or update `update_fields` of those whose `unique_fields` exist (a unique constraint on them):
    what `bulk_create(update_conflicts=True)` does, in one `executemany`, without building a model instance and
    preparing every value of every row through the ORM (at 1,000 services, three quarters of the metrics cycle's
    write). `rows` map attribute names (a foreign key by its `_id` name) to values; every row has the keys of the
    first. SQLite and PostgreSQL (`INSERT ... ON CONFLICT ... DO UPDATE`). Returns the number of rows sent."""
    if not rows:
        return 0
    connection = connections[router.db_for_write(model)]
    fields = {f.attname: f for f in model._meta.concrete_fields}
    keys = list(rows[0])
    quote = connection.ops.quote_name
    columns = {key: fields[key].column for key in keys}
    conflict = ", ".join(quote(fields[_attname(fields, key)].column) for key in unique_fields)
    updates = ", ".join(f"{quote(columns[key])} = EXCLUDED.{quote(columns[key])}" for key in update_fields)
    # Only quoted names of the model's own table and columns go into the text (a key that is no field of it is a
    # KeyError above); every value is a parameter.
    names = ", ".join(quote(columns[key]) for key in keys)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({names}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(keys))}) ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )
    prepare = [_preparer(fields[key], connection) for key in keys]
    params = [[p(row[key]) if p else row[key] for key, p in zip(keys, prepare, strict=True)] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(params)


def _attname(fields: dict[str, Any], name: str) -> str:
    """A unique field named as in a constraint (`cluster`) or by its attribute (`cluster_id`)."""
    return name if name in fields else f"{name}_id"


def _preparer(field: Any, connection: Any) -> Callable[[Any], Any] | None:
    if field.get_internal_type() in _AS_IS:
        return None
    last: list[Any] = [None, None]  # the last value prepared and what it became

    def prepare(value: Any) -> Any:
        # The same object again (a cycle's one `collected_at` on every row) is prepared once.
        if value is last[0] and value is not None:
            return last[1]
        last[0], last[1] = value, None if value is None else field.get_db_prep_save(value, connection)
        return last[1]

    return prepare
