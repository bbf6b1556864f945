"""The KPI engine's reads of a PostgreSQL store (core/postgres_reads.py): values written
into the SQL, two connections in one snapshot, connections kept between reads."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import Engine

from cskpi.core.store.engine import open_engine
from cskpi.core.store.reads import postgres as postgres_reads
from cskpi.core.store.reads.columns import read
from cskpi.core.store.reads.postgres import inlined, pg_literal
from tests.postgres import new_store

TRICKY = ["it's", "back\\slash", "\\'", "--comment", "naïve ünïcode", "", "$1", ":x", "''"]


def test_literals_are_what_postgresql_reads_back_for_the_values() -> None:
    assert pg_literal(None) == "NULL"
    assert pg_literal(True) == "TRUE"
    assert pg_literal(-5) == "(-5)"  # after a minus: `x - (-5)`, not the comment `x --5`
    assert pg_literal(2.5) == "(2.5)"
    assert pg_literal(math.nan) == "'NaN'::float8"
    assert pg_literal(-math.inf) == "'-Infinity'::float8"
    assert pg_literal("it's a\\b") == "E'it''s a\\\\b'"
    assert inlined("SELECT :a - :b::int FROM t", {"a": 1, "b": -2}) == (
        "SELECT (1) - (-2)::int FROM t"
    )
    with pytest.raises(ValueError, match="NUL"):
        pg_literal("a\x00b")
    with pytest.raises(TypeError, match="bytes"):
        pg_literal(b"x")


@pytest.fixture
def pg_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = open_engine(new_store(request, "postgresql", Path(".")))
    yield engine
    postgres_reads._POOL.clear()
    engine.dispose()


def test_values_round_trip_through_the_server(pg_engine: Engine) -> None:
    params: dict[str, Any] = {f"s{i}": text for i, text in enumerate(TRICKY)}
    params.update(n=-7, f=0.1, big=2**62, inf=math.inf, none=None)
    texts = ", ".join(f":s{i}" for i in range(len(TRICKY)))
    (strings,), (numbers,) = read(
        pg_engine,
        [f"SELECT unnest(ARRAY[{texts}])", "SELECT unnest(ARRAY[1 - :n, :f, :big, :inf, :none])"],
        params,
    )
    assert strings.tolist() == TRICKY
    assert numbers[:3].tolist() == [8, 0.1, 2**62]
    assert math.isinf(numbers[3])
    assert math.isnan(numbers[4])


def test_results_keep_types_nulls_and_come_back_empty(pg_engine: Engine) -> None:
    """A query's rows come as one row of arrays (``PackedReader``): a query with no row
    still gives each of its columns, empty."""
    rows = (
        "SELECT * FROM (VALUES (1, 'a', TRUE, 1.5::float8), (2, NULL, FALSE, NULL)) "
        "AS v(n, s, b, f)"
    )
    full, none = read(pg_engine, [rows, rows + " WHERE n > 5"], {})
    numbers, texts, flags, reals = full
    assert numbers.tolist() == [1, 2]
    assert texts.tolist() == ["a", None]
    assert flags.tolist() == [True, False]
    assert reals[0] == 1.5
    assert math.isnan(reals[1])
    assert [len(c) for c in none] == [0, 0, 0, 0]


def test_numbers_flags_and_row_keys_come_packed_exactly(pg_engine: Engine) -> None:
    """Fixed-width columns come as their binary send forms (``_PACKED``): extremes exact,
    integers kept as integers unless a NULL makes them float64 with NaN, tuple ids as
    block x 65536 + offset, each row aligned with the text columns beside it."""
    values = (
        "SELECT * FROM (VALUES "
        "(1::bigint, NULL::bigint, 2::int, 3::smallint, 0.1::float8, 0.5::float4, TRUE, 'x'), "
        "(-9223372036854775807, 5, NULL, -32767, 'NaN', NULL, NULL, NULL), "
        "(9223372036854775807, 6, 2147483647, NULL, '-Infinity', 1e30, FALSE, 'y')"
        ") AS v(a, h, b, c, d, e, f, g)"
    )
    url = pg_engine.url.render_as_string(hide_password=False).replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE wide AS SELECT n, repeat('x', 500) AS pad "
            "FROM generate_series(1, 200) AS n"
        )
        tids = conn.execute("SELECT ctid::text, n FROM wide ORDER BY n").fetchall()
    ((a, h, b, c, d, e, f, g), (keys, numbers)) = read(
        pg_engine, [values, "SELECT ctid, n FROM wide"], {}
    )
    assert a.dtype == np.int64
    assert a.tolist() == [1, -(2**63) + 1, 2**63 - 1]
    nan = np.nan
    for column, expected_values, kind in (
        (h, [nan, 5, 6], np.float64),
        (b, [2, nan, 2147483647], np.float64),
        (c, [3, -32767, nan], np.float64),
        (d, [0.1, nan, -math.inf], np.float64),
        (e, np.array([0.5, nan, 1e30], dtype=np.float32), np.float32),
        (f, [1, nan, 0], np.float64),
    ):
        assert column.dtype == kind
        np.testing.assert_array_equal(column, expected_values)  # NaN where NaN
    assert g.tolist() == ["x", None, "y"]
    expected = {int(n): tuple(int(part) for part in t.strip("()").split(",")) for t, n in tids}
    assert max(block for block, _ in expected.values()) > 0  # the table spans blocks
    assert {int(n): divmod(int(k), 65536) for k, n in zip(keys, numbers, strict=True)} == expected


def _add(url: str, ident: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO person (id, connector, external_id, role) VALUES (%s, 'zd', %s, 'agent')",
            (ident, ident),
        )


def test_both_connections_read_one_snapshot_while_another_commits(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every query commits a new row just before it runs: all of them must still count
    the rows as they were when the read began, on either connection."""
    url = pg_engine.url.render_as_string(hide_password=False)
    _add(url, "zd:0")
    names = (f"zd:{i}" for i in itertools.count(1))
    both = threading.Barrier(2, timeout=30)  # each connection takes a query
    seen: set[int] = set()
    plain = postgres_reads.PackedReader.columns

    def committing(self: postgres_reads.PackedReader, sql: str, params: dict[str, Any]) -> Any:
        if "pg_export_snapshot" not in sql:
            if id(self) not in seen:
                seen.add(id(self))
                both.wait()
            _add(url, next(names))
        return plain(self, sql, params)

    monkeypatch.setattr(postgres_reads.PackedReader, "columns", committing)
    counts = read(pg_engine, ["SELECT COUNT(*) FROM person"] * 6, {})
    assert len(seen) == 2
    assert [c[0].tolist() for c in counts] == [[1]] * 6
    monkeypatch.undo()
    ((after,),) = read(pg_engine, ["SELECT COUNT(*) FROM person"], {})
    assert after.tolist() == [7]


def _backends(url: str, until: Callable[[list[int]], bool] = lambda pids: True) -> list[int]:
    """The server processes connected to ``url``'s database, once ``until`` holds of them
    (asked again for up to 10 s). A backend leaves pg_stat_activity a moment after its client
    hangs up or it is terminated; on a busy machine (pytest-xdist runs the suite on every
    core) that moment can outlast the next query, so a check of closed connections waits."""
    database = url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    server = url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server, autocommit=True) as conn:  # a fresh snapshot each query
        while True:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
            pids = [row[0] for row in rows]
            if until(pids) or time.monotonic() > deadline:
                return pids
            conn.execute("SELECT pg_sleep(0.01)")


def test_connections_are_kept_and_one_the_server_closed_is_replaced(pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    pg_engine.dispose()  # SQLAlchemy's own pooled connection (the migrations) is not ours
    queries = ["SELECT 1", "SELECT 2", "SELECT 3"]
    read(pg_engine, queries, {})
    kept = _backends(url)
    read(pg_engine, queries, {})
    assert len(kept) == 2
    assert sorted(_backends(url)) == sorted(kept)  # the same two, no new connection
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        for pid in kept:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    results = read(pg_engine, queries, {})
    assert [c[0].tolist() for c in results] == [[1], [2], [3]]
    again = _backends(url, until=lambda pids: not set(pids) & set(kept))
    assert len(again) == 2
    assert not set(again) & set(kept)


def test_a_failed_query_is_raised_and_its_connection_not_kept(pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    pg_engine.dispose()
    with pytest.raises(Exception, match="no_such_table"):
        read(pg_engine, ["SELECT 1", "SELECT * FROM no_such_table", "SELECT 3"], {})
    assert len(_backends(url, until=lambda pids: len(pids) <= 1)) <= 1  # the failed one closed
    ((value,),) = read(pg_engine, ["SELECT 41 + 1"], {})
    assert value.tolist() == [42]


def test_reading_another_store_closes_the_last_ones_connections(
    request: pytest.FixtureRequest, pg_engine: Engine
) -> None:
    first = pg_engine.url.render_as_string(hide_password=False)
    pg_engine.dispose()
    read(pg_engine, ["SELECT 1", "SELECT 2"], {})
    assert len(_backends(first)) == 2
    other = open_engine(new_store(request, "postgresql", Path(".")))
    try:
        read(other, ["SELECT 1", "SELECT 2"], {})
    finally:
        other.dispose()
    assert _backends(first, until=lambda pids: not pids) == []
