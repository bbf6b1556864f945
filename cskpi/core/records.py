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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from cskpi.connectors import base

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
LARGEST_SCORE = 1e9  # any survey scale is far below; 1e300 or Infinity is a broken source
LARGEST_COUNT = 2**31 - 1  # the counters are INTEGER columns

_VOCABULARY: dict[tuple[type, str], frozenset[object]] = {
    (base.Ticket, "status"): frozenset(base.TICKET_STATUSES),
    (base.Ticket, "priority"): frozenset((*base.PRIORITIES, None)),
    (base.Ticket, "channel"): frozenset((*base.CHANNELS, None)),
    (base.Message, "author_role"): frozenset(get_args(base.AuthorRole)),
    (base.Rating, "kind"): frozenset(get_args(base.RatingKind)),
    (base.Person, "role"): frozenset(get_args(base.PersonRole)),
    (base.StatusChange, "status"): frozenset(base.TICKET_STATUSES),
}
_RECORD_TYPES: tuple[type, ...] = get_args(base.Record)
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
    if not isinstance(record, _RECORD_TYPES):  # a plugin's page may hold anything
        raise BadRecordError(f"not a record: {type(record).__name__}")
    if isinstance(record, base.StatusHistory):
        odd = [status for _, status in record.changes if status not in base.TICKET_STATUSES]
        if odd:
            raise BadRecordError(f"changes: {_shown(odd[0])} is not one of SPEC §3's values")
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        allowed = _VOCABULARY.get((type(record), field.name))
        if allowed is not None and value not in allowed:
            raise BadRecordError(f"{field.name}: {_shown(value)} is not one of SPEC §3's values")
        problem = _problem(value)
        if problem:
            raise BadRecordError(f"{field.name}: {problem}")


def _problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return f"{value.isoformat()} has no time zone"
        if not EARLIEST <= value < LATEST:
            return f"{value.isoformat()} is outside 1970-2200"
        return None
    if isinstance(value, int):
        return None if 0 <= value <= LARGEST_COUNT else f"{value} is not a count"
    if isinstance(value, float):
        finite = math.isfinite(value) and abs(value) <= LARGEST_SCORE
        return None if finite else f"{value!r} is not a usable number"
    if isinstance(value, Sequence):  # tags
        return next((p for p in map(_problem, value) if p), None)
    return None


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text that is not valid Unicode (a lone surrogate)"
    return None


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
    return str(getattr(record, "external_id", type(record).__name__))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
