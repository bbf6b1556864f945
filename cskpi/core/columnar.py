"""Query results as numpy columns, for the KPI engine's reads of a window's populations.

A DB-API driver hands every value to Python as an object: for the 30-day window of a
1M-ticket store (about 90,000 tickets, 330,000 messages, 30,000 ratings) building those
objects took 1.7 s of the KPI set's 2.3 s. ADBC drivers (Apache Arrow Database
Connectivity) step the query in C and fill Arrow arrays, which numpy reads without a copy:
the same reads take 0.7 s on SQLite. On PostgreSQL the ADBC driver reads results in the
binary wire format, again without a Python object per value.
https://arrow.apache.org/adbc/current/driver/sqlite.html
https://arrow.apache.org/adbc/current/driver/postgresql.html

The queries of one KPI run are read in one transaction, so they see one snapshot while a
sync commits pages meanwhile.

SQLite is read by the ADBC driver in a worker process of its own. The driver carries its
own copy of the SQLite library, and two copies in one process corrupt databases: POSIX
locks belong to the process, so when one copy closes a file the locks the other copy holds
on it are gone, a write lock included (https://www.sqlite.org/howtocorrupt.html, 2.2.1).
The worker (``sqlite_worker.py``) has only the driver's copy; the results come back as
pickled arrays. An in-memory SQLite store, which another process can't open, is read through
SQLAlchemy's own connection instead (``RowReader``); the KPI tests run both readers.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, text

from cskpi.core.dialect import POSTGRES, SQLITE, sql_for
from cskpi.core.secrets import MASK

if TYPE_CHECKING:
    from cskpi.core.sqlite_worker import SqliteWorker

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


def row_key_for(engine: Engine, *, prefer_arrow: bool = True) -> Callable[[str], str]:
    """How the reader ``read`` picks spells an integer naming a row (see ``Reader``)."""
    if prefer_arrow and engine.url.get_backend_name() == "postgresql":
        return _tuple_id
    return sql_for(engine).row_key


def read(
    engine: Engine, queries: Sequence[str], params: dict[str, Any], *, prefer_arrow: bool = True
) -> list[Columns]:
    """The results of ``queries`` (binding ``params``), all read in one snapshot."""
    if _in_worker(engine, prefer_arrow):
        # absolute: the worker keeps the directory it started in
        path = os.path.abspath(str(engine.url.database))
        return sqlite_worker().read(path, list(queries), params)
    with open_reader(engine, prefer_arrow=prefer_arrow) as reader:
        return [reader.columns(sql, params) for sql in queries]


_worker: SqliteWorker | None = None
_worker_made = threading.Lock()


def sqlite_worker() -> SqliteWorker:
    """This process's SQLite reader (its process starts on the first read)."""
    global _worker
    with _worker_made:
        if _worker is None:
            from cskpi.core.sqlite_worker import SqliteWorker

            _worker = SqliteWorker()
        return _worker


def _in_worker(engine: Engine, prefer_arrow: bool) -> bool:
    url = engine.url
    memory = url.database in (None, "", ":memory:")
    return prefer_arrow and url.get_backend_name() == "sqlite" and not memory


@contextmanager
def open_reader(engine: Engine, *, prefer_arrow: bool = True) -> Iterator[Reader]:
    """A reader in this process within one read snapshot: ADBC on PostgreSQL, otherwise
    the DB-API driver (SQLite's ADBC reader runs in the worker, see the module doc)."""
    if prefer_arrow and engine.url.get_backend_name() == "postgresql":
        with _postgres_reader(engine) as reader:
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
    def __init__(self, conn: Any, marker: str, convert: Callable[[Any], Any] | None = None) -> None:
        self.conn = conn
        self.marker = marker  # "?" or "$" (then numbered)
        self.convert = convert or numpy_column  # from an Arrow column

    def row_key(self, alias: str) -> str:
        return SQLITE.row_key(alias) if self.marker == "?" else _tuple_id(alias)

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
        return [self.convert(table.column(i)) for i in range(table.num_columns)]


def numpy_column(column: Any) -> NDArray[Any]:
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


def _tuple_id(alias: str) -> str:
    # PostgreSQL: the tuple id itself, decoded by `numpy_column` from its binary form, where the
    # dialect's text round trip (see dialect.py) cost 0.4 s on the benchmark's replies.
    return f"{alias}.ctid"


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
def _postgres_reader(engine: Engine) -> Iterator[ArrowReader]:
    url = engine.url
    try:
        import adbc_driver_postgresql.dbapi as adbc_pg
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{exc}: a PostgreSQL store needs the postgres extra: pip install 'cskpi[postgres]'"
        ) from exc
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn: Any = adbc_pg.connect(libpq)
    except Exception as exc:  # the driver's message must not carry the URL's password
        shown = url.render_as_string(hide_password=True)
        message = str(exc).replace(str(url.password), MASK) if url.password else str(exc)
        raise ConnectionError(f"cannot read the store at {shown}: {message}") from None
    with transaction(conn, POSTGRES.snapshot_sql()):
        yield ArrowReader(conn, "$")
    conn.close()


@contextmanager
def transaction(conn: Any, first: Sequence[str]) -> Iterator[None]:
    """ADBC opens the transaction itself (autocommit is off); on SQLite a deferred BEGIN,
    whose snapshot starts at the first read. It holds until the rollback."""
    try:
        with conn.cursor() as cursor:
            for statement in first:
                cursor.execute(statement)
        yield
    finally:
        conn.rollback()
