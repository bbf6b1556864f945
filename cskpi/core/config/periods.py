"""Turning what a user types (dates, datetimes, spans, periods) into aware instants and windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from cskpi.core.config.timespec import last_fire_times, parse_duration

# A digest's own period: from its previous scheduled time to this one (a weekday digest's
# Monday covers Friday to Monday, the weekend included).
SINCE_LAST = "since-last"


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


def parse_past_instant(text: str, tz: tzinfo, option: str, now: datetime | None = None) -> datetime:
    """:func:`parse_instant` for ``--since`` and ``--date``, which name what has happened: a
    moment after now is refused (a digest of the future would mark its window as sent)."""
    now = now or datetime.now(UTC)
    moment = parse_instant(text, tz, now)
    if moment > now:
        raise ValueError(f"{option} {text}: that is in the future; give a date up to now")
    return moment


@dataclass(frozen=True)
class Window:
    """A half-open reporting window [start, end), evaluated at ``now``; all aware UTC."""

    start: datetime
    end: datetime
    tz: ZoneInfo
    now: datetime

    @property
    def at(self) -> datetime:
        """The instant "still open" is judged at: the window's end, or now if that is earlier."""
        return min(self.end, self.now)


def midnight(day: date, tz: ZoneInfo) -> datetime:
    # Wall-clock midnight in tz; zoneinfo resolves a DST gap or fold to the real instant.
    return datetime.combine(day, time(), tz).astimezone(UTC)


def month_start(day: date, months_back: int = 0) -> date:
    """The first of ``day``'s month, ``months_back`` months earlier (negative: later)."""
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def period_window(period: str, tz: ZoneInfo, now: datetime, schedule: str | None = None) -> Window:
    """SPEC §1 periods, in ``tz``: today, yesterday, last-7d, last-30d, Nd, this-week,
    last-week, this-month, last-month; and, for a digest (its cron ``schedule`` given),
    since-last: from the schedule's previous time to its latest at or before ``now``."""
    now = now.astimezone(UTC)
    if period == SINCE_LAST:
        return _since_last(schedule, tz, now)
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    spans: dict[str, tuple[date, date | None]] = {
        "today": (today, None),
        "yesterday": (today - timedelta(days=1), today),
        "this-week": (monday, None),
        "last-week": (monday - timedelta(days=7), monday),
        "this-month": (month_start(today), None),
        "last-month": (month_start(today, 1), month_start(today)),
    }
    days = _days(period)
    if days is not None:
        spans[period] = (today - timedelta(days=days), today)
    if period not in spans:
        raise ValueError(
            f"unknown period {period!r}; use today, yesterday, last-7d, last-30d, Nd (e.g. 14d), "
            "this-week, last-week, this-month or last-month"
        )
    first, last = spans[period]
    end = now if last is None else midnight(last, tz)
    return Window(midnight(first, tz), end, tz, now)


def _since_last(schedule: str | None, tz: ZoneInfo, now: datetime) -> Window:
    if schedule is None:
        raise ValueError(
            f"{SINCE_LAST} is a digest's period (from its previous scheduled time to this one); "
            "give --period or --from/--to"
        )
    fires = last_fire_times(schedule, tz, now, 2)
    if len(fires) < 2:
        raise ValueError(f"{schedule!r} has not fired twice before {now.isoformat()}")
    start, end = (fire.astimezone(UTC) for fire in fires)
    return Window(start, end, tz, now)


def _days(period: str) -> int | None:
    text = period.removeprefix("last-")
    if text.endswith("d") and text[:-1].isdigit() and int(text[:-1]) > 0:
        return int(text[:-1])
    return None


def explicit_window(start: str, end: str, tz: ZoneInfo, now: datetime) -> Window:
    """``--from``/``--to``: dates are local midnight in ``tz``, naive datetimes are in ``tz``."""
    window = Window(parse_instant(start, tz, now), parse_instant(end, tz, now), tz, now)
    if window.end <= window.start:
        raise ValueError(f"--to ({end}) must be after --from ({start})")
    return window
