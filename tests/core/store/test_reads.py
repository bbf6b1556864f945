"""The KPI engine's columnar reads (core/columnar.py) on both store dialects."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from cskpi.core.store.engine import open_engine
from cskpi.core.store.reads import columns as columnar
from cskpi.core.store.reads.columns import open_reader, read, read_each

INSERT = (
    "INSERT INTO person (id, connector, external_id, role, name) "
    "VALUES (:id, 'zd', :id, 'agent', :name)"
)


def add_person(url: str, ident: str, name: str | None) -> None:
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(text(INSERT), {"id": ident, "name": name})
    engine.dispose()


@pytest.mark.parametrize("prefer_arrow", [True, False], ids=["arrow", "rows"])
def test_a_reader_keeps_one_snapshot_while_another_process_commits(
    store_url: str, prefer_arrow: bool
) -> None:
    """The in-process readers (on SQLite both are the DB-API one; the worker's side is the
    next test)."""
    add_person(store_url, "zd:1", "Ana")
    engine = open_engine(store_url)
    try:
        with open_reader(engine, prefer_arrow=prefer_arrow) as reader:
            first = reader.columns("SELECT COUNT(*) FROM person", {})
            add_person(store_url, "zd:2", "Bo")  # a sync committing a page meanwhile
            again = reader.columns("SELECT COUNT(*) FROM person", {})
        with open_reader(engine, prefer_arrow=prefer_arrow) as reader:
            after = reader.columns("SELECT COUNT(*) FROM person", {})
    finally:
        engine.dispose()
    assert (first[0].tolist(), again[0].tolist(), after[0].tolist()) == ([1], [1], [2])


# The worker's side of a read, run in a process of its own (the ADBC SQLite driver must not
# be loaded here, see columnar.py); a third process commits between its two queries.
WORKER_SNAPSHOT = """
import subprocess, sys
from cskpi.core.store.reads.sqlite_process import read_sqlite
path, insert, count = sys.argv[1], sys.argv[2], ["SELECT COUNT(*) FROM person"]
results = read_sqlite(path, count * 2, {})
first = next(results)[0].tolist()
subprocess.run([sys.executable, "-c", insert, path], check=True)
second = next(results)[0].tolist()
results.close()  # the request ends (the worker reads each to its end) and its transaction too
print(first, second, next(read_sqlite(path, count, {}))[0].tolist())
"""
INSERT_BO = """
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as db:
    db.execute("INSERT INTO person (id, connector, external_id, role) "
               "VALUES ('zd:2', 'zd', '2', 'agent')")
"""


def test_the_sqlite_reader_reads_a_request_in_one_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    add_person(f"sqlite:///{path}", "zd:1", "Ana")
    done = subprocess.run(
        [sys.executable, "-c", WORKER_SNAPSHOT, str(path), INSERT_BO],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[1] [1] [2]"


@pytest.mark.parametrize("prefer_arrow", [True, False], ids=["arrow", "rows"])
def test_columns_keep_types_nulls_and_bound_values(store_url: str, prefer_arrow: bool) -> None:
    for ident, name in (("zd:1", None), ("zd:2", "Bo"), ("zd:3", None)):
        add_person(store_url, ident, name)
    engine = open_engine(store_url)
    sql = (
        "SELECT id, name, LENGTH(id) * 10, CASE WHEN name IS NULL THEN NULL ELSE 7 END "
        "FROM person WHERE id <> :skip AND role = :role ORDER BY id"
    )
    params = {"role": "agent", "skip": "zd:3", "x": "none"}
    try:
        first, second = read(
            engine, [sql, "SELECT id FROM person WHERE id = :x"], params, prefer_arrow=prefer_arrow
        )
    finally:
        engine.dispose()
    ids, names, numbers, sparse = first
    (empty,) = second
    assert ids.tolist() == ["zd:1", "zd:2"]
    assert names.tolist() == [None, "Bo"]
    assert numbers.tolist() == [40, 40]
    assert np.isnan(sparse[0])
    assert sparse[1] == 7
    assert len(empty) == 0


def test_a_postgresql_cast_is_not_a_bound_name_and_tuple_ids_are_integers(
    request: pytest.FixtureRequest,
) -> None:
    from tests.postgres import new_store

    url = new_store(request, "postgresql", Path("."))
    engine = open_engine(url)
    try:
        with open_reader(engine) as reader:
            (value,) = reader.columns("SELECT :n::bigint * 2 + '3'::int", {"n": 20})
            # tuple ids arrive in their binary form and are decoded to block x 65536 + offset
            sql = (
                "SELECT ('(' || b || ',' || o || ')')::tid "
                "FROM (VALUES (1, 2), (70000, 65535), (0, 1)) AS v(b, o)"
            )
            (tids,) = reader.columns(sql, {})
            (none,) = reader.columns("SELECT ctid FROM ticket", {})
    finally:
        engine.dispose()
    assert value.tolist() == [43]
    assert tids.tolist() == [65538, 70000 * 65536 + 65535, 1]
    assert tids.dtype == np.int64
    assert len(none) == 0


def test_an_unreachable_postgresql_names_the_store_but_never_its_password() -> None:
    from socket import socket

    from cskpi.core.store.dialect import make_engine

    with socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://cskpi:hunter2-secret@127.0.0.1:{port}/kpis")
    with pytest.raises(ConnectionError) as caught, open_reader(engine):
        pass
    assert f"cskpi:***@127.0.0.1:{port}/kpis" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_sqlite_is_read_by_the_adbc_driver_only_in_its_worker_process(tmp_path: Path) -> None:
    """Two SQLite libraries in one process corrupt databases (see columnar.py): the driver's
    copy stays in the worker, and a worker that dies is replaced."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    add_person(url, "zd:1", "Ana")
    engine = open_engine(url)
    try:
        (before,) = read(engine, ["SELECT name FROM person"], {})
        pid = columnar.sqlite_reader().pid
        assert pid is not None
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        (after,) = read(engine, ["SELECT COUNT(*) FROM person"], {})
        assert columnar.sqlite_reader().pid not in (None, pid)
        with pytest.raises(Exception, match="no_such_column"):  # the worker's error, here
            read(engine, ["SELECT no_such_column FROM person"], {})
        worker = columnar.sqlite_reader().pid
        assert worker is not None
        os.kill(worker, signal.SIGINT)  # Ctrl-C in a terminal: the parent decides, not it
        (again,) = read(engine, ["SELECT COUNT(*) FROM person"], {})
        assert columnar.sqlite_reader().pid == worker
    finally:
        engine.dispose()
    assert before[0].tolist() == ["Ana"]
    assert after[0].tolist() == [1]
    assert again[0].tolist() == [1]
    assert "adbc_driver_sqlite" not in sys.modules


def test_results_come_one_by_one_and_a_request_left_early_ends_cleanly(tmp_path: Path) -> None:
    """``read_each`` gives each result as the SQLite reader sends it. A caller that stops
    after the first (an error in its own work) leaves the rest in the pipe: that reader is
    ended, and the next request is answered whole and right by a new one. An error in a
    later query comes after the results before it."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for n in range(3):
        add_person(url, f"zd:{n}", f"P{n}")
    engine = open_engine(url)
    queries = ["SELECT COUNT(*) FROM person", "SELECT name FROM person ORDER BY id"]
    try:
        with contextlib.closing(read_each(engine, queries, {})) as results:
            first = next(results)
            pid = columnar.sqlite_reader().pid
        assert first[0].tolist() == [3]
        assert columnar.sqlite_reader().pid is None  # ended: half an answer was left
        whole = [c[0].tolist() for c in read(engine, queries, {})]
        assert whole == [[3], ["P0", "P1", "P2"]]
        assert columnar.sqlite_reader().pid not in (None, pid)
        failing = read_each(engine, [queries[0], "SELECT no_such_column FROM person"], {})
        assert next(failing)[0].tolist() == [3]
        with pytest.raises(Exception, match="no_such_column"):
            next(failing)
        assert [c[0].tolist() for c in read(engine, queries[:1], {})] == [[3]]
    finally:
        engine.dispose()


def test_two_threads_reading_at_once_each_get_a_reader_and_one_thread_keeps_the_first(
    tmp_path: Path,
) -> None:
    """`cskpi report` reads the previous window beside this one: a thread that reads while
    the reader is busy gets a second process, and both answer in full. A read while none
    is busy is the first reader's (the one benchmarks and the tests above look at), and
    the spare one ends when asked."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for n in range(3):
        add_person(url, f"zd:{n}", f"P{n}")
    engine = open_engine(url)
    queries = ["SELECT COUNT(*) FROM person", "SELECT name FROM person ORDER BY id"]
    held: list[int | None] = []
    try:
        first = columnar.sqlite_reader()
        # two requests left open at once: each holds its reader until closed
        with (
            contextlib.closing(read_each(engine, queries, {})) as one,
            contextlib.closing(read_each(engine, queries, {})) as two,
        ):
            answers = [next(one)[0].tolist(), next(two)[0].tolist()]
            held = [r.pid for r in columnar._readers._made]
            rest = [next(one)[0].tolist(), next(two)[0].tolist()]
            ends = [next(one, None), next(two, None)]  # answered whole: the readers stay
        alone = [c[0].tolist() for c in read(engine, queries, {})]
        assert columnar.sqlite_reader() is first
        spare = columnar._readers._made[1]
        columnar.end_spare_readers()  # as a report written by `cskpi run` does
        kept = list(columnar._readers._made)
    finally:
        engine.dispose()
    assert answers == [[3], [3]]
    assert rest == [["P0", "P1", "P2"]] * 2
    assert ends == [None, None]
    assert alone == [[3], ["P0", "P1", "P2"]]
    assert len(held) == 2
    assert None not in held
    assert held[0] != held[1]
    assert kept == [first]
    assert first.pid == held[0]
    assert spare.pid is None
