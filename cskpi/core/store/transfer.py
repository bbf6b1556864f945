"""`cskpi migrate-store`: copy a whole store into another database (SQLite → PostgreSQL).

The target is migrated to the current schema and must hold no rows yet. Every table is
copied inside one transaction on the target, row counts are compared with the source's
before the commit, so a failed or incomplete copy leaves the target as empty as it was.
The source is read in one transaction too (one consistent snapshot); stop the daemon
first, or what it writes after that snapshot stays behind.

Rows are read and written in bulk as stored (epoch seconds, JSON text), by the target
dialect's bulk insert; only booleans and JSON need a conversion between the drivers. The ``daemon``
table is not copied: it names the process running on the old store, not on the new one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Engine, Table, func, select
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import cskpi.core.store.schema  # noqa: F401  (registers the tables in SQLModel.metadata)
from cskpi.core.store.dialect import normalise_url, sql_for
from cskpi.core.store.engine import open_engine

SKIPPED = frozenset({"daemon"})
BATCH = 5000


class StoreCopyError(RuntimeError):
    """The copy cannot start or did not verify; the target was left unchanged."""


@dataclass(frozen=True)
class CopiedTable:
    table: str
    rows: int


@dataclass(frozen=True)
class CopyReport:
    source: str  # URLs with any password hidden
    target: str
    tables: list[CopiedTable]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


Progress = Callable[[str, int], None]


def _quiet(table: str, rows: int) -> None:
    pass


_FIRST = ("ticket", "message", "rating", "person", "grp", "organization")


def tables() -> list[Table]:
    """The store's tables: the synced data first, then the bookkeeping (no foreign keys)."""
    found = [t for t in SQLModel.metadata.sorted_tables if t.name not in SKIPPED]
    return sorted(found, key=lambda t: (*_FIRST, t.name).index(t.name))


def copy_store(source_url: str, target_url: str, progress: Progress = _quiet) -> CopyReport:
    """Copy every row of the store at ``source_url`` into the empty store at ``target_url``."""
    if make_url(normalise_url(source_url)) == make_url(normalise_url(target_url)):
        raise StoreCopyError("the source and the target are the same database")
    source, target = open_engine(source_url), open_engine(target_url)
    try:
        with source.connect() as src, target.connect() as dst, dst.begin():
            _refuse_rows(dst, _shown(target))
            copied = [CopiedTable(t.name, _copy_table(src, dst, t, progress)) for t in tables()]
            _verify(src, dst, copied)
    finally:
        source.dispose()
        target.dispose()
    return CopyReport(_shown(source), _shown(target), copied)


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _refuse_rows(dst: Connection, where: str) -> None:
    full = [f"{t.name} ({n:,} rows)" for t in tables() if (n := count(dst, t))]
    if full:
        raise StoreCopyError(
            f"{where} already holds data: {', '.join(full)}; copy into an empty database"
        )


def _copy_table(src: Connection, dst: Connection, table: Table, progress: Progress) -> int:
    names = [c.name for c in table.columns]
    fix = _fixers(table)
    result = src.execution_options(stream_results=True, yield_per=BATCH).exec_driver_sql(
        f"SELECT {', '.join(names)} FROM {table.name}"  # noqa: S608 (schema names)
    )
    rows = 0
    for batch in result.partitions(BATCH):
        sql_for(dst).insert_rows(dst, table, [fix(tuple(row)) for row in batch])
        rows += len(batch)
        progress(table.name, rows)
    sql_for(dst).continue_sequences(dst, table)
    return rows


def _fixers(table: Table) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The stored forms are the same in both dialects (epoch seconds, JSON text) but for
    two: SQLite hands booleans back as 0/1, psycopg hands JSON back parsed."""
    kinds = [
        bool if isinstance(c.type, Boolean) else _json_text if isinstance(c.type, JSON) else None
        for c in table.columns
    ]
    if not any(kinds):
        return lambda row: row

    def fix(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v if k is None or v is None else k(v) for k, v in zip(kinds, row, strict=True))

    return fix


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _verify(src: Connection, dst: Connection, copied: list[CopiedTable]) -> None:
    by_name = {t.name: t for t in tables()}
    for done in copied:
        table = by_name[done.table]
        have, want = count(dst, table), count(src, table)
        if have != want or done.rows != want:
            raise StoreCopyError(
                f"table {done.table}: the source holds {want:,} rows, {done.rows:,} were read "
                f"and the target holds {have:,}; nothing was committed"
            )
