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
from cskpi.core import state
from cskpi.core.db import UPSERTS, open_engine, upsert_records, write_transaction
from cskpi.core.page_store import Planned, store_page, store_pages, writer_pids
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


def test_pages_sent_after_a_failed_one_are_not_stored(store: Engine) -> None:
    """Each page is sent before the previous page's answer is read: the worker must refuse
    what follows a failure, or a later cursor would commit past the page that failed."""
    planned = [
        Planned(base.Page([ticket(1)]), state.progress("zd", "tickets", 1, ("1", T0))),
        Planned(base.Page([ticket(2)]), ("INSERT INTO no_such_table VALUES (1)", {})),
        Planned(base.Page([ticket(3)]), state.progress("zd", "tickets", 1, ("3", T0))),
    ]
    pages = store_pages(store, "zd", planned)
    first, rows = next(pages)
    assert (first, rows) == (planned[0], 1)
    with pytest.raises(Exception, match="no_such_table"):
        next(pages)
    assert [r[0] for r in dump(store)["ticket"]] == ["zd:1"]
    with store.connect() as conn:
        saved = state.load_state(conn, "zd", "tickets")
    assert saved is not None
    assert (saved.cursor, saved.rows) == ("1", 1)
    store_page(store, "zd", base.Page([ticket(4)]))  # the next sync's first page is written
    assert [r[0] for r in dump(store)["ticket"]] == ["zd:1", "zd:4"]


def test_a_writer_that_died_is_replaced_before_the_page_is_sent(store: Engine) -> None:
    store_page(store, "zd", base.Page([ticket(1)]))
    dead = writer_pids()
    assert dead
    assert os.getpid() not in dead
    for pid in dead:
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
    store_page(store, "zd", base.Page([ticket(2)]))
    assert not set(writer_pids()) & set(dead)
    assert [r[0] for r in dump(store)["ticket"]] == ["zd:1", "zd:2"]


def test_an_in_memory_store_is_written_in_this_process() -> None:
    engine = open_engine("sqlite://")
    before = writer_pids()
    assert store_page(engine, "zd", base.Page(mixed_records())) == 8
    assert writer_pids() == before
    assert [len(rows) for rows in dump(engine).values()] == [2, 2, 1, 1, 1, 1]


def test_after_a_sync_the_database_file_alone_holds_its_pages(
    store: Engine, tmp_path: Path
) -> None:
    """After a sync nothing of it waits in the worker's write-ahead log."""
    store_page(store, "zd", base.Page(mixed_records()))
    store.dispose()
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "store.db").read_bytes())  # the WAL file left behind
    engine = open_engine(f"sqlite:///{copy}")
    assert [len(rows) for rows in dump(engine).values()] == [2, 2, 1, 1, 1, 1]
    engine.dispose()
