import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from cskpi.core.store.engine import open_engine
from cskpi.core.store.sync_state import StreamState, all_states
from cskpi.core.sync import Source, plan, run_sync
from tests.fakes import T0, FakeConnector, FakeStream, ticket
from tests.postgres import new_store

TEN = [ticket(i) for i in range(10)]  # updated at T0 + i h 30 min


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store on SQLite and on PostgreSQL (``store_url`` is parametrised)."""
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


def tickets(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM ticket ORDER BY id"))]


def cursor_of(engine: Engine, connector: str = "zd") -> str | None:
    return {s.connector: s.cursor for s in all_states(engine)}.get(connector)


def sync(engine: Engine, stream: FakeStream, **kw: object):
    return run_sync(engine, [Source("zd", FakeConnector(stream))], **kw)  # type: ignore[arg-type]


def test_a_crash_after_page_k_resumes_from_page_k(engine: Engine, tmp_path, request) -> None:
    crashing = FakeStream(TEN, fail_after_pages=3)
    report = sync(engine, crashing)
    assert not report.ok
    assert "server went away after 3 pages" in (report.streams[0].error or "")
    assert len(tickets(engine)) == 6
    assert cursor_of(engine) == "6"

    healthy = FakeStream(TEN)
    assert sync(engine, healthy).ok
    assert healthy.calls == [("6", None)]

    clean = open_engine(new_store(request, engine.dialect.name, tmp_path))
    sync(clean, FakeStream(TEN))
    assert tickets(engine) == tickets(clean)
    assert [s.rows for s in all_states(engine)] == [10]


def test_an_incremental_sync_starts_at_start_date_then_follows_the_cursor(engine: Engine) -> None:
    stream = FakeStream(TEN)
    run_sync(engine, [Source("zd", FakeConnector(stream), start_date=T0 + timedelta(hours=5))])
    run_sync(engine, [Source("zd", FakeConnector(stream), start_date=T0 + timedelta(hours=5))])
    assert stream.calls == [(None, T0 + timedelta(hours=5)), ("10", None)]
    assert len(tickets(engine)) == 5


def test_since_backfills_without_moving_the_cursor_back(engine: Engine) -> None:
    sync(engine, FakeStream(TEN[6:]))  # a first sync that only saw recent data
    assert cursor_of(engine) == "4"
    # the backfill source now has all ten; it crashes half way through
    backfill = FakeStream(TEN, fail_after_pages=2)
    sync(engine, backfill, since=T0)
    assert backfill.calls == [(None, T0)]
    assert cursor_of(engine) == "4", (
        "a backfill page behind the stored position must not move the cursor"
    )
    done = FakeStream(TEN)
    assert sync(engine, done, since=T0).ok
    assert cursor_of(engine) == "10"
    assert len(tickets(engine)) == 10


def test_since_after_the_stored_position_just_continues(engine: Engine) -> None:
    sync(engine, FakeStream(TEN[:4]))
    stream = FakeStream(TEN)
    sync(engine, stream, since=T0 + timedelta(hours=9))
    assert stream.calls == [("4", None)]
    assert len(tickets(engine)) == 10


def test_plan_rules() -> None:
    stored = StreamState("zd", "tickets", "c", T0 + timedelta(days=5), None, None, 0)
    assert plan(None, None, False, T0).since == T0
    assert plan(stored, None, False, T0).cursor == "c"
    full = plan(stored, None, True, None)
    assert (full.cursor, full.since, full.backfill) == (None, None, True)
    early = plan(stored, T0, False, None)
    assert (early.cursor, early.since, early.backfill) == (None, T0, True)


def test_one_failing_connector_does_not_stop_the_others(engine: Engine) -> None:
    broken = Source("broken", FakeConnector(FakeStream(TEN, fail_after_pages=0)))
    good = Source("good", FakeConnector(FakeStream(TEN)))
    report = run_sync(engine, [broken, good])
    assert not report.ok
    assert [(s.connector, s.error is None, s.rows) for s in report.streams] == [
        ("broken", False, 0),
        ("good", True, 10),
    ]
    with engine.connect() as conn:
        runs = conn.execute(
            text("SELECT connector, status, rows, error FROM sync_run ORDER BY id")
        ).all()
    assert [tuple(r)[:3] for r in runs] == [("broken", "failed", 0), ("good", "ok", 10)]
    assert "BoomError" in runs[0][3]
    states = {s.connector: s for s in all_states(engine)}
    assert states["broken"].last_error
    assert states["broken"].last_success_at is None
    assert states["good"].last_error is None
    assert states["good"].last_success_at is not None


def test_bad_records_are_skipped_counted_and_logged(engine: Engine, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="cskpi")
    report = sync(engine, FakeStream(TEN, bad_ids=["3"]))
    assert report.ok
    assert report.streams[0].skipped == 1
    assert len(tickets(engine)) == 9
    assert cursor_of(engine) == "10"
    assert "zd/tickets: skipped record 3: no created_at" in caplog.text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT skipped FROM sync_run")).scalar_one() == 1


def test_a_later_error_keeps_the_last_success_time(engine: Engine) -> None:
    sync(engine, FakeStream(TEN))
    first = all_states(engine)[0].last_success_at
    sync(engine, FakeStream([*TEN, ticket(10)], fail_after_pages=0))
    state = all_states(engine)[0]
    assert state.last_success_at == first
    assert state.last_error
    sync(engine, FakeStream(TEN))
    assert all_states(engine)[0].last_error is None


class Unpositioned(FakeStream):
    """A stream whose pages carry cursors but no positions."""

    def read(self, cursor, since):  # type: ignore[no-untyped-def]
        for page in super().read(cursor, since):
            yield type(page)(page.records, page.cursor, None, page.skipped)


def test_a_backfill_without_positions_stores_the_cursor_only_at_the_end(engine: Engine) -> None:
    sync(engine, Unpositioned(TEN[:6]))
    assert cursor_of(engine) == "6"
    sync(engine, Unpositioned(TEN, fail_after_pages=2), since=T0)
    assert cursor_of(engine) == "6", "unknown positions: a backfill page must not move the cursor"
    sync(engine, Unpositioned(TEN), since=T0)
    assert cursor_of(engine) == "10"


class DaemonInterleaved:
    """Observer of a backfill: after its first stored page, "the daemon" (another engine,
    as another process would have) syncs the stream to its end; every page's stored
    cursor is recorded."""

    def __init__(self, daemon: Engine, backfill: Engine) -> None:
        self.daemon, self.backfill = daemon, backfill
        self.cursors: list[int] = []

    def stream_started(self, connector: str, stream: str) -> None:
        pass

    def page_stored(self, result: object) -> None:
        if not self.cursors:
            assert sync(self.daemon, FakeStream(TEN)).ok
        self.cursors.append(int(cursor_of(self.backfill) or 0))

    def stream_finished(self, result: object) -> None:
        pass


def test_a_backfill_racing_the_daemon_never_moves_the_cursor_back(
    engine: Engine, store_url: str
) -> None:
    sync(engine, FakeStream(TEN[:4]))
    daemon = open_engine(store_url)
    watch = DaemonInterleaved(daemon, engine)
    # The backfill planned with the stored position of ticket 3; the daemon then reached 10,
    # so its pages for tickets 2-9 are behind the cursor although ahead of its plan.
    assert sync(engine, FakeStream(TEN), since=T0, observer=watch).ok
    daemon.dispose()
    assert watch.cursors == [10, 10, 10, 10, 10]
    assert len(tickets(engine)) == 10


def test_two_processes_syncing_one_stream_at_once_store_each_row_once(
    engine: Engine, store_url: str
) -> None:
    """Overlapping pages written in opposite orders by two engines: no deadlock, no row
    twice (on PostgreSQL both really run at once; SQLite queues the writers)."""
    many = [ticket(i) for i in range(300)]
    engines = [open_engine(store_url) for _ in range(2)]
    streams = [FakeStream(many, page_size=7), FakeStream(many[::-1], page_size=5)]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(sync, engines, streams))
    assert all(r.ok for r in reports), reports
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT id) FROM ticket")).one() == (
            300,
            300,
        )
    assert cursor_of(engine) == "300"
    for e in engines:
        e.dispose()
