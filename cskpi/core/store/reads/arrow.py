"""Reading a query through an ADBC connection into numpy columns.

Kept apart from ``columnar.py`` (which picks the reader for a store) because the SQLite
worker process loads only this: numpy and, on first use, pyarrow, not SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

Columns = list[NDArray[Any]]

# `:name` binds, but not the second colon of a PostgreSQL `::type` cast.
BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# SQLite is dynamically typed, so the driver infers a column's Arrow type from the rows of
# its first batch and refuses a later batch that disagrees (a text column NULL in the first
# 1,024 rows would be read as integers). One batch for the whole result settles each type
# on every row; a window's rows fit in memory anyway, since the KPIs need them all at once.
_SQLITE_OPTIONS = {"adbc.sqlite.query.batch_rows": str(2**30)}


class ArrowReader:
    """Reads queries through one ADBC connection (PostgreSQL's reader is
    ``postgres_reads.PackedReader``)."""

    def __init__(self, conn: Any, marker: str, convert: Callable[[Any], Any] | None = None) -> None:
        self.conn = conn
        self.marker = marker  # "?" or "$" (then numbered)
        self.convert = convert or numpy_column  # from an Arrow column

    def columns(self, sql: str, params: dict[str, Any]) -> Columns:
        with self.conn.cursor() as cursor:
            if self.marker == "?":
                cursor.adbc_statement.set_options(**_SQLITE_OPTIONS)
            cursor.execute(*positional(sql, params, self.marker))
            table = cursor.fetch_arrow_table()
        return [self.convert(table.column(i)) for i in range(table.num_columns)]


def positional(sql: str, params: dict[str, Any], marker: str) -> tuple[str, list[Any] | None]:
    """``sql``'s ``:name`` binds as the driver's positional ones (``marker`` "?", or "$"
    for PostgreSQL's ``$1``, ``$2``, …), and their values in that order."""
    order: list[str] = []

    def mark(match: re.Match[str]) -> str:
        order.append(match.group(1))
        return "?" if marker == "?" else f"${len(order)}"

    text = BIND.sub(mark, sql)
    return text, [params[name] for name in order] if order else None


def numpy_column(column: Any) -> NDArray[Any]:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        # Nulls become NaN (the array turns float64); without nulls integers stay integers.
        return np.asarray(column.to_numpy(zero_copy_only=False))
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    if is_text(column):
        codes, labels = text_codes(column)
        return labelled(codes, labels)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def is_text(column: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(column.type) or pa.types.is_large_string(column.type))


def text_codes(column: Any) -> tuple[NDArray[np.int32], list[str | None]]:
    """A text column as codes into its distinct values, NULL as -1 (the None at the end).
    A store's text columns (status, priority, channel, agent ids) hold a handful of values
    each: one Python string per value rather than per row (see ``labelled``)."""
    coded = column.combine_chunks().dictionary_encode()
    codes = coded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, [*coded.dictionary.to_pylist(), None]


def labelled(codes: NDArray[np.int32], labels: list[str | None]) -> NDArray[Any]:
    """The text as objects, each distinct string made once and shared by its rows."""
    values: NDArray[Any] = np.array(labels, dtype=object)[codes]
    return values


def tuple_id(alias: str) -> str:
    # PostgreSQL: the tuple id itself, decoded by `postgres.PackedReader` from its binary
    # form, cheaper than the dialect's text round trip (see dialect.py).
    return f"{alias}.ctid"


@contextmanager
def transaction(conn: Any, first: Sequence[str]) -> Iterator[None]:
    """ADBC opens the transaction itself (autocommit is off); on SQLite a deferred BEGIN,
    whose snapshot starts at the first read. It holds until the rollback."""
    try:
        with conn.cursor() as cursor:
            for statement in first:
                cursor.execute(statement)
        yield
    finally:
        conn.rollback()
