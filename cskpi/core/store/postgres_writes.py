"""A sync's writes to a PostgreSQL store: each table's rows of a page as a binary ``COPY``
stream (a ``Batch``), made in the thread that makes the pages (``postgres_pages``; the
client is ``page_store``, which pipelines them) and written by the worker process that
writes SQLite files (``sqlite_worker``). This module is all that process loads for it:
psycopg, and not SQLAlchemy or pyarrow (0.57 s to start instead of 1.57, before the first
page could be written).

Each page is one transaction. A table's rows go one of two ways:

- **New rows are copied straight into the table** (``COPY … FROM STDIN (FORMAT binary)``,
  in a savepoint), with ids, prefixes and the connector made in Arrow first, and the
  binary stream made from the Arrow table in numpy (``pg_copy``) while the page is made,
  so the writer only sends it. A backfill's rows are all new, and this is the cheapest way
  in: in a prototype of the demo sync, the server's CPU time fell from 102 to 57 us a
  ticket against the upsert below.
- **When a row is already stored** the copy stops at it (``unique_violation``); the
  savepoint is rolled back and the rows are upserted instead: the same stream is copied
  into a temporary table shaped like the table, then ``INSERT … SELECT … ON CONFLICT``
  with the rules of SQLite's upsert (``UpsertSpec.stored_sql``), so a newer stored
  ticket is kept and a deletion sticks. A page that repeats an id is upserted in layers
  (every id's first row, then every second, …), as ``dialect.write_rows`` does.
  After a table's copy has failed so, its next few pages are upserted without trying:
  people come again with each ticket they raise, and a failed copy is work thrown away.

Either way a table's rows go in id order and the tables in ``UPSERTS`` order, so two
processes writing overlapping pages take their row locks in one order and cannot deadlock
(see ``docs/postgres.md``). A row another process inserted and has not committed yet makes
the copy wait for it, then fail, then upsert: the row is never doubled.

The writes go through psycopg (the ADBC driver makes a ``COPY`` stream value by value, and
took 11 of a demo ticket's 17 us in the writer, which the server waited for), on a
connection in autocommit mode with explicit ``BEGIN``/``COMMIT`` around each page.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cskpi.core.store.reads.arrow import positional
from cskpi.core.store.sqlite_writes import Statement

_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True)
class Batch:
    """One table's rows of a page, or one layer of them, as they are stored: the table's
    ``columns``, as a binary ``COPY`` stream (``pg_copy``). ``direct``: the page holds each
    id once, so the rows may be copied straight in; otherwise ``upsert`` writes them from
    ``stage``."""

    table: str
    upsert: str
    columns: tuple[str, ...]
    stream: bytes
    direct: bool

    @property
    def stage(self) -> str:
        return stage_of(self.table)


def stage_of(table: str) -> str:
    """The temporary table a table's rows are upserted from."""
    return f"stage_{table}"


# --- the writer's side (in the worker process, see page_store) ---------------------------

_connections: dict[str, Any] = {}
# Pages of a table upserted straight away after its copy met a stored row, before the copy
# is tried again. In a 50K-ticket demo sync, 49 of 51 pages hold a stored person; going
# straight to the upsert took the people's server CPU from 14.4 to 12.4 us a ticket.
UPSERTS_AFTER_CONFLICT = 8
_upserting: dict[tuple[str, str], int] = {}  # (url, table) -> pages left to upsert straight


def write(url: str, batches: Sequence[Batch], statements: Sequence[Statement]) -> None:
    """Store a page's batches and run its statements (``:name`` binds), in one transaction
    on the store's connection (opened on first use, kept until ``close``)."""
    conn = _connections.get(url)
    if conn is None:
        conn = _connections[url] = _connect(url)
    try:
        _write(conn, url, batches, statements)
    except BaseException:
        _forget_staging(url)  # a staging table this page made is rolled back with it
        try:
            conn.execute("ROLLBACK")
        except Exception:  # the connection is gone; the page's own error is the one to tell
            close(url)
        raise


def _connect(url: str) -> Any:
    """A psycopg connection to the store; an error names the store, never its password."""
    import psycopg

    libpq = re.sub(r"^postgresql\+\w+://", "postgresql://", url)  # SQLAlchemy's driver out
    try:
        return psycopg.connect(libpq, autocommit=True, cursor_factory=psycopg.RawCursor)
    except Exception as exc:
        from sqlalchemy.engine import make_url  # only now: this process starts without it

        from cskpi.core.store.reads.postgres import connect_error

        raise connect_error(make_url(url), "write to", exc) from None


def _write(conn: Any, url: str, batches: Sequence[Batch], statements: Sequence[Statement]) -> None:
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        for batch in batches:
            if _copy_first(url, batch):
                if _copied(cursor, batch):
                    continue
                _upserting[url, batch.table] = UPSERTS_AFTER_CONFLICT
            _stage(cursor, url, batch)
            cursor.execute(batch.upsert)
            cursor.execute(f"TRUNCATE {batch.stage}")
        for sql, params in statements:
            cursor.execute(*positional(sql, params, "$"))
        cursor.execute("COMMIT")


_staging: set[tuple[str, str]] = set()  # (url, stage): made on the connection to url


def _forget_staging(url: str) -> None:
    _staging.difference_update([key for key in _staging if key[0] == url])


def _stage(cursor: Any, url: str, batch: Batch) -> None:
    """Copy the batch's rows into its (temporary, this connection's) staging table, a
    table shaped like the batch's own, without its indexes and constraints."""
    if (url, batch.stage) not in _staging:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {batch.stage} (LIKE {batch.table})")
        _staging.add((url, batch.stage))
    _send(cursor, batch.stage, batch)


def _send(cursor: Any, table: str, batch: Batch) -> None:
    with cursor.copy(
        f"COPY {table} ({', '.join(batch.columns)}) FROM STDIN (FORMAT binary)"
    ) as copy:
        copy.write(batch.stream)


def close(url: str) -> None:
    """Close the store's connection (a sync is over)."""
    for key in [key for key in _upserting if key[0] == url]:
        del _upserting[key]
    _forget_staging(url)
    conn = _connections.pop(url, None)
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _copy_first(url: str, batch: Batch) -> bool:
    """Whether to try copying the batch's rows before upserting them."""
    if not batch.direct:
        return False
    left = _upserting.pop((url, batch.table), 0)
    if left > 1:
        _upserting[url, batch.table] = left - 1
    return left == 0


def _copied(cursor: Any, batch: Batch) -> bool:
    """Copy the batch's rows straight into its table; False (and nothing copied) when one
    of them is already stored."""
    cursor.execute("SAVEPOINT copy_new")
    try:
        _send(cursor, batch.table, batch)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
        cursor.execute("ROLLBACK TO SAVEPOINT copy_new")
        return False
    cursor.execute("RELEASE SAVEPOINT copy_new")
    return True
