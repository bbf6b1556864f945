"""Query results as numpy columns, for the KPI engine's reads of a window's populations.

A DB-API driver hands every value to Python as an object, and for a window's few hundred
thousand rows building those objects took most of a report's time (docs/performance.md).
ADBC drivers (Apache Arrow Database Connectivity) step the query in C and fill Arrow
arrays, which numpy reads without a copy. On PostgreSQL the ADBC driver reads results in
the binary wire format, again without a Python object per value.
https://arrow.apache.org/adbc/current/driver/sqlite.html
https://arrow.apache.org/adbc/current/driver/postgresql.html

The queries of one KPI run are read in one transaction, so they see one snapshot while a
sync commits pages meanwhile.

SQLite is read by the ADBC driver in a worker process of its own. The driver carries its
own copy of the SQLite library, and two copies in one process corrupt databases: POSIX
locks belong to the process, so when one copy closes a file the locks the other copy holds
on it are gone, a write lock included (https://www.sqlite.org/howtocorrupt.html, 2.2.1).
The reader process (``sqlite_process.py``) has only the driver's copy; the results come back as
pickled arrays. An in-memory SQLite store, which another process can't open, is read through
SQLAlchemy's own connection instead (``RowReader``); the KPI tests run both readers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, make_url, text

from cskpi.core.store.dialect import sql_for
from cskpi.core.store.reads.arrow import Columns, tuple_id
from cskpi.core.store.reads.postgres import postgres_reader, read_postgres

if TYPE_CHECKING:
    from cskpi.core.store.reads.sqlite_process import SqliteReader


class Reader(Protocol):
    def columns(self, sql: str, params: dict[str, Any]) -> Columns:
        """The result's columns: integers and reals as numbers (NULL-bearing ones as float64
        with NaN), text as objects with None for NULL."""
        ...


def row_key_for(engine: Engine, *, prefer_arrow: bool = True) -> Callable[[str], str]:
    """SQL for an integer naming a row of a table alias, stable within one read snapshot,
    as the reader that ``read`` picks for ``engine`` receives it."""
    if prefer_arrow and engine.url.get_backend_name() == "postgresql":
        return tuple_id
    return sql_for(engine).row_key


def read(
    engine: Engine, queries: Sequence[str], params: dict[str, Any], *, prefer_arrow: bool = True
) -> list[Columns]:
    """The results of ``queries`` (binding ``params``), all read in one snapshot. On
    PostgreSQL two connections share the work: give the longest query first."""
    if _in_reader_process(engine, prefer_arrow):
        # absolute: the worker keeps the directory it started in
        path = os.path.abspath(str(engine.url.database))
        with _readers.lease() as reader:
            return reader.read(path, list(queries), params)
    if prefer_arrow and engine.url.get_backend_name() == "postgresql" and len(queries) > 1:
        return read_postgres(engine, queries, params)
    with open_reader(engine, prefer_arrow=prefer_arrow) as reader:
        return [reader.columns(sql, params) for sql in queries]


def read_each(
    engine: Engine, queries: Sequence[str], params: dict[str, Any], *, prefer_arrow: bool = True
) -> Generator[Columns, None, None]:
    """The results of ``queries`` as ``read`` gives them, one by one: from the SQLite reader
    as each arrives, so the caller works on one while the reader reads the next (use it
    in ``contextlib.closing``); from the other readers once all are read."""
    if _in_reader_process(engine, prefer_arrow):
        path = os.path.abspath(str(engine.url.database))
        with (
            _readers.lease() as reader,
            contextlib.closing(reader.each(path, list(queries), params)) as results,
        ):
            yield from results
    else:
        yield from read(engine, queries, params, prefer_arrow=prefer_arrow)


def start_reader(database: str, count: int = 1) -> None:
    """Start ``count`` SQLite readers' processes now when ``database`` (a URL) is a SQLite
    file: a command that will read KPIs calls it first, so the readers' start (their own
    imports of numpy, Arrow and the driver) runs on the other core beside this process's
    imports. A command whose threads read at once (`cskpi report`) asks for two."""
    url = make_url(database)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        _readers.start(count)


class _Readers:
    """This process's SQLite readers, each serving one read at a time: a read takes the
    first reader that is free, a thread that reads while every reader is busy gets a new
    one, up to ``MOST_READERS``, and then waits for one. A command reading from one thread
    only ever has one."""

    def __init__(self) -> None:
        self._made: list[SqliteReader] = []
        self._busy: set[int] = set()  # id() of the readers reading now
        self._changed = threading.Condition()

    def first(self) -> SqliteReader:
        with self._changed:
            return self._made[0] if self._made else self._new()

    def start(self, count: int) -> None:
        with self._changed:
            while len(self._made) < min(count, MOST_READERS):
                self._new()
            made = list(self._made)
        for reader in made:
            reader.start()

    @contextmanager
    def lease(self) -> Iterator[SqliteReader]:
        with self._changed:
            while not (free := [r for r in self._made if id(r) not in self._busy]):
                if len(self._made) < MOST_READERS:
                    free = [self._new()]
                    break
                self._changed.wait()
            reader = free[0]
            self._busy.add(id(reader))
        try:
            yield reader
        finally:
            with self._changed:
                self._busy.discard(id(reader))
                self._changed.notify()

    def end_spare(self) -> None:
        """End every free reader but the first."""
        with self._changed:
            spare = [r for r in self._made[1:] if id(r) not in self._busy]
            self._made = [r for r in self._made if r not in spare]
        for reader in spare:
            reader.stop()

    def _new(self) -> SqliteReader:
        from cskpi.core.store.reads.sqlite_process import SqliteReader

        reader = SqliteReader()
        self._made.append(reader)
        return reader


MOST_READERS = 2  # the report reads two windows at once; more would outnumber two cores
_readers = _Readers()


def end_spare_readers() -> None:
    """End the SQLite readers a command's threads started beside the first, when they are
    done: a report written by `cskpi run` leaves the daemon with the one reader it had."""
    _readers.end_spare()


def sqlite_reader() -> SqliteReader:
    """This process's first SQLite reader (its process starts on the first read)."""
    return _readers.first()


def _in_reader_process(engine: Engine, prefer_arrow: bool) -> bool:
    url = engine.url
    memory = url.database in (None, "", ":memory:")
    return prefer_arrow and url.get_backend_name() == "sqlite" and not memory


@contextmanager
def open_reader(engine: Engine, *, prefer_arrow: bool = True) -> Iterator[Reader]:
    """A reader in this process within one read snapshot: ADBC on PostgreSQL, otherwise
    the DB-API driver (SQLite's ADBC reader runs in the worker, see the module doc)."""
    if prefer_arrow and engine.url.get_backend_name() == "postgresql":
        with postgres_reader(engine) as reader:
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
