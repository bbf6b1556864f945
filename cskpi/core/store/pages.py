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

A PostgreSQL store's pages take the same way, through the same worker: there each table's
rows cross as a binary ``COPY`` stream, copied straight into the table when they are new
and upserted otherwise (``postgres_writes.py``; demo sync 5,470 tickets/s through
SQLAlchemy, about 10,000 through the ADBC driver, 17,400 to 21,600 now for 1M tickets, as
fast as the machine is that hour). An in-memory SQLite store, which another process cannot
open, is written through SQLAlchemy's connection by ``db.upsert_records``. The rows are the
same every way (``tests/core/test_page_store.py``).

Either way, a person, group or organization sent unchanged earlier in the same sync is left
out of a page (``SentRows``), and the garbage collector runs less often while pages are
made (``fewer_collections``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.prefetch import prefetch
from cskpi.core.store.engine import (
    UPSERTS,
    rows_by_type,
    staged_statement,
    upsert_records,
    write_transaction,
)
from cskpi.core.store.postgres_pages import page_batches
from cskpi.core.store.reads.sqlite_process import SqliteWorker, write_request
from cskpi.core.store.sqlite_writes import Statement

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
    with fewer_collections():
        yield from _store_in_worker(store, requests, stop)


# Python's cyclic garbage collector runs after every 700 allocations not yet freed; making
# a page allocates a tuple a row and a string a value, none of them in a cycle, and ran it
# hundreds of times a page (3.5 of the 45 us a demo ticket cost the syncing process).
GC_THRESHOLD = 100_000
_collections_lock = threading.Lock()
_collections_held: list[tuple[int, int, int]] = []  # the thresholds before, while held


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the collector after every ``GC_THRESHOLD`` allocations instead of 700 while
    pages are made; syncs running side by side (the daemon) share one raise, and the last
    to end puts the thresholds back."""
    with _collections_lock:
        if not _collections_held:
            before = gc.get_threshold()
            gc.set_threshold(max(before[0], GC_THRESHOLD), *before[1:])
            _collections_held.append(before)
        else:
            _collections_held.append(_collections_held[0])
    try:
        yield
    finally:
        with _collections_lock:
            before = _collections_held.pop()
            if not _collections_held:
                gc.set_threshold(*before)


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
    writer.start()
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
    sent = SentRows()
    for item in planned:
        stored, statements = work(sent.unsent(rows_by_type(item.page.records, item.page.rows)))
        if item.progress is not None:
            statements.append(item.progress)
        yield item, item.page.size, write_request(store, stored, statements, not first)
        first = False


# Rows that come again with the records that name them: a person with each ticket they
# raise, a group or an organization with each of its tickets.
REPEATED = (base.Person, base.Group, base.Organization)


class SentRows:
    """What a stream's pages have sent of the people, groups and organizations: a row sent
    again unchanged is left out of its page. Its earlier page commits first, or, if that
    fails, this one is refused (see ``_store_in_worker``), so what is stored is the same:
    the upsert would have found nothing to change. A 1M-ticket demo sync sends 1.0 people
    a ticket, 59% of them again, and all of those are left out: a backfill's pages then
    hold only people new to the store, which PostgreSQL takes by ``COPY`` (300K-ticket demo
    sync, alternated: 18,000 and 18,537 tickets/s with 52% left out, 21,437 and 20,582 with
    all).

    A row is remembered by the ``hash`` of its id and of the whole row, in an open-addressing
    table (linear probing) per kind: its id's hash picks a slot, and the next free one
    takes it if that is taken. A kind's table starts at ``FIRST_SLOTS`` and grows fourfold
    before a page would fill more than half of it, up to ``SLOTS`` (16 MB: 786K ids at
    three quarters full, a 1.4M-ticket demo's customers); a helpdesk with a few hundred
    groups keeps a few kB for them. Once the largest table is that full, ids new to it are
    no longer remembered: their rows are sent every time, as without this table. Two
    different rows of one id with the same 64-bit hash would leave the second unsent;
    Python hashes strings with a per-process random key (SipHash), so that is a 2**-64
    chance for a row that changed."""

    FIRST_SLOTS = 1 << 12
    SLOTS = 1 << 20
    FULL = 0.75  # the largest table takes no more ids past this share of its slots

    def __init__(self) -> None:
        self.slots: dict[type, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}
        self.taken: dict[type, int] = {}  # slots holding an id

    def unsent(self, by_type: RowsByType) -> RowsByType:
        """``by_type`` without the rows sent before as they are (in place, and returned)."""
        for kind in REPEATED:
            rows = by_type.get(kind)
            if rows:
                by_type[kind] = self._new(kind, rows)
        return by_type

    def _new(self, kind: type, rows: list[Any]) -> list[Any]:
        ids, digests = self._table(kind, len(rows))
        key = np.fromiter((hash(row[0]) for row in rows), np.int64, len(rows))
        digest = np.fromiter(map(hash, rows), np.int64, len(rows))
        room = self.taken[kind] + len(rows) <= self.FULL * len(ids)
        slot, claimed = _slots(ids, key, claim=room)
        self.taken[kind] += claimed
        known = slot >= 0
        sent = np.zeros(len(rows), bool)
        sent[known] = digests[slot[known]] == digest[known]
        digests[slot[known]] = digest[known]
        unique, count = np.unique(key, return_counts=True)
        if len(unique) < len(key):  # an id the page holds twice: all its rows go, and its
            twice = np.isin(key, unique[count > 1])  # slot forgets the row (which went last
            sent[twice] = False  # is not told by numpy's assignment)
            digests[slot[twice & known]] = _UNKNOWN
        return [row for row, old in zip(rows, sent.tolist(), strict=True) if not old]

    def _table(self, kind: type, coming: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The kind's table, grown for ``coming`` more ids if they would fill more than half."""
        table = self.slots.get(kind)
        size = len(table[0]) if table is not None else min(self.FIRST_SLOTS, self.SLOTS)
        while size < self.SLOTS and size < 2 * (self.taken.get(kind, 0) + coming):
            size *= 4
        size = min(size, self.SLOTS)
        if table is not None and size == len(table[0]):
            return table
        ids, digests = np.full(size, _EMPTY, np.int64), np.full(size, _UNKNOWN, np.int64)
        if table is not None:  # the remembered rows move to their slots in the larger table
            kept = table[0] != _EMPTY
            slot, _ = _slots(ids, table[0][kept], claim=True)
            digests[slot] = table[1][kept]
        self.slots[kind] = ids, digests
        self.taken[kind] = int(np.count_nonzero(ids != _EMPTY))
        return ids, digests


_EMPTY = -1  # a slot no id holds: hash() never gives -1
_UNKNOWN = -1  # ... nor a row whose id holds the slot


def _slots(
    ids: NDArray[np.int64], keys: NDArray[np.int64], claim: bool
) -> tuple[NDArray[np.int64], int]:
    """Each key's slot in ``ids`` (linear probing from ``key & (len(ids) - 1)``), and how
    many slots were taken: where the key is, else, with ``claim``, the free slot it now
    takes; -1 where it is not and takes none. A free slot always remains (``SentRows.FULL``),
    so every probe ends."""
    mask = len(ids) - 1
    where = np.full(len(keys), -1, np.int64)
    at = keys & mask
    todo = np.arange(len(keys))
    claimed = 0
    while len(todo):
        slot, key = at[todo], keys[todo]
        held = ids[slot]
        found = held == key
        where[todo[found]] = slot[found]
        free = held == _EMPTY
        if claim and free.any():  # the first key to come takes a slot; the others that
            taken, first = np.unique(slot[free], return_index=True)  # wanted it look
            ids[taken] = key[free][first]  # again: it holds theirs (a repeated id) or not
            claimed += len(taken)
            again = free
        else:
            again = np.zeros(len(todo), bool)  # not there, and no slot for it
        on = ~found & ~free
        at[todo[on]] = (slot[on] + 1) & mask
        todo = todo[on | again]
    return where, claimed


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
