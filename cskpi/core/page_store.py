"""Storing a stream's pages: each page's rows and its bookkeeping, in one transaction.

On a SQLite file the pages go to a SQLite worker process (``sqlite_worker.py``) as Arrow
tables: the ADBC driver appends them to temporary tables in C, and one ``INSERT … SELECT …
ON CONFLICT`` per table upserts them, with the cursor's statement, in one transaction. The
DB-API driver binds every value of every row from Python instead, which made the upserts
the largest cost of a demo sync (68 us a ticket of 140). The work is spread over the
machine's cores: a thread makes the next pages and their Arrow tables (``prefetch``) while
the worker writes, and each page is sent before the previous page's answer is read, so the
worker never waits for this process. A page sent after one that failed is refused by the
worker, so no cursor is committed past a page that was not. Each sync takes a writer of its
own from a pool (the daemon syncs connectors in parallel; the KPI reads have their own
worker), and lets go of the database file when it ends.

A PostgreSQL store's pages take the same way, through the same worker: there the ADBC
driver copies new rows straight into their tables and upserts the rest
(``postgres_writes.py``; demo sync 5,470 tickets/s through SQLAlchemy before, 10,800
now). An in-memory SQLite store, which another process cannot open, is written through
SQLAlchemy's connection by ``db.upsert_records``. The rows are the same every way
(``tests/core/test_page_store.py``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.db import (
    UPSERTS,
    rows_by_type,
    staged_statement,
    upsert_records,
    write_transaction,
)
from cskpi.core.postgres_writes import page_batches
from cskpi.core.prefetch import prefetch
from cskpi.core.sqlite_worker import SqliteWorker, write_request
from cskpi.core.sqlite_writes import Statement

T = TypeVar("T")
RowsByType = dict[type, list[Any]]
Work = tuple[list[Any], list[Statement]]  # what a write stores, and its statements


@dataclass(frozen=True)
class Planned(Generic[T]):
    """A page, the statement that records it (``state.progress``), and the caller's note."""

    page: base.Page
    progress: Statement | None = None
    note: T | None = None


def store_page(
    engine: Engine, connector: str, page: base.Page, progress: Statement | None = None
) -> int:
    """Store one page (see ``store_pages``); returns how many rows were written."""
    ((_, count),) = store_pages(engine, connector, [Planned[None](page, progress)])
    return count


def store_pages(
    engine: Engine,
    connector: str,
    planned: Iterable[Planned[T]],
    stop: Callable[[], bool] = lambda: False,
) -> Generator[tuple[Planned[T], int], None, None]:
    """Store the pages in order, each with its progress statement in one transaction, and
    yield each with its row count once committed. The pages are read ahead in a thread.
    Once ``stop`` says so no page is sent, but a page already sent to the worker (at most
    one not yet yielded) still commits when the caller stops taking pages."""
    if engine.url.get_backend_name() == "postgresql":
        store = engine.url.render_as_string(hide_password=False)
        requests = _requests(store, planned, _postgres_work(connector))
    else:
        path = _sqlite_file(engine)
        if path is None:
            for item in prefetch(planned):
                yield item, _store_here(engine, connector, item)
            return
        store, requests = path, _requests(path, planned, _sqlite_work(connector))
    yield from _store_in_worker(store, requests, stop)


def _store_here(engine: Engine, connector: str, item: Planned[T]) -> int:
    with write_transaction(engine) as conn:
        count = upsert_records(conn, connector, item.page.records, item.page.rows)
        if item.progress is not None:
            conn.execute(text(item.progress[0]), item.progress[1])
    return count


def _store_in_worker(
    store: str, requests: Iterable[tuple[Planned[T], int, bytes]], stop: Callable[[], bool]
) -> Iterator[tuple[Planned[T], int]]:
    """Send each request (made ahead in a thread) before reading the previous one's answer,
    so the writer always has the next page to hand."""
    writer = _take_writer()
    sent: deque[tuple[Planned[T], int]] = deque()
    try:
        for item, count, request in prefetch(requests):
            if stop():
                break
            writer.send_write(request)
            sent.append((item, count))
            if len(sent) > 1:  # one page in the worker's hands, the next one waiting
                yield _answered(writer, sent)
        while sent:
            yield _answered(writer, sent)
    finally:
        _finish(writer, len(sent), store)


def _answered(writer: SqliteWorker, sent: deque[tuple[Planned[T], int]]) -> tuple[Planned[T], int]:
    oldest = sent.popleft()  # its answer is read now, whatever it says
    writer.answer()
    return oldest


def _requests(
    store: str, planned: Iterable[Planned[T]], work: Callable[[RowsByType], Work]
) -> Iterator[tuple[Planned[T], int, bytes]]:
    """Each page as a ready write request (made in the reading-ahead thread): what ``work``
    makes of its rows, then its progress statement."""
    first = True
    for item in planned:
        stored, statements = work(rows_by_type(item.page.records, item.page.rows))
        if item.progress is not None:
            statements.append(item.progress)
        yield item, item.page.size, write_request(store, stored, statements, not first)
        first = False


def _sqlite_work(connector: str) -> Callable[[RowsByType], Work]:
    """A SQLite file's page: a table per record type, appended to the temporary table of
    its name, and the statement that upserts it."""

    def work(by_type: RowsByType) -> Work:
        tables: list[Any] = []
        statements: list[Statement] = []
        for kind, spec in UPSERTS.items():  # the tables in upsert_records' order
            rows = by_type.get(kind)
            if rows:
                stage = f"stage_{spec.table}"
                tables.append((stage, spec.arrow_table(rows)))
                statements.append((staged_statement(spec, connector, f"temp.{stage}"), {}))
        return tables, statements

    return work


def _postgres_work(connector: str) -> Callable[[RowsByType], Work]:
    """A PostgreSQL store's page: ``postgres_writes`` batches, no statement of their own."""
    return lambda by_type: (page_batches(connector, by_type), [])


# --- the writers --------------------------------------------------------------------------

_idle: list[SqliteWorker] = []
_idle_lock = threading.Lock()


def _take_writer() -> SqliteWorker:
    with _idle_lock:
        return _idle.pop() if _idle else SqliteWorker()


def _finish(writer: SqliteWorker, unanswered: int, store: str) -> None:
    """Collect the answers still due (a failure or an early stop leaves some: pages sent
    after a failed one are refused), let go of the file, and give the writer back."""
    try:
        for _ in range(unanswered):
            with contextlib.suppress(Exception):
                writer.answer()
        writer.close(store)
    finally:
        with _idle_lock:
            _idle.append(writer)


def writer_pids() -> list[int]:
    """The processes of the idle writers (for tests)."""
    with _idle_lock:
        return [pid for pid in (writer.pid for writer in _idle) if pid is not None]


def _sqlite_file(engine: Engine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(url.database)  # the worker keeps the directory it started in
