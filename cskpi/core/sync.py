"""The sync engine: pull pages from each connector's streams and store them with their cursor.

Cursor semantics, per (connector, stream):

* The stored cursor is where the next incremental sync resumes. Each page's rows and the
  page's cursor are committed in one transaction, so a crash between pages resumes from
  the last stored page: nothing lost, nothing doubled (upserts are idempotent anyway).
* First sync (no stored cursor, no ``since``): the stream starts at the connector's
  ``start_date`` when set, else at the beginning of the source's data.
* ``since`` (``cskpi sync --since``) and ``full`` are backfills: the stream is read from
  ``since`` (or ``start_date``, or the beginning) but the stored cursor only moves forward:
  a page's cursor is stored only when its position is at or past the stored position,
  and a backfill that reaches the end stores where it ended. A ``since`` at or after the
  stored position has nothing older to fetch, so the sync simply continues incrementally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine

from cskpi.connectors.base import Connector, Page, Stream, close_connector
from cskpi.core.config.secrets import redact
from cskpi.core.http.client import AuthError
from cskpi.core.prefetch import prefetch
from cskpi.core.records import screen
from cskpi.core.store import sync_state as state
from cskpi.core.store.engine import write_transaction
from cskpi.core.store.pages import Checkpoint, store_page
from cskpi.core.store.upserts import Written

log = logging.getLogger("cskpi.sync")


@dataclass(frozen=True)
class Source:
    """A configured connector instance, as the engine needs it."""

    name: str
    connector: Connector
    start_date: datetime | None = None


@dataclass
class StreamResult:
    connector: str
    stream: str
    rows: int = 0  # rows read and sent to the store
    changed: int = 0  # of them, new or different from what was stored
    skipped: int = 0
    pages: int = 0
    position: datetime | None = None
    error: str | None = None
    interrupted: bool = False  # told to stop before the stream's end
    rejected: bool = False  # the credentials were refused: the other streams are not read


@dataclass
class SyncReport:
    streams: list[StreamResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.streams)

    @property
    def interrupted(self) -> bool:
        return any(s.interrupted for s in self.streams)


class SyncObserver(Protocol):
    def stream_started(self, connector: str, stream: str) -> None: ...
    def page_stored(self, result: StreamResult) -> None: ...
    def stream_finished(self, result: StreamResult) -> None: ...


class _Quiet:
    def stream_started(self, connector: str, stream: str) -> None:
        pass

    def page_stored(self, result: StreamResult) -> None:
        pass

    def stream_finished(self, result: StreamResult) -> None:
        pass


def _never() -> bool:
    return False


@dataclass(frozen=True)
class _Options:
    since: datetime | None
    full: bool
    observer: SyncObserver
    stop: Callable[[], bool]


@dataclass(frozen=True)
class _Plan:
    cursor: str | None
    since: datetime | None
    backfill: bool
    stored_position: datetime | None


def plan(
    stored: state.StreamState | None,
    since: datetime | None,
    full: bool,
    start_date: datetime | None,
) -> _Plan:
    """Where a stream starts reading, and whether this run is a backfill (see module doc)."""
    cursor = stored.cursor if stored else None
    position = stored.position if stored else None
    if since is None and not full:
        return _Plan(cursor, None if cursor else start_date, False, position)
    start = since or start_date
    if cursor is None:
        return _Plan(None, start, False, position)
    if start is not None and position is not None and start >= position:
        return _Plan(cursor, None, False, position)
    return _Plan(None, start, True, position)


def _ahead(position: datetime | None, stored: datetime | None) -> bool:
    """Known to be at or past the stored position (a backfill always has a stored cursor)."""
    return position is not None and stored is not None and position >= stored


def run_sync(
    engine: Engine,
    sources: Sequence[Source],
    *,
    since: datetime | None = None,
    full: bool = False,
    observer: SyncObserver | None = None,
    stop: Callable[[], bool] = _never,
) -> SyncReport:
    """Sync every stream of every source; one failing source does not stop the others.

    ``stop`` is asked after every stored page: once it says True (the daemon was told to
    shut down) the sync ends there, with that page and its cursor committed.
    """
    report = SyncReport()
    options = _Options(since, full, observer or _Quiet(), stop)
    with write_transaction(engine) as conn:
        if dead := state.end_dead_runs(conn):
            log.warning("%d earlier sync run(s) ended with their process: marked interrupted", dead)
    for source in sources:
        if stop():
            break
        report.streams.extend(_sync_source(engine, source, options))
    return report


def _sync_source(engine: Engine, source: Source, options: _Options) -> list[StreamResult]:
    with write_transaction(engine) as conn:
        run_id = state.start_run(conn, source.name)
    results: list[StreamResult] = []
    try:
        for stream in source.connector.streams():
            if options.stop():
                results.append(StreamResult(source.name, stream.name, interrupted=True))
                continue
            results.append(_sync_stream(engine, source, stream, options))
            if results[-1].rejected:  # every other stream would be refused the same way
                break
    except Exception as exc:  # streams() itself failed: a broken connector, not a bad page
        results.append(StreamResult(source.name, "*", error=_describe(exc)))
    finally:
        _close(source)
    errors = [f"{r.stream}: {r.error}" for r in results if r.error]
    with write_transaction(engine) as conn:
        state.finish_run(
            conn,
            run_id,
            sum(r.rows for r in results),
            sum(r.skipped for r in results),
            "; ".join(errors) or None,
            stopped=any(r.interrupted for r in results),
        )
    return results


def _sync_stream(engine: Engine, source: Source, stream: Stream, options: _Options) -> StreamResult:
    result = StreamResult(source.name, stream.name)
    options.observer.stream_started(source.name, stream.name)
    with engine.connect() as conn:
        stored = state.load_state(conn, source.name, stream.name)
    how = plan(stored, options.since, options.full, source.start_date)
    try:
        _pull(engine, source.name, stream, how, result, options)
    except Exception as exc:
        result.error, result.rejected = _describe(exc), isinstance(exc, AuthError)
        # Said once, by whoever ran the sync: the command's summary, the daemon's job line.
        log.debug("%s/%s failed: %s", source.name, stream.name, result.error)
    if not result.interrupted:  # a stream told to stop has not caught up: no success yet
        with write_transaction(engine) as conn:
            state.finish_stream(conn, source.name, stream.name, result.error)
    options.observer.stream_finished(result)
    return result


def _pull(
    engine: Engine,
    name: str,
    stream: Stream,
    how: _Plan,
    result: StreamResult,
    options: _Options,
) -> None:
    last: Checkpoint | None = None  # the newest cursor read
    stored: Checkpoint | None = None  # the newest cursor stored
    # The next pages are read in a thread while one is stored.
    with closing(prefetch(stream.read(how.cursor, how.since))) as pages:
        for read in pages:
            kept, skipped = screen(read)
            page = replace(read, records=kept, skipped=skipped)
            checkpoint = _checkpoint(page, how)
            written = store_page(engine, name, page, stream.name, checkpoint)
            _count(result, name, page, written)
            if page.cursor is not None:
                last = (page.cursor, page.position)
            stored = checkpoint or stored
            options.observer.page_stored(result)
            if options.stop():
                result.interrupted = True  # a backfill's end is not reached: its cursor stays
                return
    if how.backfill and last is not None and last != stored and _may_end_at(last, how):
        with write_transaction(engine) as conn:
            state.save_progress(conn, name, stream.name, 0, last)


def _may_end_at(last: Checkpoint, how: _Plan) -> bool:
    # A completed backfill reached the source's present; only a known older position stops it.
    return last[1] is None or how.stored_position is None or last[1] >= how.stored_position


def _checkpoint(page: Page, how: _Plan) -> Checkpoint | None:
    if page.cursor is None:
        return None
    if how.backfill and not _ahead(page.position, how.stored_position):
        return None
    return (page.cursor, page.position)


def _count(result: StreamResult, name: str, page: Page, written: Written) -> None:
    result.pages += 1
    result.rows += written.rows
    result.changed += written.changed
    result.skipped += len(page.skipped)
    if page.position is not None:
        result.position = page.position
    for bad in page.skipped:
        log.warning("%s/%s: skipped record %s: %s", name, result.stream, bad.record_id, bad.reason)


def _close(source: Source) -> None:
    """Release the connector's sessions with its run; a failure to is logged, not raised."""
    try:
        close_connector(source.connector)
    except Exception as exc:
        log.warning("%s: closing the connector failed: %s", source.name, _describe(exc))


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")
