"""The KPI engine's reads of a PostgreSQL store, through the ADBC PostgreSQL driver.

Four things make them fast (figures: docs/performance.md):

- **Values are written into the SQL** (``inlined``): the driver then streams the rows
  through ``COPY … TO STDOUT (FORMAT binary)``.
- **Connections are kept** between reads: the driver loads the server's type catalog when
  it connects. A few idle connections stay open for the store read last; one the server
  has closed meanwhile is replaced.
- **Two connections share a read**, in one snapshot: while the server runs one query this
  process converts another's rows.
- **Each query's rows come as one row** (``PackedReader``), numbers as one ``bytea`` a
  column that numpy reads in place.

The queries of a read see one ``REPEATABLE READ`` snapshot: the first connection exports
it and the second imports it, so both see the same rows at the same tuple ids (``ctid``,
the row keys). https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION
"""

from __future__ import annotations

import atexit
import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from cskpi.core.config.secrets import MASK
from cskpi.core.store.dialect import POSTGRES
from cskpi.core.store.reads.arrow import BIND, Columns, numpy_column

IDLE = 2  # connections kept open, for the store read last


def read_postgres(engine: Engine, queries: Sequence[str], params: dict[str, Any]) -> list[Columns]:
    """The queries on two connections reading one snapshot. Each connection takes the next
    query in the given order when it is free (give the longest first); after a failure
    neither takes another, and the first error is raised."""
    results: list[Columns] = [[] for _ in queries]
    todo = iter(enumerate(queries))
    taking = threading.Lock()
    failed = threading.Event()

    def work(reader: PackedReader) -> None:
        try:
            while not failed.is_set():
                with taking:
                    item = next(todo, None)
                if item is None:
                    return
                index, sql = item
                results[index] = reader.columns(sql, params)
        except BaseException:
            failed.set()
            raise

    with postgres_reader(engine) as first:
        (snapshot,) = first.columns("SELECT pg_export_snapshot()", {})
        with (
            postgres_reader(engine, str(snapshot[0])) as second,
            ThreadPoolExecutor(1, thread_name_prefix="cskpi-read") as pool,
        ):
            other = pool.submit(work, second)
            try:
                work(first)
            finally:
                wait([other])
            other.result()
    return results


@contextmanager
def postgres_reader(engine: Engine, snapshot: str | None = None) -> Iterator[PackedReader]:
    """A reader in a new ``REPEATABLE READ`` transaction, rolled back at the end;
    ``snapshot`` (from ``pg_export_snapshot()`` in another) makes it see that one's."""
    first = POSTGRES.snapshot_sql()
    if snapshot is not None:
        first += (f"SET TRANSACTION SNAPSHOT {pg_literal(snapshot)}",)
    key = engine.url.render_as_string(hide_password=False)
    conn = _POOL.take(key)
    if conn is not None:
        try:
            _run(conn, first)
        except Exception:  # closed by the server while idle (a restart, idle_session_timeout)
            _close(conn)
            conn = None
    if conn is None:
        conn = connect(engine.url)
        try:
            _run(conn, first)
        except BaseException:
            _close(conn)
            raise
    clean = False
    try:
        yield PackedReader(conn)
        conn.rollback()
        clean = True
    finally:
        if clean:
            _POOL.give(key, conn)
        else:
            _close(conn)


class PackedReader:
    """Reads a query's result as one row holding each column whole, and hands on the
    columns.

    The driver parses a result row by row, at a cost per row that competes for the same
    cores as the server. So each column comes aggregated into one
    value (all the aggregates of one query take its rows in one order, so they stay
    aligned):

    - a number, boolean or tuple id column as one ``bytea``: the values' binary send forms
      (fixed width, big-endian) concatenated by ``string_agg``, which numpy reads in
      place. A NULL is sent as a stand-in (``_PACKED``).
    - any other column (text) as one ``array_agg`` array, which the driver parses.

    A value holds at most 1 GB: tens of millions of rows, far more than a report's window.
    https://www.postgresql.org/docs/15/functions-aggregate.html
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def columns(self, sql: str, params: dict[str, Any]) -> Columns:
        query = inlined(sql, params)
        with self.conn.cursor() as cursor:
            kinds = [_kind(field.type) for field in cursor.adbc_execute_schema(query)]
            names = ", ".join(f"c{i}" for i in range(len(kinds)))
            packed = ", ".join(_aggregate(f"q.c{i}", kind) for i, kind in enumerate(kinds))
            cursor.execute(f"SELECT {packed} FROM ({query}) AS q({names})")  # noqa: S608
            table = cursor.fetch_arrow_table()
        return [
            _unpacked(table.column(i)[0].as_py(), kind)
            if kind in _PACKED
            else numpy_column(_elements(table.column(i)))
            for i, kind in enumerate(kinds)
        ]


@dataclass(frozen=True)
class _Packing:
    send: str  # the type's binary send function
    null: str  # what stands for NULL, in hex: a value the column cannot hold otherwise
    dtype: str  # the send form as numpy reads it
    kept: str  # the dtype the column is handed on in (as ``numpy_column`` would)


# https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/utils/adt/int8.c (int8send),
# int.c (int4send, int2send), float.c (float8send, float4send), bool.c, tid.c (tidsend).
# The integers' NULL is their type's minimum, which no count, epoch second or amount here
# reaches; a float's is NaN, as ``numpy_column`` makes of a NULL anyway; a boolean's a 2;
# a tuple id's the invalid block number (``InvalidBlockNumber``), never a row's.
_PACKED = {
    "int64": _Packing("int8send", "8000000000000000", ">i8", "int64"),
    "int32": _Packing("int4send", "80000000", ">i4", "int32"),
    "int16": _Packing("int2send", "8000", ">i2", "int16"),
    "double": _Packing("float8send", "7ff8000000000000", ">f8", "float64"),
    "float": _Packing("float4send", "7fc00000", ">f4", "float32"),
    "bool": _Packing("boolsend", "02", "u1", "bool"),
    "tid": _Packing("tidsend", "ffffffffffff", "V6", "int64"),
}


def _kind(arrow_type: Any) -> str:
    """An Arrow type's name as ``_PACKED`` knows it (``tid``: the driver's extension)."""
    return str(getattr(arrow_type, "type_name", None) or arrow_type)


def _aggregate(column: str, kind: str) -> str:
    packing = _PACKED.get(kind)
    if packing is None:
        return f"array_agg({column})"
    null = f"decode('{packing.null}', 'hex')"
    return f"string_agg(COALESCE({packing.send}({column}), {null}), ''::bytea)"


def _unpacked(data: bytes | None, kind: str) -> NDArray[Any]:
    """A ``_PACKED`` column's values: NULLs as NaN (the column turns float64), tuple ids as
    block x 65536 + offset (a NULL one is an error)."""
    packing = _PACKED[kind]
    raw = np.frombuffer(data or b"", dtype=packing.dtype)
    if kind == "tid":
        parts = raw.view(np.uint8).reshape(-1, 6)
        block = parts[:, :4].copy().view(">u4").ravel().astype(np.int64)
        if (block == 0xFFFFFFFF).any():
            raise ValueError("a row key (ctid) was NULL")
        ids: NDArray[np.int64] = block * 65536 + parts[:, 4:].copy().view(">u2").ravel()
        return ids
    values = raw.astype(packing.kept)
    if kind in ("double", "float"):
        return values  # a NULL came as NaN
    nulls = raw == np.frombuffer(bytes.fromhex(packing.null), dtype=packing.dtype)[0]
    if not nulls.any():
        return values
    with_nan = values.astype(np.float64)
    with_nan[nulls] = np.nan
    return with_nan


def inlined(sql: str, params: dict[str, Any]) -> str:
    """``sql`` with each ``:name`` bind replaced by its value as a PostgreSQL literal.

    The ADBC PostgreSQL driver streams a query without parameters through ``COPY … TO STDOUT
    (FORMAT binary)`` but buffers a parameterised one in libpq and converts it afterwards.
    The values are the window's bounds (integers) and configured names (connectors,
    escalation tags), never free text from a request.
    https://arrow.apache.org/adbc/current/driver/postgresql.html
    """
    return BIND.sub(lambda match: pg_literal(params[match.group(1)]), sql)


def pg_literal(value: Any) -> str:
    """A value as a PostgreSQL literal. Numbers are parenthesised, so that a negative one
    after a minus sign cannot start a ``--`` comment; strings take the escape form
    (``E'…'``), whose meaning does not depend on ``standard_conforming_strings``.
    https://www.postgresql.org/docs/15/sql-syntax-lexical.html#SQL-SYNTAX-STRINGS-ESCAPE
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"({value})"
    if isinstance(value, float):
        if math.isfinite(value):
            return f"({value!r})"
        special = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return f"'{special}'::float8"
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"a text value with a NUL character cannot be read: {value!r}")
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    raise TypeError(f"no PostgreSQL literal for a {type(value).__name__}: {value!r}")


def _elements(column: Any) -> Any:
    """The elements of a column of one array (none when the query found no row: its
    ``array_agg`` is NULL)."""
    import pyarrow as pa

    return pa.chunked_array([column.combine_chunks().flatten()])


def _run(conn: Any, statements: Sequence[str]) -> None:
    with conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def connect(url: URL, doing: str = "read", *, autocommit: bool = False) -> Any:
    """An ADBC connection to the store at ``url``; an error names the store, never its
    password, and what could not be done (``doing`` it)."""
    try:
        import adbc_driver_postgresql.dbapi as adbc_pg
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{exc}: a PostgreSQL store needs the postgres extra: pip install 'cskpi[postgres]'"
        ) from exc
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return adbc_pg.connect(libpq, autocommit=autocommit)
    except Exception as exc:
        raise connect_error(url, doing, exc) from None


def connect_error(url: URL, doing: str, exc: Exception) -> ConnectionError:
    """The error of a failed connection: the store and what could not be done (``doing``
    it), and the driver's message, which must not carry the URL's password."""
    shown = url.render_as_string(hide_password=True)
    message = str(exc).replace(str(url.password), MASK) if url.password else str(exc)
    return ConnectionError(f"cannot {doing} the store at {shown}: {message}")


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


class _Idle:
    """Open connections not in use, for the store read last only: a process that reads
    many stores (the tests) keeps no more than ``IDLE`` connections open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: str | None = None
        self.conns: list[Any] = []

    def take(self, key: str) -> Any:
        with self.lock:
            return self.conns.pop() if key == self.key and self.conns else None

    def give(self, key: str, conn: Any) -> None:
        with self.lock:
            if key != self.key:
                stale, self.conns, self.key = self.conns, [], key
            else:
                stale = []
            if len(self.conns) < IDLE:
                self.conns.append(conn)
            else:
                stale.append(conn)
        for old in stale:
            _close(old)

    def clear(self) -> None:
        with self.lock:
            stale, self.conns, self.key = self.conns, [], None
        for old in stale:
            _close(old)


_POOL = _Idle()
atexit.register(_POOL.clear)
