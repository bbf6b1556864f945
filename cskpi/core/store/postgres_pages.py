"""A PostgreSQL store's page as the batches ``postgres_writes`` writes: each table's rows
of the page as they are stored (ids and references prefixed with the connector), as one
binary ``COPY`` stream (``pg_copy``). Made in the syncing process, in the thread that makes
the pages (``page_store``); the writer process needs none of this module's imports.
"""

from __future__ import annotations

from functools import cache
from operator import itemgetter
from typing import Any

from sqlmodel import SQLModel

from cskpi.core.store import pg_copy
from cskpi.core.store.dialect import Row, layers, pg_type
from cskpi.core.store.engine import UPSERTS, UpsertSpec
from cskpi.core.store.postgres_writes import Batch, stage_of

_ARROW = {"INTEGER": "int32", "BIGINT": "int64", "BOOLEAN": "bool", "FLOAT": "float64"}


def page_batches(connector: str, by_type: dict[type, list[Row]]) -> list[Batch]:
    """A page's rows (by record type, as ``db.rows_by_type`` gives them) as batches."""
    batches: list[Batch] = []
    for kind, spec in UPSERTS.items():  # the tables in upsert_records' order
        rows = by_type.get(kind)
        if not rows:
            continue
        rows.sort(key=itemgetter(0))
        parts = layers(rows)
        for part in parts:
            stored = _stored_fields(spec, connector, spec.arrow_table(part))
            columns = tuple(stored)
            upsert = _stored_statement(spec, columns)
            stream = pg_copy.encode(list(stored.values()), len(part))
            batches.append(Batch(spec.table, upsert, columns, stream, len(parts) == 1))
    return batches


@cache
def _stored_statement(spec: UpsertSpec, columns: tuple[str, ...]) -> str:
    return spec.stored_sql(stage_of(spec.table), columns)


def _stored_fields(spec: UpsertSpec, connector: str, staged: Any) -> dict[str, pg_copy.Field]:
    """``staged``'s rows as ``spec.table``'s columns, each what ``spec``'s upsert would
    insert: ids and references prefixed with the connector, the connector filled in."""
    kinds = _arrow_types(spec.table)
    prefix = f"{connector}:".encode()
    fields = {"id": pg_copy.Field(staged.column(0).combine_chunks(), prefix=prefix, name="id")}
    if spec.has_connector:
        fields["connector"] = pg_copy.Field(constant=connector)
    for index, name in enumerate(spec.fields.split()):
        if name == "external_id" and not spec.has_external_id:
            continue
        prefixed = prefix if name in spec.prefixed else b""
        column = staged.column(index).combine_chunks()
        fields[name] = pg_copy.Field(column, kinds.get(name), prefixed, name=f"{spec.table}.{name}")
    return fields


@cache
def _arrow_types(table: str) -> dict[str, str]:
    """The Arrow type a column's values are sent as, where ``UpsertSpec.arrow_table``'s
    differs from the column's (``int32`` for INTEGER)."""
    columns = SQLModel.metadata.tables[table].c
    return {c.name: _ARROW[t] for c in columns if (t := pg_type(c.type)) in _ARROW}
