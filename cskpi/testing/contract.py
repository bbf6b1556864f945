"""The connector contract: one pytest suite every connector runs against its own imitation.

A connector, built-in or a plugin, proves the promises the sync engine builds on:

1. a full sync stores every record the source serves, field by field;
2. syncing again changes no row and stores nothing new;
3. a crash after page k resumes with nothing lost or doubled;
4. ``--since`` never moves a stored cursor back;
5. a malformed record is skipped and counted, and the rest of its page is stored;
6. 429, 5xx and dropped connections are retried (HTTP connectors).

Subclass :class:`ConnectorContract` in a test module (name it ``Test…``) and give it a
``source`` fixture that yields a :class:`ContractSource`: a fresh imitation of the vendor
and how to reach it. A case the connector cannot express is named in ``cannot`` with the
reason, and is skipped with it::

    class TestHelpScoutContract(ConnectorContract):
        cannot: ClassVar[Mapping[str, str]] = {"bad_record": "every mailbox message maps"}

        @pytest.fixture
        def source(self) -> Iterator[ContractSource]:
            with HelpScoutImitation(conversations=120) as server:
                yield HelpScoutSource(server)

The suite drives the real engine (``run_sync`` on a SQLite file in ``tmp_path``; override
``store_url_for`` for PostgreSQL) and reads what was stored with plain SQL. Imitations
should serve a few pages of each stream, so a crash can fall between two of them, and wait
on a fake clock, so no retry sleeps.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import Engine

from cskpi.connectors import base
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, SyncReport, run_sync
from cskpi.testing.stored import (
    TABLES,
    Positions,
    Stored,
    positions,
    query,
    replaced,
    row_id,
    rows_of,
    stored,
)

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ContractSource:
    """One fresh imitation of a source, and how the contract reaches it.

    Override :meth:`connector` and :meth:`held`; the hooks after them only for the cases
    the connector can express (the others are named in ``ConnectorContract.cannot``).
    """

    name: str = "contract"
    """The connector's name in the store (ids are stored as ``"{name}:{external id}"``)."""

    def connector(self) -> base.Connector:
        """A new connector instance named :attr:`name`, reading this imitation."""
        raise NotImplementedError

    def held(self) -> Mapping[str, Collection[str]]:
        """Table -> the external ids of every record the imitation serves, known from the
        imitation's own data (not from the connector). A table left out is checked against
        what the connector's streams yield; a table given must match exactly."""
        raise NotImplementedError

    def serve_bad_record(self) -> Mapping[str, Collection[str]]:
        """Make the imitation serve one malformed record, in the middle of a page; return
        what it takes down, as :meth:`held` names it: the record's own table and id, and
        whatever only it carries (a conversation's messages, say)."""
        raise NotImplementedError

    def script_faults(self) -> None:
        """Script a 429, a 5xx and a dropped connection mid-stream, each answered once."""
        raise NotImplementedError

    def faults_served(self) -> Collection[int]:
        """The HTTP statuses the imitation answered with, 0 for a dropped connection."""
        raise NotImplementedError


class SimulatedCrashError(Exception):
    """Raised by a stream the contract crashes on purpose."""


@dataclass
class _Tap:
    """Wraps a stream: remembers the pages it yields, and raises after ``crash_after``."""

    name: str
    inner: base.Stream
    pages: list[base.Page] = field(default_factory=list)
    crash_after: int | None = None

    def read(self, cursor: str | None, since: datetime | None) -> Iterator[base.Page]:
        for n, page in enumerate(self.inner.read(cursor, since), 1):
            self.pages.append(page)
            yield page
            if n == self.crash_after:  # the engine asks for page k+1: the process dies
                raise SimulatedCrashError(f"{self.name}: crashed after page {n}")


# Records that replace what is stored for their ticket in a table.
_REPLACING = (("status_change", base.StatusHistory), ("vendor_metric", base.VendorMetrics))


class _Tapped:
    """A connector whose streams are tapped; the one named ``crash`` crashes after k pages."""

    type: ClassVar[str] = "contract-tap"
    Settings: ClassVar[builtins.type[base.ConnectorSettings]] = base.ConnectorSettings

    def __init__(self, source: ContractSource, crash: tuple[str, int] | None = None) -> None:
        self.inner, self.name, self.crash = source.connector(), source.name, crash
        self.taps: dict[str, _Tap] = {}

    def check(self) -> None:
        self.inner.check()

    def streams(self) -> Sequence[base.Stream]:
        self.taps = {s.name: _Tap(s.name, s) for s in self.inner.streams()}
        if self.crash is not None:
            self.taps[self.crash[0]].crash_after = self.crash[1]
        return list(self.taps.values())

    def yielded(self) -> Stored:
        """What the streams yielded, in the form the store keeps (the last record of an id
        wins, as an upsert's would)."""
        found: Stored = {table: {} for table in TABLES}
        for tap in self.taps.values():
            for page in tap.pages:
                for table, kind in _REPLACING:
                    gone = replaced(page, self.name, kind)
                    rows = found[table]
                    for key in [k for k, row in rows.items() if row["ticket_id"] in gone]:
                        del rows[key]
                for table, row in rows_of(page, self.name):
                    found[table][row_id(row)] = row
        return found


class ConnectorContract:
    """The suite; a subclass provides the ``source`` fixture (see the module docstring)."""

    cannot: ClassVar[Mapping[str, str]] = {}
    """Case -> why the connector cannot express it: ``"bad_record"``, ``"retries"``."""

    crash_stream: ClassVar[str | None] = None
    """The stream to crash mid-way (one that checkpoints every page); default: the stream
    a clean sync read in the most pages."""

    since: ClassVar[datetime] = _EPOCH
    """A ``--since`` older than any stored position the imitation leads to."""

    @pytest.fixture
    def database(self, store_url_for: Callable[[str], str]) -> Iterator[Callable[[str], Engine]]:
        """The store of each name a case uses (the same store for the same name)."""
        engines: dict[str, Engine] = {}

        def store(name: str) -> Engine:
            if name not in engines:
                engines[name] = open_engine(store_url_for(name))
            return engines[name]

        yield store
        for engine in engines.values():
            engine.dispose()

    @pytest.fixture
    def store_url_for(self, tmp_path: Path) -> Callable[[str], str]:
        """An empty store's URL for a name: a SQLite file; override it for PostgreSQL."""
        return lambda name: f"sqlite:///{tmp_path / name}.db"

    def test_a_full_sync_stores_every_record_field_by_field(
        self, source: ContractSource, database: Callable[[str], Engine]
    ) -> None:
        engine = database("full")
        tapped = _Tapped(source)

        report = _sync(engine, source, tapped)

        assert report.ok, _errors(report)
        _assert_equals_source(
            stored(engine, source.name), tapped.yielded(), source.held(), source.name
        )

    def test_a_resync_changes_no_row_and_stores_nothing_new(
        self, source: ContractSource, database: Callable[[str], Engine]
    ) -> None:
        engine = database("resync")
        assert _sync(engine, source).ok
        before, cursors = stored(engine, source.name), positions(engine, source.name)

        report = _sync(engine, source)

        assert report.ok, _errors(report)
        assert stored(engine, source.name) == before
        assert positions(engine, source.name) == cursors

    def test_a_crash_after_page_k_resumes_with_nothing_lost_or_doubled(
        self, source: ContractSource, database: Callable[[str], Engine]
    ) -> None:
        clean = _Tapped(source)
        whole = _sync(database("clean"), source, clean)
        assert whole.ok, _errors(whole)
        stream, pages = self._crash_point(clean)
        engine = database("crashed")

        crashed = _sync(engine, source, _Tapped(source, (stream, pages // 2)))
        assert [r.stream for r in crashed.streams if r.error] == [stream]
        resumed = _sync(engine, source)

        assert resumed.ok, _errors(resumed)
        assert stored(engine, source.name) == stored(database("clean"), source.name)
        assert _rows(resumed, stream) < _rows(whole, stream), f"{stream} started over"

    def test_since_never_moves_the_stored_cursor_back(
        self, source: ContractSource, database: Callable[[str], Engine]
    ) -> None:
        engine = database("since")
        first = _Tapped(source)
        assert _sync(engine, source, first).ok
        before, content = positions(engine, source.name), stored(engine, source.name)
        assert any(position is not None for _, position in before.values())
        since = int(self.since.timestamp())
        assert all(since < _as_int(p) for _, p in before.values() if p is not None)

        # a backfill that dies after its first page, then one that runs to the end
        stream, _ = self._crash_point(first)
        _sync(engine, source, _Tapped(source, (stream, 1)), since=self.since)
        _assert_not_behind(positions(engine, source.name), before)
        report = _sync(engine, source, since=self.since)

        assert report.ok, _errors(report)
        assert sum(r.rows for r in report.streams) > 0, "the backfill read nothing"
        _assert_not_behind(positions(engine, source.name), before)
        assert stored(engine, source.name) == content

    def test_a_bad_record_is_skipped_and_counted_and_its_page_stored(
        self, source: ContractSource, database: Callable[[str], Engine]
    ) -> None:
        self._able("bad_record")
        lost = source.serve_bad_record()
        engine = database("bad")
        tapped = _Tapped(source)

        report = _sync(engine, source, tapped)

        assert report.ok, _errors(report)
        [skipping] = [r for r in report.streams if r.skipped]
        assert skipping.skipped == 1
        assert query(engine, "SELECT skipped FROM sync_run") == [{"skipped": 1}]
        served = source.held()
        assert all(set(ids) <= set(served[t]) for t, ids in lost.items()), "not served"
        held = {t: set(ids) - set(lost.get(t, ())) for t, ids in served.items()}
        _assert_equals_source(stored(engine, source.name), tapped.yielded(), held, source.name)
        assert positions(engine, source.name)[skipping.stream][0] is not None, "cursor held back"

    def test_429_5xx_and_dropped_connections_are_retried(
        self,
        source: ContractSource,
        database: Callable[[str], Engine],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self._able("retries")
        monkeypatch.setattr("time.sleep", _refuse_to_sleep)
        source.script_faults()
        engine = database("faults")
        tapped = _Tapped(source)

        report = _sync(engine, source, tapped)

        assert report.ok, _errors(report)
        served = set(source.faults_served())
        assert {429, 0} <= served, served
        assert any(status >= 500 for status in served), served
        _assert_equals_source(
            stored(engine, source.name), tapped.yielded(), source.held(), source.name
        )

    def _crash_point(self, clean: _Tapped) -> tuple[str, int]:
        """The stream to crash, and how many pages a clean sync read of it."""
        pages_of = {name: len(tap.pages) for name, tap in clean.taps.items()}
        stream = self.crash_stream or max(pages_of, key=pages_of.__getitem__)
        assert pages_of[stream] >= 2, f"the imitation must serve {stream} in two pages or more"
        return stream, pages_of[stream]

    def _able(self, case: str) -> None:
        if case in self.cannot:
            pytest.skip(f"{type(self).__name__} cannot express {case}: {self.cannot[case]}")


# --- syncing -------------------------------------------------------------------------------


def _sync(
    engine: Engine,
    source: ContractSource,
    connector: base.Connector | None = None,
    since: datetime | None = None,
) -> SyncReport:
    return run_sync(engine, [Source(source.name, connector or source.connector())], since=since)


# --- what the cases assert -------------------------------------------------------------------


def _assert_equals_source(
    found: Stored, yielded: Stored, held: Mapping[str, Collection[str]], name: str
) -> None:
    """Stored = what the streams yielded, field by field; and for each table ``held``
    names, the ids are exactly the imitation's."""
    for table in TABLES:
        stored_ids, yielded_ids = set(found[table]), set(yielded[table])
        assert stored_ids == yielded_ids, (table, stored_ids ^ yielded_ids)
        if table in held:
            source_ids = {f"{name}:{i}" for i in held[table]}
            assert stored_ids == source_ids, (table, sorted(stored_ids ^ source_ids)[:10])
        for ident, row in yielded[table].items():
            got = {column: found[table][ident].get(column) for column in row}
            assert got == row, (table, ident)


def _assert_not_behind(after: Positions, before: Positions) -> None:
    for stream, (cursor, position) in before.items():
        new_cursor, new_position = after[stream]
        if position is None or new_position == position:
            assert (new_cursor, new_position) == (cursor, position), stream
        else:
            assert _as_int(new_position) > _as_int(position), (stream, "moved back")


def _as_int(value: object) -> int:
    return int(str(value))


def _rows(report: SyncReport, stream: str) -> int:
    return sum(r.rows for r in report.streams if r.stream == stream)


def _errors(report: SyncReport) -> list[str]:
    return [f"{r.stream}: {r.error}" for r in report.streams if r.error]


def _refuse_to_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s in real time: retries must wait on a fake clock")
