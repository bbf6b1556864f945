"""Arrow tables as PostgreSQL's binary COPY stream (core/pg_copy.py): what the server reads
back from the stream is the table, value for value."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from cskpi.core.store import pg_copy
from tests.postgres import PgServer

TABLE = pa.table(
    {
        "a": pa.array(["x", None, "", "naïve ünïcode €", "z" * 300, "it's\\"], pa.string()),
        "b": pa.array([1, None, -5, 2**40, 0, -(2**63)], pa.int64()),
        "c": pa.array([1, 2, None, -7, 3, 2**31 - 1], pa.int32()),
        "d": pa.array([True, None, False, True, False, True]),
        "e": pa.array([1.5, None, -0.0, 1e300, math.nan, -math.inf]),
        "f": pa.array(['["a", "b"]', "[]", None, '{"k": 1}', "[]", "[]"], pa.string()),
        "g": pa.array([7, 8, 9, 10, 11, 12], pa.int64()),  # no NULLs: the fast way
    }
)
COLUMNS = "a text, b bigint, c integer, d boolean, e double precision, f json, g bigint"


def table_stream(table: Any) -> bytes:
    """A whole Arrow table's rows as a stream, each column as it is."""
    return pg_copy.encode(
        [pg_copy.Field(c.combine_chunks()) for c in table.columns], table.num_rows
    )


def copied_back(server: PgServer, table: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, dbname="postgres"
    ) as conn:
        conn.execute(f"CREATE TEMPORARY TABLE x ({COLUMNS})")
        with conn.cursor().copy("COPY x FROM STDIN (FORMAT binary)") as copy:
            copy.write(table_stream(table))
        return conn.execute("SELECT a, b, c, d, e, f::text, g FROM x ORDER BY g").fetchall()


def as_rows(table: Any) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in table.to_pylist()]


def same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    def equal(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
            return math.isnan(b)
        return a == b and type(a) is type(b)

    return len(got) == len(want) and all(
        all(equal(a, b) for a, b in zip(g, w, strict=True)) for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize(
    "table",
    [
        TABLE,
        TABLE.slice(1, 4),  # an array's offset into its buffers
        pa.concat_tables([TABLE.slice(0, 2), TABLE.slice(2)]),  # chunked columns
        TABLE.slice(0, 0),
    ],
    ids=["whole", "sliced", "chunked", "empty"],
)
def test_the_server_reads_back_every_value_and_null(pg_server: PgServer, table: Any) -> None:
    got = copied_back(pg_server, table)
    assert same(got, as_rows(table)), got


def test_a_null_string_whose_slot_holds_bytes_is_still_null(pg_server: PgServer) -> None:
    # Arrow leaves a NULL's bytes undefined: a slot of "xyz" under a NULL must not be sent.
    strings = pa.array(["ab", "xyz", "c"], pa.string())
    _, offsets, data = strings.buffers()
    nulled = pa.Array.from_buffers(
        pa.string(), 3, [pa.array([True, False, True]).buffers()[1], offsets, data]
    )
    table = TABLE.slice(0, 3).set_column(0, "a", nulled)
    assert [row[0] for row in copied_back(pg_server, table)] == ["ab", None, "c"]


def test_the_stream_is_laid_out_as_postgresql_documents_it() -> None:
    stream = table_stream(pa.table({"n": pa.array([1, None], pa.int32()), "s": ["hé", None]}))
    body = (
        b"\x00\x02"
        + b"\x00\x00\x00\x04"
        + b"\x00\x00\x00\x01"
        + b"\x00\x00\x00\x03"
        + "hé".encode()
    ) + (b"\x00\x02" + b"\xff\xff\xff\xff" + b"\xff\xff\xff\xff")
    assert stream == pg_copy.HEADER + body + b"\xff\xff"


def test_a_column_of_another_type_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="date32"):
        table_stream(pa.table({"d": pa.array([0], pa.date32())}))


def test_fields_prefix_their_text_fill_a_constant_and_send_numbers_as_told(
    pg_server: PgServer,
) -> None:
    ids = pa.array(["1", "22", None, ""], pa.string())
    counts = pa.array([1, None, 3, -4], pa.int64())
    fields = [
        pg_copy.Field(ids, prefix=b"zd:"),
        pg_copy.Field(constant="zd ünï"),
        pg_copy.Field(counts, kind="int32"),  # int64 values sent as int4
        pg_copy.Field(ids.slice(1), prefix=b"p:"),  # sliced: an offset into the bitmaps
    ]
    stream = pg_copy.encode([*fields[:3], pg_copy.Field(pa.array([True, False, None, True]))], 4)
    with psycopg.connect(
        host=pg_server.host, port=pg_server.port, user=pg_server.user, dbname="postgres"
    ) as conn:
        conn.execute("CREATE TEMPORARY TABLE f (id text, c text, n integer, b boolean)")
        with conn.cursor().copy("COPY f FROM STDIN (FORMAT binary)") as copy:
            copy.write(stream)
        with conn.cursor().copy("COPY f (id) FROM STDIN (FORMAT binary)") as copy:
            copy.write(pg_copy.encode(fields[3:], 3))
        rows = conn.execute("SELECT id, c, n, b FROM f").fetchall()
    assert rows == [
        ("zd:1", "zd ünï", 1, True),
        ("zd:22", "zd ünï", None, False),
        (None, "zd ünï", 3, None),
        ("zd:", "zd ünï", -4, True),
        ("p:22", None, None, None),
        (None, None, None, None),
        ("p:", None, None, None),
    ]


def test_a_number_too_large_for_its_column_is_refused_by_the_column_name() -> None:
    big = pa.array([1, None, 2**31], pa.int64())
    with pytest.raises(ValueError, match=r"ticket\.reopens: 2147483648 does not fit"):
        pg_copy.encode([pg_copy.Field(big, "int32", name="ticket.reopens")], 3)
    fits = pa.array([-(2**31), None, 2**31 - 1], pa.int64())
    assert pg_copy.encode([pg_copy.Field(fits, "int32")], 3).startswith(pg_copy.HEADER)
