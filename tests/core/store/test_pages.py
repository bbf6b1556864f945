"""Storing a page: through the SQLite worker (a SQLite file), the PostgreSQL writer or
SQLAlchemy's connection (an in-memory store) the store ends the same, and a page's rows and
its bookkeeping commit together or not at all."""

import gc
import json
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.store import postgres_pages, postgres_writes
from cskpi.core.store import sync_state as state
from cskpi.core.store.engine import (
    UPSERTS,
    open_engine,
    rows_by_type,
    upsert_records,
    write_transaction,
)
from cskpi.core.store.pages import (
    GC_THRESHOLD,
    Planned,
    SentRows,
    fewer_collections,
    store_page,
    store_pages,
    writer_pids,
)
from tests.core.store.test_engine import dump, mixed_records
from tests.fakes import T0, ticket
from tests.postgres import DIALECTS, new_store


@pytest.fixture(params=DIALECTS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        engine = open_engine(new_store(request, request.param, tmp_path))
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


def in_process(
    request: pytest.FixtureRequest, store: Engine, tmp_path: Path, pages: list[base.Page]
) -> Engine:
    """The same pages stored by ``upsert_records`` on SQLAlchemy's own connection, in a
    store of ``store``'s dialect."""
    dialect = store.url.get_backend_name()
    engine = open_engine(new_store(request, dialect, tmp_path))
    for page in pages:
        with write_transaction(engine) as conn:
            upsert_records(conn, "zd", page.records, page.rows)
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


def test_the_worker_stores_what_the_connection_stores(
    request: pytest.FixtureRequest, store: Engine, tmp_path: Path
) -> None:
    for page in PAGES:
        store_page(store, "zd", page)
    reference = in_process(request, store, tmp_path, PAGES)
    stored = dump(store)
    assert stored == dump(reference)
    assert [len(stored[t]) for t in stored] == [4, 2, 1, 1, 1, 1]
    with store.connect() as conn:
        rows = conn.execute(text("SELECT id, status, deleted, tags FROM ticket ORDER BY id"))
        assert [(r[0], r[1], bool(r[2]), as_list(r[3])) for r in rows] == [
            ("zd:1", "pending", True, ["a", "b"]),
            ("zd:2", "new", False, []),
            ("zd:3", "solved", False, ["a", "b"]),
            ("zd:4", "open", False, ["x"]),
        ]
        score = conn.execute(text("SELECT score, comment FROM rating")).one()
    assert tuple(score) == (2.0, None)
    assert isinstance(score[0], float)
    reference.dispose()


def as_list(tags: object) -> object:
    return json.loads(tags) if isinstance(tags, str) else tags


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


def people(*named: tuple[str, str]) -> list[base.Person]:
    return [base.Person(pid, "end-user", name) for pid, name in named]


def sent_people(sent: SentRows, *records: base.Record) -> list[tuple[object, ...]]:
    by_type = sent.unsent(rows_by_type(records))
    assert by_type.get(base.Ticket, []) == as_rows(
        [r for r in records if isinstance(r, base.Ticket)]
    ).get(base.Ticket, [])  # only people, groups and organizations are left out
    return [row[:2] for row in by_type.get(base.Person, [])]


def test_a_person_sent_again_unchanged_is_left_out_of_the_later_page() -> None:
    sent = SentRows()
    assert sent_people(sent, *people(("u1", "Ann"), ("u2", "Bo")), ticket(1)) == [
        ("u1", "Ann"),
        ("u2", "Bo"),
    ]
    assert sent_people(sent, *people(("u1", "Ann"), ("u2", "Bob")), ticket(2)) == [("u2", "Bob")]
    assert sent_people(sent, *people(("u2", "Bob"), ("u1", "Ann"))) == []
    assert sent_people(sent, *people(("u2", "Bo"))) == [("u2", "Bo")]  # changed back: sent
    # A page holding an id twice sends all its rows, and the next page sends it again.
    twice = people(("u1", "Ann"), ("u1", "Anna"), ("u1", "Ann"))
    assert sent_people(sent, *twice) == [("u1", "Ann"), ("u1", "Anna"), ("u1", "Ann")]
    assert sent_people(sent, *people(("u1", "Ann"))) == [("u1", "Ann")]
    assert sent_people(sent, *people(("u1", "Ann"))) == []
    # Groups and organizations are remembered the same way, each kind on its own.
    group, org = base.Group("u1", "Ann"), base.Organization("u1", "Ann")
    assert sent.unsent(rows_by_type([group, org])) == rows_by_type([group, org])
    assert sent.unsent(rows_by_type([group, org])) == {base.Group: [], base.Organization: []}


def ids_in_one_slot(count: int, slots: int) -> list[str]:
    """Person ids whose hashes pick the same slot of a table of ``slots``."""
    by_slot: dict[int, list[str]] = {}
    for n in range(100_000):
        same = by_slot.setdefault(hash(f"u{n}") & (slots - 1), [])
        same.append(f"u{n}")
        if len(same) == count:
            return same
    raise AssertionError("no such ids")


def test_people_whose_ids_pick_one_slot_are_all_remembered() -> None:
    crowded = ids_in_one_slot(3, SentRows.FIRST_SLOTS)
    sent = SentRows()
    assert sent_people(sent, *people((crowded[0], "Ann"), (crowded[1], "Bo"))) == [
        (crowded[0], "Ann"),
        (crowded[1], "Bo"),
    ]
    assert sent_people(sent, *people((crowded[2], "Cy"))) == [(crowded[2], "Cy")]
    again = people((crowded[2], "Cy"), (crowded[0], "Ann"), (crowded[1], "Bo"))
    assert sent_people(sent, *again) == []
    assert sent_people(sent, *people((crowded[1], "Bob"))) == [(crowded[1], "Bob")]
    assert sent.taken[base.Person] == 3


def test_once_the_largest_table_is_full_new_people_are_sent_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SentRows, "FIRST_SLOTS", 4)
    monkeypatch.setattr(SentRows, "SLOTS", 4)  # full at 3 ids (SentRows.FULL)
    sent = SentRows()
    first = people(("u1", "Ann"), ("u2", "Bo"))
    assert len(sent_people(sent, *first)) == 2
    assert sent_people(sent, *people(("u3", "Cy"), ("u4", "Di"))) == [("u3", "Cy"), ("u4", "Di")]
    assert sent.taken[base.Person] == 2  # 2 + 2 would pass 3: neither is remembered
    assert sent_people(sent, *people(("u3", "Cy"))) == [("u3", "Cy")]  # 2 + 1: now it is
    assert sent_people(sent, *people(("u3", "Cy"), ("u4", "Di"))) == [("u4", "Di")]
    assert sent_people(sent, *first) == []  # the ones remembered stay remembered
    assert sent_people(sent, *people(("u4", "Di"))) == [("u4", "Di")]


def test_a_person_changing_across_pages_ends_as_the_last_page_says(store: Engine) -> None:
    names = ["Ann", "Ann", "Anna", "Ann", "Ann", "Anne", "Anne"]
    planned = [
        Planned[None](base.Page([*people(("u1", name), ("u2", "Bo")), ticket(i)]))
        for i, name in enumerate(names)
    ]
    assert [rows for _, rows in store_pages(store, "zd", planned)] == [3] * len(names)
    stored = {row[0]: row[3] for row in dump(store)["person"]}
    assert stored == {"zd:u1": "Anne", "zd:u2": "Bo"}
    assert [r[0] for r in dump(store)["ticket"]] == [f"zd:{i}" for i in range(len(names))]


def test_the_collector_runs_less_while_syncs_store_pages_and_as_before_after(
    sqlite_store: Engine,
) -> None:
    before = gc.get_threshold()
    assert before[0] < GC_THRESHOLD
    raised = (GC_THRESHOLD, *before[1:])
    pages = store_pages(
        sqlite_store, "zd", [Planned[None](base.Page([ticket(i)])) for i in range(3)]
    )
    next(pages)
    assert gc.get_threshold() == raised
    with fewer_collections():  # a second sync side by side (the daemon's)
        assert list(pages)
        assert gc.get_threshold() == raised  # while the second goes on
    assert gc.get_threshold() == before
    with fewer_collections(), fewer_collections():
        assert gc.get_threshold() == raised
    assert gc.get_threshold() == before


def test_a_writer_that_died_is_replaced_before_the_page_is_sent(sqlite_store: Engine) -> None:
    store = sqlite_store
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
    sqlite_store: Engine, tmp_path: Path
) -> None:
    """After a sync nothing of it waits in the worker's write-ahead log."""
    store = sqlite_store
    store_page(store, "zd", base.Page(mixed_records()))
    store.dispose()
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "store.db").read_bytes())  # the WAL file left behind
    engine = open_engine(f"sqlite:///{copy}")
    assert [len(rows) for rows in dump(engine).values()] == [2, 2, 1, 1, 1, 1]
    engine.dispose()


def test_postgresql_copies_new_rows_and_upserts_stored_ones(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New rows go straight into their table (COPY); a table whose page holds a stored row
    is upserted instead, with the upsert's rules (a newer state wins), and so is a page
    that repeats an id; after such a conflict, the table's next pages are upserted without
    trying the copy. (The writer's side, run here rather than in the worker.)"""
    engine = open_engine(new_store(request, "postgresql", tmp_path))
    url = engine.url.render_as_string(hide_password=False)
    copied: list[tuple[str, bool]] = []
    plain = postgres_writes._copied

    def watched(cursor: object, batch: postgres_writes.Batch) -> bool:
        done = plain(cursor, batch)
        copied.append((batch.table, done))
        return done

    def write(*records: base.Record) -> None:
        batches = postgres_pages.page_batches("zd", rows_by_type(records))
        postgres_writes.write(url, batches, [])

    monkeypatch.setattr(postgres_writes, "_copied", watched)
    monkeypatch.setattr(postgres_writes, "UPSERTS_AFTER_CONFLICT", 2)
    later = T0 + timedelta(days=1)
    try:
        write(ticket(2), ticket(1))
        write(ticket(3), ticket(2, status="solved", updated_at=later))
        write(ticket(4), ticket(4, status="pending"))  # layered: upserted
        write(ticket(5), base.Person("u1", "end-user"))  # tickets upserted, the person copied
        write(ticket(6))  # the second page upserted after the conflict
        write(ticket(7))  # the copy is tried again
    finally:
        postgres_writes.close(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status FROM ticket ORDER BY id")).all()
    engine.dispose()
    assert copied == [("ticket", True), ("ticket", False), ("person", True), ("ticket", True)]
    assert [tuple(r) for r in rows] == [
        ("zd:1", "open"),
        ("zd:2", "solved"),
        ("zd:3", "open"),
        ("zd:4", "pending"),
        ("zd:5", "open"),
        ("zd:6", "open"),
        ("zd:7", "open"),
    ]


def test_an_unreachable_postgresql_store_is_named_without_its_password() -> None:
    from socket import socket

    from cskpi.core.store.dialect import make_engine

    with socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://cskpi:hunter2-secret@127.0.0.1:{port}/kpis")
    with pytest.raises(ConnectionError) as caught:
        store_page(engine, "zd", base.Page([ticket(1)]))
    assert f"cannot write to the store at postgresql+psycopg://cskpi:***@127.0.0.1:{port}/kpis" in (
        str(caught.value)
    )
    assert "hunter2" not in str(caught.value)


def test_a_postgresql_write_connection_the_server_closed_fails_its_page_and_is_replaced(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The page's own error is raised (not the failed ROLLBACK's), and the next write
    connects anew. (The writer's side, run here rather than in the worker.)"""
    import psycopg

    engine = open_engine(new_store(request, "postgresql", tmp_path))
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()

    def write(i: int) -> None:
        batches = postgres_pages.page_batches("zd", rows_by_type([ticket(i)]))
        postgres_writes.write(url, batches, [])

    write(1)
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    try:
        with pytest.raises(Exception, match="terminating connection") as caught:
            write(2)
        assert "ROLLBACK" not in str(caught.value)
        write(3)
    finally:
        postgres_writes.close(url)
    engine = open_engine(url)
    assert [r[0] for r in dump(engine)["ticket"]] == ["zd:1", "zd:3"]
    engine.dispose()


def test_postgresql_waits_for_a_row_another_transaction_is_storing_then_upserts_it(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes storing one new row at once: the copy waits for the other's commit,
    fails on the primary key, and upserts; one row, the newer state. (Writer's side here.)"""
    import threading

    import psycopg

    engine = open_engine(new_store(request, "postgresql", tmp_path))
    url = engine.url.render_as_string(hide_password=False)
    copied: list[bool] = []
    plain = postgres_writes._copied

    def watched(cursor: object, batch: postgres_writes.Batch) -> bool:
        copied.append(plain(cursor, batch))
        return copied[-1]

    monkeypatch.setattr(postgres_writes, "_copied", watched)
    newer = ticket(1, status="solved", updated_at=T0 + timedelta(days=1))
    batches = postgres_pages.page_batches("zd", rows_by_type([newer]))
    failures: list[BaseException] = []

    def write() -> None:
        try:
            postgres_writes.write(url, batches, [])
        except BaseException as exc:
            failures.append(exc)

    waiting = 0
    with engine.connect() as other, other.begin():
        upsert_records(other, "zd", [ticket(1)])  # stored, not yet committed
        writer = threading.Thread(target=write)
        writer.start()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as watch:
            pause = threading.Event()
            for _ in range(3000):  # until the writer waits for the other's lock (30 s at most)
                row = watch.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ).fetchone()
                waiting = row[0] if row else 0
                if waiting:
                    break
                pause.wait(0.01)
    writer.join(30)
    postgres_writes.close(url)
    assert waiting == 1
    assert not failures
    assert copied == [False]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status FROM ticket")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("zd:1", "solved")]


def test_a_postgresql_page_that_failed_after_staging_leaves_the_next_able_to_stage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A staging table made in a page that then failed was rolled back with it: the next
    page that upserts must make it again. (The writer's side, run here.)"""
    engine = open_engine(new_store(request, "postgresql", tmp_path))
    url = engine.url.render_as_string(hide_password=False)
    later = T0 + timedelta(days=1)

    def write(page_ticket: base.Ticket, *statements: tuple[str, dict[str, object]]) -> None:
        batches = postgres_pages.page_batches("zd", rows_by_type([page_ticket]))
        postgres_writes.write(url, batches, list(statements))

    try:
        write(ticket(1))
        with pytest.raises(Exception, match="no_such_table"):
            write(
                ticket(1, status="pending", updated_at=later), ("SELECT * FROM no_such_table", {})
            )
        write(ticket(1, status="solved", updated_at=later))  # upserted: staged again
    finally:
        postgres_writes.close(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM ticket")).scalar_one() == "solved"
    engine.dispose()


def test_a_sync_starts_its_writer_before_the_first_page_and_the_writer_loads_little(
    sqlite_store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from cskpi.core.store.reads.sqlite_process import SqliteWorker

    calls: list[str] = []
    for name in ("start", "send_write"):
        plain = getattr(SqliteWorker, name)
        monkeypatch.setattr(SqliteWorker, name, _recorded(calls, name, plain))
    store_page(sqlite_store, "zd", base.Page([ticket(1)]))
    assert calls[:2] == ["start", "send_write"]
    monkeypatch.undo()

    writer = SqliteWorker()
    writer.start()
    started = writer.pid
    assert started is not None
    writer.start()  # running: the same process
    assert writer.pid == started
    os.kill(started, signal.SIGKILL)
    os.waitid(os.P_PID, started, os.WEXITED | os.WNOWAIT)
    writer.start()  # died: a new one
    assert writer.pid not in (None, started)
    writer._stop()
    # What the writer loads for a PostgreSQL page: no SQLAlchemy, pyarrow or sqlmodel.
    probe = (
        "import sys, pickle, cskpi.core.store.reads.sqlite_process, cskpi.core.store.postgres_writes as w;"  # noqa: E501
        "print(sorted(m for m in ('sqlalchemy', 'pyarrow', 'sqlmodel') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_the_people_sent_are_remembered_as_their_table_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SentRows, "FIRST_SLOTS", 4)
    crowded = ids_in_one_slot(4, 64)  # one slot in every table up to 64 slots
    first = people(*((pid, "Ann") for pid in [*crowded[:2], "u-a", "u-b", "u-c"]))
    rest = people(*((pid, "Ann") for pid in [*crowded[2:], *(f"v{n}" for n in range(13))]))
    sent = SentRows()
    assert len(sent_people(sent, *first)) == 5
    assert len(sent.slots[base.Person][0]) == 16  # grown for the page: 4 -> 16
    assert len(sent_people(sent, *rest)) == 15
    assert len(sent.slots[base.Person][0]) == 64  # 16 -> 64, the first five moved along
    assert sent_people(sent, *first, *rest) == []
    assert sent.taken[base.Person] == 20
    assert base.Group not in sent.slots  # a kind takes room only once it comes


def _recorded(calls: list[str], name: str, plain: Any) -> Any:
    def recording(self: object, *args: object) -> object:
        calls.append(name)
        return plain(self, *args)

    return recording
