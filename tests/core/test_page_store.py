"""Storing a page: through the SQLite worker (a SQLite file) or SQLAlchemy's connection
(an in-memory store, PostgreSQL) the store ends the same, and a page's rows and its
bookkeeping commit together or not at all."""

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core import columnar, state
from cskpi.core.db import UPSERTS, open_engine, upsert_records, write_transaction
from cskpi.core.page_store import release, store_page
from tests.core.test_db import dump, mixed_records
from tests.fakes import T0, ticket


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


def in_process(tmp_path: Path, pages: list[base.Page], connector: str = "zd") -> Engine:
    """The same pages stored by ``upsert_records`` on SQLAlchemy's own connection."""
    engine = open_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    for page in pages:
        with write_transaction(engine) as conn:
            upsert_records(conn, connector, page.records, page.rows)
    return engine


def as_rows(records: list[base.Record]) -> dict[type[base.Record], list[tuple[object, ...]]]:
    rows: dict[type[base.Record], list[tuple[object, ...]]] = {}
    for record in records:
        rows.setdefault(type(record), []).append(UPSERTS[type(record)].build(record))
    return rows


PAGES = [
    base.Page(mixed_records()),
    base.Page(  # repeats within a page: the newer state wins, a deletion stays
        [
            ticket(1, status="solved", deleted=True, updated_at=T0 + timedelta(days=2)),
            ticket(2, status="open"),
            ticket(1, status="open", updated_at=T0 + timedelta(days=1)),
            ticket(1, status="pending", updated_at=T0 + timedelta(days=2)),
            ticket(2, status="new"),
        ]
    ),
    base.Page([ticket(3, status="solved", priority=None)], rows=as_rows([ticket(4, tags=["x"])])),
    base.Page([], rows=as_rows([ticket(1, status="open", updated_at=T0)])),  # older: ignored
    base.Page([base.Rating("r1", "csat", 2, 1, 5, T0 + timedelta(days=3), "2", None, None)]),
]


def test_the_worker_stores_what_the_connection_stores(store: Engine, tmp_path: Path) -> None:
    for page in PAGES:
        store_page(store, "zd", page)
    reference = in_process(tmp_path, PAGES)
    stored = dump(store)
    assert stored == dump(reference)
    assert [len(stored[t]) for t in stored] == [4, 2, 1, 1, 1, 1]
    with store.connect() as conn:
        rows = conn.execute(text("SELECT id, status, deleted, tags FROM ticket ORDER BY id"))
        assert [tuple(r) for r in rows] == [
            ("zd:1", "pending", 1, '["a", "b"]'),
            ("zd:2", "new", 0, "[]"),
            ("zd:3", "solved", 0, '["a", "b"]'),
            ("zd:4", "open", 0, '["x"]'),
        ]
        score = conn.execute(text("SELECT score, typeof(score), comment FROM rating")).one()
    assert tuple(score) == (2.0, "real", None)
    reference.dispose()


def test_a_page_and_its_cursor_commit_together(store: Engine) -> None:
    progress = state.progress("zd", "tickets", 8, ("42", T0))
    assert store_page(store, "zd", base.Page(mixed_records()), progress) == 8
    with store.connect() as conn:
        saved = state.load_state(conn, "zd", "tickets")
    assert saved is not None
    assert (saved.cursor, saved.position, saved.rows) == ("42", T0, 8)


def test_a_failing_page_stores_nothing_and_the_worker_goes_on(store: Engine) -> None:
    bad = ("INSERT INTO no_such_table VALUES (1)", {})
    progress = state.progress("zd", "tickets", 8, ("42", T0))
    with pytest.raises(Exception, match="no_such_table"):
        store_page(store, "zd", base.Page(mixed_records()), bad)
    assert all(rows == [] for rows in dump(store).values())
    store_page(store, "zd", base.Page(mixed_records()), progress)  # the same temporary tables
    assert [len(rows) for rows in dump(store).values()] == [2, 2, 1, 1, 1, 1]
    with store.connect() as conn:
        assert conn.execute(text("SELECT rows FROM sync_state")).scalar_one() == 8


def test_a_worker_that_died_is_replaced_before_the_page_is_sent(store: Engine) -> None:
    store_page(store, "zd", base.Page([ticket(1)]))
    pid = columnar.sqlite_worker().pid
    assert pid is not None
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped: as found later
    store_page(store, "zd", base.Page([ticket(2)]))
    assert columnar.sqlite_worker().pid not in (None, pid)
    assert [r[0] for r in dump(store)["ticket"]] == ["zd:1", "zd:2"]


def test_an_in_memory_store_is_written_in_this_process() -> None:
    engine = open_engine("sqlite://")
    before = columnar.sqlite_worker().pid
    assert store_page(engine, "zd", base.Page(mixed_records())) == 8
    assert columnar.sqlite_worker().pid == before
    assert [len(rows) for rows in dump(engine).values()] == [2, 2, 1, 1, 1, 1]


def test_released_the_database_file_alone_holds_the_pages(store: Engine, tmp_path: Path) -> None:
    """After a sync (``release``) nothing of it waits in the worker's write-ahead log."""
    store_page(store, "zd", base.Page(mixed_records()))
    release(store)
    store.dispose()
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "store.db").read_bytes())  # the WAL file left behind
    engine = open_engine(f"sqlite:///{copy}")
    assert [len(rows) for rows in dump(engine).values()] == [2, 2, 1, 1, 1, 1]
    engine.dispose()
