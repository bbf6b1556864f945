"""Query results as numpy columns, for the KPI engine's reads of a window's populations.

A DB-API driver hands every value to Python as an object: for the 30-day window of a
1M-ticket store (about 90,000 tickets, 330,000 messages, 30,000 ratings) building those
objects took 1.7 s of the KPI set's 2.1 s. ADBC drivers (Apache Arrow Database
Connectivity) step the query in C and fill Arrow arrays, which numpy reads without a copy:
the same reads take 0.7 s on SQLite. On PostgreSQL the ADBC driver reads results in the
binary wire format, again without a Python object per value.
https://arrow.apache.org/adbc/current/driver/sqlite.html
https://arrow.apache.org/adbc/current/driver/postgresql.html

A reader holds one read transaction, so the queries of one KPI run see one snapshot while
a sync commits pages meanwhile. An in-memory SQLite store, which another connection can't
open, is read through SQLAlchemy's own connection instead (``RowReader``); the KPI tests
run both readers on the same data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, text

from cskpi.core.dialect import sql_for
from cskpi.core.secrets import MASK

Columns = list[NDArray[Any]]

# `:name` binds, but not the second colon of a PostgreSQL `::type` cast.
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# SQLite is dynamically typed, so the driver infers a column's Arrow type from the rows of
# its first batch and refuses a later batch that disagrees (a text column NULL in the first
# 1,024 rows would be read as integers). One batch for the whole result settles each type
# on every row; a window's rows fit in memory anyway, since the KPIs need them all at once.
_SQLITE_OPTIONS = {"adbc.sqlite.query.batch_rows": str(2**30)}


class Reader(Protocol):
    def columns(self, sql: str, params: dict[str, Any]) -> Columns:
        """The result's columns: integers and reals as numbers (NULL-bearing ones as float64
        with NaN), text as objects with None for NULL."""
        ...

    def row_key(self, alias: str) -> str:
        """SQL for an integer naming a row of ``alias``, stable within the reader's snapshot."""
        ...


@contextmanager
def open_reader(engine: Engine, *, prefer_arrow: bool = True) -> Iterator[Reader]:
    """A reader of ``engine``'s store within one read snapshot."""
    url = engine.url
    memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    if prefer_arrow and not memory and url.get_backend_name() in ("sqlite", "postgresql"):
        with _arrow_reader(engine) as reader:
            yield reader
        return
    # An explicit BEGIN: the reader's raw DB-API cursor would not start SQLAlchemy's
    # transaction, and SQLite would then read each statement on a snapshot of its own.
    with engine.connect() as conn, conn.begin():
        sql_for(conn).begin_snapshot(conn)
        yield RowReader(conn)


class RowReader:
    """Rows through the SQLAlchemy connection's DB-API cursor, turned into columns."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.row_key = sql_for(conn).row_key

    def columns(self, sql: str, params: dict[str, Any]) -> Columns:
        compiled = text(sql).compile(dialect=self.conn.dialect)
        bound = compiled.construct_params(params)
        names = compiled.positiontup
        args: Any = [bound[name] for name in names] if names else bound
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(str(compiled), args)
            width = len(cursor.description)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return (
            [_column(list(values)) for values in zip(*rows, strict=True)]
            if rows
            else [np.zeros(0) for _ in range(width)]
        )


def _column(values: list[Any]) -> NDArray[Any]:
    if any(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    return np.array(values, dtype=np.float64 if None in values else None)


class ArrowReader:
    def __init__(self, conn: Any, marker: str) -> None:
        self.conn = conn
        self.marker = marker  # "?" or "$" (then numbered)

    def row_key(self, alias: str) -> str:
        # PostgreSQL: the tuple id itself, decoded by `_numpy` from its binary form, where
        # the dialect's text round trip (see dialect.py) cost 0.4 s on the benchmark's replies.
        return f"{alias}.rowid" if self.marker == "?" else f"{alias}.ctid"

    def columns(self, sql: str, params: dict[str, Any]) -> Columns:
        order: list[str] = []

        def mark(match: re.Match[str]) -> str:
            order.append(match.group(1))
            return "?" if self.marker == "?" else f"${len(order)}"

        positional = _BIND.sub(mark, sql)
        with self.conn.cursor() as cursor:
            if self.marker == "?":
                cursor.adbc_statement.set_options(**_SQLITE_OPTIONS)
            cursor.execute(positional, [params[name] for name in order] if order else None)
            table = cursor.fetch_arrow_table()
        return [_numpy(table.column(i)) for i in range(table.num_columns)]


def _numpy(column: Any) -> NDArray[Any]:
    import pyarrow as pa

    kind = column.type
    if getattr(kind, "type_name", None) == "tid":
        return _tuple_ids(column.combine_chunks().storage)
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        # Nulls become NaN (the array turns float64); without nulls integers stay integers.
        return np.asarray(column.to_numpy(zero_copy_only=False))
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _tuple_ids(tids: Any) -> NDArray[np.int64]:
    """PostgreSQL tuple ids (``ctid``) as block x 65536 + offset. The driver passes the
    binary wire form through: a 4-byte block number and a 2-byte offset, big-endian.
    https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/utils/adt/tid.c (tidsend)
    """
    if tids.null_count:
        raise ValueError("a row key (ctid) was NULL")
    if len(tids) == 0:
        return np.zeros(0, dtype=np.int64)
    _, offsets, data = tids.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[tids.offset : tids.offset + len(tids) + 1]
    if bounds[-1] - bounds[0] != 6 * len(tids):
        raise ValueError("a row key (ctid) was not 6 bytes")
    raw = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]].reshape(-1, 6)
    block = raw[:, :4].copy().view(">u4").ravel().astype(np.int64)
    offset = raw[:, 4:].copy().view(">u2").ravel().astype(np.int64)
    keys: NDArray[np.int64] = block * 65536 + offset
    return keys


@contextmanager
def _arrow_reader(engine: Engine) -> Iterator[ArrowReader]:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        conn: Any = adbc_sqlite.connect(f"file:{quote(url.database or '')}?mode=ro")
        marker = "?"
    else:
        try:
            import adbc_driver_postgresql.dbapi as adbc_pg
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"{exc}: a PostgreSQL store needs the postgres extra: pip install 'cskpi[postgres]'"
            ) from exc
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = adbc_pg.connect(libpq)
        except Exception as exc:  # the driver's message must not carry the URL's password
            shown = url.render_as_string(hide_password=True)
            message = str(exc).replace(str(url.password), MASK) if url.password else str(exc)
            raise ConnectionError(f"cannot read the store at {shown}: {message}") from None
        marker = "$"
    try:
        # ADBC opens the transaction itself (autocommit is off): on SQLite a deferred BEGIN,
        # whose snapshot starts at the first read and holds until the rollback below.
        with conn.cursor() as cursor:
            for statement in sql_for(engine).snapshot_sql():
                cursor.execute(statement)
        yield ArrowReader(conn, marker)
    finally:
        conn.rollback()
        conn.close()
