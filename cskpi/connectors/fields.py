"""Reading fields of a vendor's JSON objects: dates, ids, and mapping a page of them.

Shared by the ``*_map`` modules. A required field that is missing, or a date that cannot
be parsed, raises :class:`BadRecordError` naming the field; :func:`map_each` turns that into
a :class:`~cskpi.connectors.base.Skipped` entry, so one bad record never costs its page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cskpi.connectors import base
from cskpi.connectors.base import Skipped

Raw = Mapping[str, Any]
Mapped = tuple[list[base.Record], list[Skipped]]

_FROM_ISO = datetime.fromisoformat  # parses "...Z" as UTC since Python 3.11


class BadRecordError(ValueError):
    """A record that cannot be mapped; the message names the field and the reason."""


def when(raw: Raw, key: str) -> datetime:
    """The required date ``raw[key]``: ISO 8601 with a zone, or unix seconds."""
    value = raw.get(key)
    if value is None:
        raise BadRecordError(f"missing {key}")
    return _moment(value, key)


def maybe_when(raw: Raw, key: str) -> datetime | None:
    """The optional date ``raw[key]``; present but unparseable is still an error."""
    value = raw.get(key)
    return None if value is None else _moment(value, key)


def from_unix(value: object) -> datetime | None:
    """Unix seconds (int or numeric string) as aware UTC; ``None`` when not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _moment(value: object, key: str) -> datetime:
    if type(value) is str:
        try:
            moment = _FROM_ISO(value)
        except ValueError:
            raise BadRecordError(f"{key}: unparseable date {value!r}") from None
        zone = moment.tzinfo
        if zone is UTC:  # vendors write ...Z: the common case, first
            return moment
        if zone is None:
            raise BadRecordError(f"{key}: date without a time zone {value!r}")
        return moment.astimezone(UTC)
    moment_or_none = from_unix(value) if type(value) is int else None
    if moment_or_none is None:
        raise BadRecordError(f"{key}: unparseable date {value!r}")
    return moment_or_none


def ref(value: object) -> str | None:
    """An id as text (Zendesk and Freshdesk ids are integers); ``None`` stays ``None``."""
    if type(value) is int or type(value) is str:  # exact types: bool is no id; hot path
        return str(value)
    if value is None:
        return None
    raise BadRecordError(f"not an id: {value!r}")


def split_objects(items: Iterable[object]) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """The JSON objects of a list, and a ``Skipped`` entry for every other item (a ``null``, a
    string): one such item costs itself, not its page."""
    objects: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for item in items:
        if isinstance(item, dict):
            objects.append(item)
        else:
            skipped.append(Skipped("(no id)", f"not an object: {type(item).__name__}"))
    return objects, skipped


def map_each(raws: Iterable[object], mapper: Callable[[Raw], base.Record | None]) -> Mapped:
    """Map every object; one that fails becomes a ``Skipped`` with its id and the reason."""
    records: list[base.Record] = []
    skipped: list[Skipped] = []
    for raw in raws:
        try:
            if not isinstance(raw, dict):  # JSON objects decode to dicts
                raise BadRecordError(f"not an object: {type(raw).__name__}")
            record = mapper(raw)
        except (BadRecordError, TypeError, ValueError, AttributeError) as exc:
            found = raw.get("id") if isinstance(raw, dict) else None
            skipped.append(Skipped(str(found), str(exc) or type(exc).__name__))
            continue
        if record is not None:
            records.append(record)
    return records, skipped
