"""Arrow columns as PostgreSQL's binary ``COPY`` stream, made column by column in numpy.

A sync's new rows go into PostgreSQL by ``COPY … FROM STDIN (FORMAT binary)``
(``postgres_writes``). The ADBC driver can make that stream from an Arrow table too, but it
works value by value (a call per field for its length, another for its bytes): 11 us of a
demo ticket's 17 in the writer process, which the server waits for. Here each column costs
a few whole-array numpy operations, whatever the number of rows.

The format (https://www.postgresql.org/docs/15/sql-copy.html, "Binary Format"): a header,
then per row a 16-bit field count and per field a 32-bit length (-1: NULL) and the value in
its type's binary send form (network byte order), then a 16-bit -1. The send forms used:
``int8``, ``int4``, ``float8`` and ``bool`` as fixed-width big-endian numbers, and ``text``,
``varchar`` and ``json`` as their UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
TRAILER = b"\xff\xff"
# The binary send form of a fixed-width Arrow type; text is sent as it is stored.
_FIXED = {"int64": ">i8", "int32": ">i4", "double": ">f8", "float64": ">f8", "bool": "u1"}


@dataclass(frozen=True)
class Field:
    """A column of the stream: an Arrow array's values, sent as its type or as ``kind``
    (an Arrow type name: "int32" sends int64 values as ``int4``); text values (not NULLs)
    with ``prefix`` before them. Or, with no array, ``constant`` in every row. ``name``
    names the column in errors."""

    values: Any = None
    kind: str | None = None
    prefix: bytes = b""
    constant: str = ""
    name: str = ""


def encode(fields: Sequence[Field], rows: int) -> bytes:
    """``rows`` rows of ``fields`` as a whole binary ``COPY`` stream."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not rows:
        return HEADER + TRAILER
    parts = [_fixed(np.full(rows, len(fields), ">i2"))]
    for field in fields:
        parts += _parts(field, rows)
    joined = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.binary()))
    _, offsets, data = joined.buffers()
    first, last = np.frombuffer(offsets, np.int32, rows + 1, joined.offset * 4)[[0, -1]]
    body = memoryview(data)[first:last] if data is not None else b""
    return b"".join((HEADER, body, TRAILER))


def _parts(field: Field, rows: int) -> list[Any]:
    """One field's length and value in each row, as binary arrays of one value a row: the
    length (with the prefix after it) and then, for text, the value. Few whole-array calls
    a field: a page's 1,000 rows make each call's own cost count as much as its work."""
    import pyarrow as pa

    array = field.values
    if array is None:
        value = field.constant.encode()
        cell = len(value).to_bytes(4, "big") + value
        return [_fixed(np.frombuffer(cell * rows, np.uint8).reshape(rows, len(cell)))]
    kind = field.kind or str(array.type)
    valid = _valid(array)
    if kind in _FIXED:
        return [_fixed_field(array, kind, valid, field.name)]
    if not pa.types.is_string(array.type):
        raise TypeError(f"no binary COPY form for an Arrow {array.type} column {field.name}")
    _, offsets, data = array.buffers()
    ends = np.frombuffer(offsets, np.int32, rows + 1, array.offset * 4)
    lengths = ends[1:] - ends[:-1]
    value = pa.Array.from_buffers(pa.binary(), rows, [None, offsets, data], offset=array.offset)
    if valid is not None and lengths[~valid].any():  # a NULL's slot holds bytes: not sent
        value = array.cast(pa.binary()).fill_null(b"")
        lengths = np.where(valid, lengths, 0)
    cells = np.empty((rows, 4 + len(field.prefix)), np.uint8)
    cells[:, :4] = (lengths + len(field.prefix)).astype(">i4").view(np.uint8).reshape(rows, 4)
    cells[:, 4:] = np.frombuffer(field.prefix, np.uint8)  # before each value, not a NULL
    return [_cells(cells, valid), value]


def _valid(array: Any) -> NDArray[np.bool_] | None:
    """Which of the array's values are not NULL (None: all are)."""
    if not array.null_count:
        return None
    bitmap = np.frombuffer(array.buffers()[0], np.uint8)
    bits = np.unpackbits(bitmap, bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)


def _fixed_field(array: Any, kind: str, valid: NDArray[np.bool_] | None, name: str) -> Any:
    """A number's or boolean's fields: its length and big-endian value, or -1 for NULL."""
    rows = len(array)
    if str(array.type) == "bool":  # a bitmap of values, like the validity's
        bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little")
        numbers = bits[array.offset : array.offset + rows].astype(_FIXED[kind])
    else:
        stored = np.dtype(array.type.to_pandas_dtype())
        raw = np.frombuffer(array.buffers()[1], stored, rows, array.offset * stored.itemsize)
        numbers = raw.astype(_FIXED[kind])
        if numbers.dtype.itemsize < stored.itemsize:  # narrowed (int64 to int4): must fit
            given = raw if valid is None else raw[valid]
            wrong = given[given.astype(_FIXED[kind]) != given]
            if len(wrong):
                raise ValueError(f"{name or 'a column'}: {wrong[0]} does not fit its type ({kind})")
    width = numbers.dtype.itemsize
    cells = np.empty((rows, 4 + width), np.uint8)
    cells[:, :4] = np.frombuffer(width.to_bytes(4, "big"), np.uint8)
    cells[:, 4:] = numbers.view(np.uint8).reshape(rows, width)
    return _cells(cells, valid)


def _cells(cells: NDArray[np.uint8], valid: NDArray[np.bool_] | None) -> Any:
    """Each row's field head as a binary array: a row of ``cells`` is a length (4 bytes)
    and what follows it; a NULL's row (not ``valid``) is only the length -1."""
    if valid is None:
        return _fixed(cells)
    cells[~valid, :4] = 0xFF  # -1 in two's complement
    if cells.shape[1] == 4:
        return _fixed(cells)
    keep = np.ones(cells.shape, bool)
    keep[~valid, 4:] = False
    ends = np.zeros(len(cells) + 1, np.int32)
    np.cumsum(np.where(valid, cells.shape[1], 4), dtype=np.int32, out=ends[1:])
    return _binary(ends, cells[keep])


def _fixed(values: NDArray[Any]) -> Any:
    """A binary array of each row's bytes in ``values`` (a row of fixed-width items each)."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)
    width = values.dtype.itemsize if values.ndim == 1 else raw.shape[1]
    offsets = np.arange(0, (len(raw) + 1) * width, width, dtype=np.int32)
    return _binary(offsets, raw.reshape(-1))


def _binary(offsets: NDArray[np.int32], data: NDArray[np.uint8]) -> Any:
    """A binary array of the values between consecutive ``offsets`` in ``data``."""
    import pyarrow as pa

    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    return pa.Array.from_buffers(pa.binary(), len(offsets) - 1, buffers)
