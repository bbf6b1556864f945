"""Storing one page of a stream: its rows and its cursor, in one transaction.

On a SQLite file the page goes to the SQLite worker process (``sqlite_worker.py``) as Arrow
tables: the ADBC driver appends them to temporary tables in C, and one ``INSERT … SELECT …
ON CONFLICT`` per table upserts them, with the cursor's statement, in one transaction. The
DB-API driver binds every value of every row from Python instead, which made the upserts
the largest cost of a demo sync (68 us a ticket of 140); and the worker writes on a core of
its own while this process makes the next page. The rows are the same either way
(``tests/core/test_page_store.py``).

Elsewhere (PostgreSQL, an in-memory SQLite store) the page is written through SQLAlchemy's
connection by ``db.upsert_records``.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.columnar import sqlite_worker
from cskpi.core.db import UPSERTS, rows_by_type, upsert_records, write_transaction

Statement = tuple[str, dict[str, Any]]  # SQL with `:name` binds, and their values


def store_page(
    engine: Engine, connector: str, page: base.Page, progress: Statement | None = None
) -> int:
    """Upsert the page's records and rows, and run ``progress`` (the stream's bookkeeping,
    see ``state.progress``) in the same transaction; returns how many rows were written."""
    path = _sqlite_file(engine)
    if path is None:
        with write_transaction(engine) as conn:
            count = upsert_records(conn, connector, page.records, page.rows)
            if progress is not None:
                conn.execute(text(progress[0]), progress[1])
        return count
    by_type = rows_by_type(page.records, page.rows)
    tables: list[tuple[str, Any]] = []
    statements: list[Statement] = []
    for kind, spec in UPSERTS.items():  # the tables in upsert_records' order
        rows = by_type.get(kind)
        if rows:
            stage = f"stage_{spec.table}"
            tables.append((stage, spec.arrow_table(rows)))
            statements.append((spec.staged_sql(connector, f"temp.{stage}"), {}))
    if progress is not None:
        statements.append(progress)
    sqlite_worker().write(path, tables, statements)
    return sum(len(rows) for rows in by_type.values())


def release(engine: Engine) -> None:
    """Done storing pages for now: the SQLite worker lets go of the database file."""
    path = _sqlite_file(engine)
    if path is not None:
        sqlite_worker().close(path)


def _sqlite_file(engine: Engine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(url.database)  # the worker keeps the directory it started in
