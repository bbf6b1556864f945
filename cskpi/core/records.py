"""What a record must hold to be stored, checked for every connector, built-in or plugin.

A connector's mapping catches what its own vendor gets wrong; this catches what no KPI can
survive, whoever sent it (SPEC §3b, bad records): text that is not Unicode (a lone
surrogate), an instant outside 1970 to 2200 (year 9999, year 1), a score that is not a finite
number of sane size, a value outside the contract's vocabulary (a status, priority,
channel, role or kind SPEC §3 does not name), a counter that is negative or past what an
integer column holds. Such a record is skipped and counted with the field that failed;
the rest of its page is stored and the cursor moves on, so one bad record never blocks a
connector. A ticket whose first reply, solve or close lies before its creation keeps the
record but loses that time (a negative duration must never reach a KPI); that is counted
the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from cskpi.connectors import base

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
LARGEST_SCORE = 1e9  # any survey scale is far below; 1e300 or Infinity is a broken source
LARGEST_COUNT = 2**31 - 1  # the counters are INTEGER columns

_VOCABULARY: dict[type, tuple[tuple[str, frozenset[object]], ...]] = {
    base.Ticket: (
        ("status", frozenset(base.TICKET_STATUSES)),
        ("priority", frozenset((*base.PRIORITIES, None))),
        ("channel", frozenset((*base.CHANNELS, None))),
    ),
    base.Message: (("author_role", frozenset(get_args(base.AuthorRole))),),
    base.Rating: (("kind", frozenset(get_args(base.RatingKind))),),
    base.Person: (("role", frozenset(get_args(base.PersonRole))),),
    base.StatusChange: (("status", frozenset(base.TICKET_STATUSES)),),
}
_RECORD_TYPES: frozenset[type] = frozenset(get_args(base.Record))
_AFTER_CREATION = ("first_reply_at", "first_solved_at", "solved_at", "closed_at")


class BadRecordError(ValueError):
    """A record the store must not take; the message names the field."""


def screen(page: base.Page) -> tuple[list[base.Record], list[base.Skipped]]:
    """The page's records fit to store, and what was skipped or repaired (with the page's
    own skipped records first)."""
    kept: list[base.Record] = []
    skipped = list(page.skipped)
    for record in page.records:
        try:
            check(record)
        except BadRecordError as exc:
            skipped.append(base.Skipped(_name(record), str(exc)))
            continue
        if isinstance(record, base.Ticket):
            record, dropped = _without_negative_durations(record)
            skipped += (base.Skipped(_name(record), reason) for reason in dropped)
        kept.append(record)
    return kept, skipped


def check(record: base.Record) -> None:
    """Raise :class:`BadRecordError` naming the first field the store must not take."""
    kind = type(record)
    if kind not in _RECORD_TYPES:  # a plugin's page may hold anything
        raise BadRecordError(f"not a record: {kind.__name__}")
    if isinstance(record, base.StatusHistory):
        odd = [status for _, status in record.changes if status not in base.TICKET_STATUSES]
        if odd:
            raise BadRecordError(f"changes: {_shown(odd[0])} is not one of SPEC §3's values")
    if isinstance(record, base.VendorMetrics):
        _check_metrics(record.metrics)
    if isinstance(record, base.Rating) and record.score is None and record.offered_at is None:
        raise BadRecordError("score: missing, and no offered_at (a survey sent, not answered)")
    for name, allowed in _VOCABULARY.get(kind, ()):
        value = getattr(record, name)
        if value not in allowed:
            raise BadRecordError(f"{name}: {_shown(value)} is not one of SPEC §3's values")
    for name in kind.__slots__:  # a sync checks millions: the usual values pass inline
        value = getattr(record, name)
        if _usual(value):
            continue
        test = _TESTS.get(type(value))
        if test is not None and (problem := test(value)) is not None:
            raise BadRecordError(f"{name}: {problem}")


def _check_metrics(metrics: Sequence[tuple[str, int]]) -> None:
    """Each metric a (name, whole non-negative seconds) pair, each name once."""
    names: set[str] = set()
    for pair in metrics:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise BadRecordError(f"metrics: {_shown(pair)} is not a (name, seconds) pair")
        name, seconds = pair
        if type(seconds) is not int or not 0 <= seconds <= LARGEST_COUNT:
            raise BadRecordError(f"metrics: {name} = {_shown(seconds)} is not whole seconds")
        if name in names:
            raise BadRecordError(f"metrics: {name} given twice")
        names.add(name)


def _usual(value: object) -> bool:
    """Fine at a glance: None, ASCII text, an aware time in range, a small count."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.isascii()
    if isinstance(value, datetime):
        return value.tzinfo is UTC and EARLIEST <= value < LATEST
    return type(value) is int and 0 <= value <= LARGEST_COUNT


def _text_problem(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text that is not valid Unicode (a lone surrogate)"
    return None


def _time_problem(value: datetime) -> str | None:
    if value.tzinfo is None:
        return f"{value.isoformat()} has no time zone"
    if not EARLIEST <= value < LATEST:
        return f"{value.isoformat()} is outside 1970-2200"
    return None


def _count_problem(value: int) -> str | None:
    return None if 0 <= value <= LARGEST_COUNT else f"{value} is not a count"


def _score_problem(value: float) -> str | None:
    usable = math.isfinite(value) and abs(value) <= LARGEST_SCORE
    return None if usable else f"{value!r} is not a usable number"


def _items_problem(values: Sequence[object]) -> str | None:
    for value in values:
        test = _TESTS.get(type(value))
        if test is not None and (problem := test(value)) is not None:
            return problem
    return None


_TESTS: dict[type, Callable[[Any], str | None]] = {
    str: _text_problem,
    datetime: _time_problem,
    int: _count_problem,
    float: _score_problem,
    tuple: _items_problem,
    list: _items_problem,
}  # fmt: skip (bool is its own type: no test)


def _without_negative_durations(ticket: base.Ticket) -> tuple[base.Ticket, list[str]]:
    """The ticket without the times that lie before its creation, and what was dropped."""
    early = [
        name
        for name in _AFTER_CREATION
        if (at := getattr(ticket, name)) is not None and at < ticket.created_at
    ]
    if not early:
        return ticket, []
    reasons = [f"{name} before created_at: dropped from the ticket" for name in early]
    repaired = dataclasses.replace(ticket)
    for name in early:
        setattr(repaired, name, None)
    return repaired, reasons


def _name(record: object) -> str:
    if isinstance(record, base.StatusChange):
        return f"{record.ticket_id}@{record.at.isoformat()}"
    if isinstance(record, base.StatusHistory):
        return f"{record.ticket_id} (status history)"
    if isinstance(record, base.VendorMetrics):
        return f"{record.ticket_id} (vendor metrics)"
    return str(getattr(record, "external_id", type(record).__name__))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
