"""The SQLite worker's writes (worker side; the client is ``page_store``).

A write is one transaction on a read-write ADBC connection kept open per database: Arrow
tables appended to temporary tables, then the statements that upsert them and record the
stream's progress (see ``page_store``). Loaded only in the worker process, as the driver's
own copy of SQLite must be (see ``columnar``).

The write-ahead log is copied into the database file by a thread of its own, on a second
connection, rather than by the writer when the log passes 1,000 pages (SQLite's automatic
checkpoint). A checkpoint ends with an fsync of the database file, and the writer would
wait for the disk there; the thread waits instead while the writer stores the next page.
A checkpoint runs concurrently with a writer in WAL mode, and the log restarts from its
beginning once a checkpoint has copied all of it.
https://www.sqlite.org/wal.html#ckpt
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from cskpi.core.store.reads.arrow import positional

Statement = tuple[str, dict[str, Any]]  # SQL with `:name` binds, and their values

_KEEP_OPEN = 4
# Commits between checkpoints: each ends with an fsync, and after every page (1,000 demo
# tickets) they cost more than they saved (demo sync of 200,000 tickets: 19,100 tickets/s
# every 4 commits, 19,600 every 8, 16,900 with SQLite's own checkpoints, three runs each).
_CHECKPOINT_EVERY = 8


class _Writer:
    """A database's write connection, and the thread that checkpoints its log."""

    def __init__(self, path: str) -> None:
        self.conn = _connect(path)
        with self.conn.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the thread's job
            # A page's staging tables live in memory, and the indexes' upper levels stay in
            # a 16 MB cache (SQLite's default is 2 MB) as the store grows: demo sync of
            # 500,000 tickets, three runs each, 20,700 tickets/s on average before, 21,900.
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.execute("PRAGMA cache_size=-16384")
        self._checkpoints = _connect(path)
        self._wake = threading.Event()
        self._closing = False
        self._commits = 0
        self._thread = threading.Thread(target=self._checkpoint, name="checkpoint", daemon=True)
        self._thread.start()

    def write(self, tables: list[tuple[str, Any]], statements: list[Statement]) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute("BEGIN IMMEDIATE")  # the write lock up front, as dialect.py's
            try:
                for name, table in tables:
                    cursor.adbc_ingest(name, table, mode="create_append", temporary=True)
                for sql, params in statements:
                    cursor.execute(*positional(sql, params, "?"))
                for name, _ in tables:
                    cursor.execute(f"DELETE FROM temp.{name}")  # noqa: S608 (our own names)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0:
            self._wake.set()

    def _checkpoint(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            with self._checkpoints.cursor() as cursor:
                # PASSIVE: copy what no reader still needs, never wait for anyone.
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()

    def close(self) -> None:
        """Stop the thread and close both connections: the last connection to a database
        to close copies the rest of the log into the file."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._checkpoints.close()
        self.conn.close()


def _connect(path: str) -> Any:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    # Autocommit: the transactions are the explicit BEGIN and COMMIT of `_Writer.write`.
    conn = adbc_sqlite.connect(path, autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout=30000")  # as dialect.py's connections
        cursor.execute("PRAGMA synchronous=NORMAL")
    return conn


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class ByFile(Generic[C]):
    """Open connections (or writers), newest last, by file identity: a file replaced at the
    same path (a demo store made anew) is another database. A few stay open, to save
    reopening; the oldest is closed beyond that."""

    def __init__(self, make: Callable[[str], C]) -> None:
        self._make = make
        self._open: dict[tuple[str, int, int], C] = {}

    def get(self, path: str) -> C:
        info = os.stat(path)
        key = (path, info.st_dev, info.st_ino)
        found = self._open.pop(key, None) or self._make(path)
        self._open[key] = found
        while len(self._open) > _KEEP_OPEN:
            self._open.pop(next(iter(self._open))).close()
        return found

    def close(self, path: str) -> None:
        for key in [key for key in self._open if key[0] == path]:
            self._open.pop(key).close()


_writers = ByFile(_Writer)


def write(path: str, tables: list[tuple[str, Any]], statements: list[Statement]) -> None:
    """In one transaction: each Arrow table appended to the temporary table of its name
    (made on first use), the statements run (``:name`` binds), the temporary tables emptied."""
    _writers.get(path).write(tables, statements)


def close(path: str) -> None:
    """Close the writer of ``path`` (a sync is over: see ``_Writer.close``)."""
    _writers.close(path)
