"""Time as the config writes it: durations ("1h30m"), cron, opening hours ("09:00-17:00")."""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Annotated, NamedTuple

from pydantic import AfterValidator, BeforeValidator

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT = "use e.g. 90s, 15m, 4h, 7d, 1h30m"
_CLOCK = re.compile(r"([01]\d|2[0-4]):([0-5]\d)")

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab(5): 0 and 7 are Sunday


class TimespecError(ValueError):
    """A bad duration or cron expression.

    ``reason`` says what is wrong without repeating the input, for messages that must not
    echo config values; ``str()`` quotes the input for everyone else.
    """

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is {reason}")
        self.reason = reason


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"4h"``, ``"7d"``, ``"2w"`` or a combination like ``"1h30m"``."""
    compact = text.strip().lower().replace(" ", "") if isinstance(text, str) else ""
    match = _DURATION.fullmatch(compact)
    if not compact or match is None:
        raise TimespecError(str(text), f"not a duration; {_DURATION_HINT}")
    weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:  # longer than timedelta holds (999,999,999 days)
        raise TimespecError(str(text), f"too long a duration; {_DURATION_HINT}") from None


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number the first name stands for


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day-of-week", 0, 7, _WEEKDAYS, 0),
)


@dataclass(frozen=True)
class _Cron:
    fields: tuple[str, ...]  # normalised text of the five fields
    values: tuple[frozenset[int], ...]  # what each field matches; day-of-week 7 folded into 0

    @property
    def days_either(self) -> bool:
        """crontab(5): when both day fields are restricted, a day matching either one fires."""
        return not self.fields[2].startswith("*") and not self.fields[4].startswith("*")


def validate_cron(expr: str) -> str:
    """Check a standard 5-field crontab expression and return it normalised."""
    return " ".join(_parse_cron(expr).fields)


def cron_trigger(expr: str, timezone: tzinfo) -> BaseTrigger:
    """An APScheduler trigger firing exactly when crontab(5) would fire ``expr``.

    APScheduler 3 numbers weekdays from Monday and ANDs the two day fields, so the fields are
    handed over as explicit values (weekdays by name) and an OR of the day fields becomes an
    ``OrTrigger`` of two cron triggers.
    """
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    cron = _parse_cron(expr)
    minute, hour, day, month, dow = (
        _listing(values, spec) for values, spec in zip(cron.values, _FIELDS, strict=True)
    )
    if not cron.days_either:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=timezone
        )
    return OrTrigger(
        [
            CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone=timezone),
            CronTrigger(minute=minute, hour=hour, month=month, day_of_week=dow, timezone=timezone),
        ]
    )


def _listing(values: frozenset[int], spec: _Field) -> str:
    if spec.name == "day-of-week":
        return "*" if len(values) == 7 else ",".join(_WEEKDAYS[v] for v in sorted(values))
    if len(values) == spec.high - spec.low + 1:
        return "*"
    return ",".join(str(v) for v in sorted(values))


def _parse_cron(expr: str) -> _Cron:
    text = expr.strip().lower() if isinstance(expr, str) else ""
    text = _MACROS.get(text, text)
    parts = text.split()
    if len(parts) != 5:
        raise TimespecError(
            str(expr),
            "not a cron expression: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * mon-fri'",
        )
    values: list[frozenset[int]] = []
    for part, spec in zip(parts, _FIELDS, strict=True):
        try:
            values.append(_expand(part, spec))
        except ValueError as exc:
            raise TimespecError(str(expr), f"not a cron expression: {spec.name} {exc}") from None
    dow = values[4]
    values[4] = frozenset(0 if v == 7 else v for v in dow)
    return _Cron(tuple(parts), tuple(values))


def _expand(field: str, spec: _Field) -> frozenset[int]:
    result: set[int] = set()
    for item in field.split(","):
        body, _, step_text = item.partition("/")
        step = _number(step_text, spec, is_step=True) if step_text else 1
        if body == "*":
            first, last = spec.low, spec.high
        else:
            start, dash, end = body.partition("-")
            first = _number(start, spec)
            # "5/15" is crontab(5)'s "5-59/15"
            last = spec.high if step_text and not dash else first
            if dash:
                last = _number(end, spec, range_end=True)
        if first > last:
            raise ValueError("has a range that runs backwards")
        result.update(range(first, last + 1, step))
    return frozenset(result)


def _number(token: str, spec: _Field, *, is_step: bool = False, range_end: bool = False) -> int:
    if token.isdigit():
        value = int(token)
        if is_step and value >= 1:
            return value
        if not is_step and spec.low <= value <= spec.high:
            return value
    elif token in spec.names and not is_step:
        value = spec.names.index(token) + spec.name_base
        # "fri-sun" means Friday to Sunday: Sunday is also day 7 at the end of a range.
        return 7 if range_end and spec.name == "day-of-week" and value == 0 else value
    allowed = f"{spec.low}-{spec.high}" + (
        f" or {spec.names[0]}..{spec.names[-1]}" if spec.names else ""
    )
    raise ValueError("step must be a positive number" if is_step else f"must be {allowed}")


# Pydantic field types, for any settings model (the config's and a connector's own).


def _duration_field(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a duration string; {_DURATION_HINT}")
    try:
        return parse_duration(value)
    except TimespecError as exc:
        raise ValueError(exc.reason) from None  # the reason, not the value: see TimespecError


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def _cron_field(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a cron expression string, e.g. '0 9 * * mon-fri'")
    try:
        return validate_cron(value)
    except TimespecError as exc:
        raise ValueError(exc.reason) from None


Duration = Annotated[timedelta, BeforeValidator(_duration_field)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration_field), AfterValidator(_positive)]
CronExpression = Annotated[str, BeforeValidator(_cron_field)]


# Opening hours: "09:00-17:00" or "09:00-12:00,13:00-17:00".


class OpenHours(NamedTuple):
    """One opening interval as offsets from local midnight (``end`` may be 24h)."""

    start: timedelta
    end: timedelta


def _day_hours(value: object) -> tuple[OpenHours, ...]:
    if not isinstance(value, str):
        raise ValueError('must be a string like "09:00-17:00" or "09:00-12:00,13:00-17:00"')
    if value.strip().lower() in ("", "closed"):
        return ()
    spans = tuple(_open_hours(part) for part in value.split(","))
    for before, after in itertools.pairwise(spans):
        if after.start < before.end:
            raise ValueError("intervals must be in order and must not overlap")
    return spans


def _open_hours(text: str) -> OpenHours:
    start, _, end = text.strip().partition("-")
    first, last = _clock(start), _clock(end)
    if first >= last:
        raise ValueError("each interval must end after it starts, e.g. 09:00-17:00")
    return OpenHours(first, last)


def _clock(text: str) -> timedelta:
    match = _CLOCK.fullmatch(text.strip())
    offset = timedelta(hours=int(match[1]), minutes=int(match[2])) if match else None
    if offset is None or offset > timedelta(hours=24):
        raise ValueError("times must be HH:MM between 00:00 and 24:00, e.g. 09:00-17:00")
    return offset


DayHours = Annotated[tuple[OpenHours, ...], BeforeValidator(_day_hours)]


# Every valid cron fires within 8 years (29 February on a given weekday comes back by then).
_LONGEST_GAP = timedelta(days=8 * 366)


def last_fire_times(expr: str, timezone: tzinfo, at: datetime, count: int) -> list[datetime]:
    """The last ``count`` times ``expr`` fired at or before ``at``, oldest first. APScheduler
    only looks forward, so this reads forward from ever earlier starts until it has them."""
    trigger = cron_trigger(expr, timezone)
    span = timedelta(days=1)
    while True:
        fires: deque[datetime] = deque(maxlen=count)
        fire = trigger.get_next_fire_time(None, at - span)
        while fire is not None and fire <= at:
            fires.append(fire)
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if len(fires) == count or span > _LONGEST_GAP:
            return list(fires)
        span *= 4
