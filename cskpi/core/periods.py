"""Turning what a user types (dates, datetimes, relative spans) into aware instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo

from cskpi.core.timespec import parse_duration


def parse_instant(text: str, tz: tzinfo, now: datetime | None = None) -> datetime:
    """An ISO date (local midnight in ``tz``), an ISO datetime (naive = in ``tz``), or a
    span back from now such as ``30d`` or ``12h``; returned in UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tz).astimezone(UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)
    try:
        span = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date, a datetime or a span; use e.g. 2025-01-01, "
            "2025-01-01T08:00, or 30d"
        ) from None
    return ((now or datetime.now(UTC)) - span).astimezone(UTC)
