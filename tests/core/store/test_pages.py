"""Storing a page: its records and its stream's progress commit together or not at all, on
SQLite and on PostgreSQL alike, and repeats within and across pages end as the source says."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.store import sync_state as state
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.pages import store_page
from cskpi.core.store.upserts import Written, upsert_records
from tests.core.store.test_upserts import dump, mixed_records
from tests.fakes import T0, ticket
from tests.postgres import DIALECTS, PgServer, new_store


@pytest.fixture(params=DIALECTS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(new_store(request, request.param, tmp_path))
    yield engine
    engine.dispose()


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
    base.Page([ticket(3, status="solved", priority=None), ticket(4, tags=["x", "x"])]),
    base.Page([ticket(1, status="open", updated_at=T0)]),  # older than stored: ignored
    base.Page([base.Rating("r1", "csat", 2, 1, 5, T0 + timedelta(days=3), "2", None, None)]),
]


def as_list(tags: object) -> object:
    return json.loads(tags) if isinstance(tags, str) else tags


def test_pages_end_as_the_source_says(store: Engine) -> None:
    assert [store_page(store, "zd", page).rows for page in PAGES] == [8, 5, 2, 1, 1]
    stored = dump(store)
    assert [len(stored[t]) for t in stored] == [4, 2, 1, 1, 1, 1]
    with store.connect() as conn:
        rows = conn.execute(text("SELECT id, status, deleted, tags FROM ticket ORDER BY id"))
        assert [(r[0], r[1], bool(r[2]), as_list(r[3])) for r in rows] == [
            ("zd:1", "pending", True, ["a", "b"]),
            ("zd:2", "new", False, []),
            ("zd:3", "solved", False, ["a", "b"]),
            ("zd:4", "open", False, ["x"]),  # a tag repeated by the source is one tag
        ]
        score = conn.execute(text("SELECT score, comment FROM rating")).one()
    assert tuple(score) == (2.0, None)
    assert isinstance(score[0], float)


def test_a_page_and_its_cursor_commit_together(store: Engine) -> None:
    assert store_page(store, "zd", base.Page(mixed_records()), "tickets", ("42", T0)).rows == 8
    store_page(store, "zd", base.Page([ticket(9)]), "tickets")  # no checkpoint: rows counted
    with store.connect() as conn:
        saved = state.load_state(conn, "zd", "tickets")
    assert saved is not None
    assert (saved.cursor, saved.position, saved.rows) == ("42", T0, 9)


def test_a_failing_page_stores_nothing_and_moves_no_cursor(store: Engine) -> None:
    naive = ticket(7, updated_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        store_page(store, "zd", base.Page([*mixed_records(), naive]), "tickets", ("42", T0))
    assert all(rows == [] for rows in dump(store).values())
    with store.connect() as conn:
        assert state.load_state(conn, "zd", "tickets") is None
    store_page(store, "zd", base.Page(mixed_records()), "tickets", ("42", T0))
    assert [len(rows) for rows in dump(store).values()] == [2, 2, 1, 1, 1, 1]


def people(*named: tuple[str, str]) -> list[base.Person]:
    return [base.Person(pid, "customer", name) for pid, name in named]


def test_a_person_changing_across_pages_ends_as_the_last_page_says(store: Engine) -> None:
    names = ["Ann", "Ann", "Anna", "Ann", "Ann", "Anne", "Anne"]
    changed = []
    for i, name in enumerate(names):
        page = base.Page([*people(("u1", name), ("u2", "Bo")), ticket(i)])
        written = store_page(store, "zd", page)
        assert written.rows == 3
        changed.append(written.changed)
    # Each page's new ticket, and u1 when the name differs from the one stored.
    assert changed == [3, 1, 2, 2, 1, 2, 1]
    stored = {row[0]: row[3] for row in dump(store)["person"]}
    assert stored == {"zd:u1": "Anne", "zd:u2": "Bo"}
    assert [r[0] for r in dump(store)["ticket"]] == [f"zd:{i}" for i in range(len(names))]


def test_an_in_memory_store_is_written_like_a_file() -> None:
    engine = open_engine("sqlite://")
    assert store_page(engine, "zd", base.Page(mixed_records())).rows == 8
    assert [len(rows) for rows in dump(engine).values()] == [2, 2, 1, 1, 1, 1]


def test_an_unreachable_postgresql_store_fails_without_its_password() -> None:
    from socket import socket

    from cskpi.core.store.dialect import make_engine

    with socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://cskpi:hunter2-secret@127.0.0.1:{port}/kpis")
    with pytest.raises(Exception, match=r"Connection refused|connection failed") as caught:
        store_page(engine, "zd", base.Page([ticket(1)]))
    assert "hunter2" not in str(caught.value)


def test_postgresql_waits_for_a_row_another_transaction_is_storing_then_upserts_it(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two processes storing one new row at once: the second waits for the first's commit
    and then upserts; one row, the newer state, no error."""
    import psycopg

    engine = open_engine(new_store(request, "postgresql", tmp_path))
    url = engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    newer = ticket(1, status="solved", updated_at=T0 + timedelta(days=1))
    failures: list[BaseException] = []

    def write() -> None:
        try:
            store_page(engine, "zd", base.Page([newer]))
        except BaseException as exc:
            failures.append(exc)

    waiting = 0
    with engine.connect() as other, other.begin():
        upsert_records(other, "zd", [ticket(1)])  # stored, not yet committed
        writer = threading.Thread(target=write)
        writer.start()
        with psycopg.connect(url, autocommit=True) as watch:
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
    assert waiting == 1
    assert not failures
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status FROM ticket")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("zd:1", "solved")]


def test_storing_pages_on_postgresql_writes_no_error_to_the_server_log(
    request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer
) -> None:
    """New rows, stored rows, repeats within a page and an older state: all plain upserts."""
    if pg_server.folder is None:
        pytest.skip("an external server's log is not ours to read")
    log = pg_server.folder / "log"
    before = log.stat().st_size
    engine = open_engine(new_store(request, "postgresql", tmp_path))
    for page in [*PAGES, *PAGES]:
        store_page(engine, "zd", page, "tickets", ("1", datetime.now(UTC)))
    engine.dispose()
    with log.open("rb") as lines:
        lines.seek(before)
        written = lines.read().decode(errors="replace")
    assert "ERROR" not in written, written


def test_two_connectors_records_in_one_transaction_each_keep_their_own(store: Engine) -> None:
    """PostgreSQL stages a table's rows in a temporary table: what one call staged must
    not come again with the next call's connector name."""
    with write_transaction(store) as conn:
        upsert_records(conn, "a", [ticket(1), ticket(1, status="solved")])
        upsert_records(conn, "b", [ticket(2)])
    assert [(r[0], r[4]) for r in dump(store)["ticket"]] == [("a:1", "solved"), ("b:2", "open")]


def test_a_status_history_replaces_the_ticket_s_stored_changes(store: Engine) -> None:
    """The mailbox recomputes a thread's history whole: a solve that moved leaves no stale
    change, another ticket's changes stay, and the same change sent twice is one row."""
    day = timedelta(days=1)
    first = store_page(store, "zd", base.Page([
        base.StatusHistory("1", [(T0, "open"), (T0 + day, "solved")]),
        base.StatusChange("2", T0, "new"), base.StatusChange("2", T0, "new"),
    ]))  # fmt: skip
    same = base.Page([base.StatusHistory("1", [(T0, "open"), (T0 + day, "solved")])])
    again = store_page(store, "zd", same)
    moved = store_page(store, "zd", base.Page([
        base.StatusHistory("1", [(T0, "open"), (T0 + 2 * day, "solved")]),
    ]))  # fmt: skip
    # Counted as changed: rows new to the store, and stale ones a history dropped.
    assert (first.changed, again.changed) == (3, 0)
    assert moved == Written(rows=2, changed=2)  # the old solve gone, the new one stored
    with store.connect() as conn:
        rows = conn.execute(text("SELECT ticket_id, at, status FROM status_change ORDER BY 1, 2"))
        stored = [tuple(r) for r in rows]
    start = int(T0.timestamp())
    assert stored == [
        ("zd:1", start, "open"), ("zd:1", start + 2 * 86400, "solved"), ("zd:2", start, "new"),
    ]  # fmt: skip
