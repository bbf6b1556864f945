"""Business time: how much of an interval falls inside a weekly schedule's open hours.

Open hours are local wall-clock times in an IANA zone. Each local day's intervals are
turned into UTC with zoneinfo (fold=0), so a day with a DST change keeps its true length:
00:00-24:00 lasts 23 h on spring-forward day and 25 h on fall-back day. The open intervals
of whole local years are laid out once as sorted UTC seconds together with the open
seconds before each one; business time up to an instant is then one binary search, and
the business time of an interval is a difference of two such values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays as holiday_calendars
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cskpi.core.config.file import BusinessHours

IntArray = npt.NDArray[np.int64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
# Local years are built with one year of margin on each side (an instant's local year can
# differ from its UTC year), and the last one still needs the midnight after its last day.
_FIRST_YEAR, _LAST_YEAR = MINYEAR + 1, MAXYEAR - 2
_EARLIEST = (datetime(_FIRST_YEAR, 1, 1, tzinfo=UTC) - _EPOCH) // _SECOND
_LATEST = (datetime(_LAST_YEAR + 1, 1, 1, tzinfo=UTC) - _EPOCH) // _SECOND - 1
# Empty intervals beyond every valid instant, so each search lands on some interval.
_SENTINEL = 2**62
_CELL = 3600  # seconds per cell of the search shortcut in _Timeline.grid


def _unix(moment: datetime) -> int:
    """Whole Unix seconds (floored), exactly: ``timestamp()`` is a float."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("business time needs aware datetimes; this one has no time zone")
    return (moment - _EPOCH) // _SECOND


def _year_of(seconds: int) -> int:
    if not _EARLIEST <= seconds <= _LATEST:
        raise ValueError(f"instants must lie between the years {_FIRST_YEAR} and {_LAST_YEAR}")
    return (_EPOCH + seconds * _SECOND).year


Day = tuple[tuple[timedelta, timedelta], ...]


def _checked_day(day: Sequence[tuple[timedelta, timedelta]]) -> Day:
    for start, end in day:
        if not timedelta(0) <= start < end <= _DAY:
            raise ValueError("open hours must satisfy 00:00 <= start < end <= 24:00")
    return tuple((start, end) for start, end in day)


def _disjoint(starts: IntArray, ends: IntArray) -> tuple[IntArray, IntArray]:
    """Sorted, non-empty, non-overlapping intervals covering the same instants."""
    # Wall-clock intervals can overlap or invert in UTC around a DST change
    # (01:00-02:30 and 03:00-04:00 on spring-forward day): count open time once.
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    starts[1:] = np.maximum(starts[1:], np.maximum.accumulate(ends)[:-1])
    keep = ends > starts
    return starts[keep], ends[keep]


@dataclass(frozen=True)
class _Timeline:
    """Disjoint open intervals in UTC seconds for local years ``first..last``."""

    first: int
    last: int
    starts: IntArray  # sorted; an empty sentinel interval at each end
    ends: IntArray
    before: IntArray  # open seconds from the first interval up to starts[i]
    origin: int  # the instant of grid[0]
    grid: IntArray  # per hour from origin: the last interval starting at or before it

    @classmethod
    def build(cls, first: int, last: int, blocks: Sequence[tuple[IntArray, IntArray]]) -> _Timeline:
        starts, ends = _disjoint(
            np.concatenate([np.zeros(0, np.int64), *(s for s, _ in blocks)]),
            np.concatenate([np.zeros(0, np.int64), *(e for _, e in blocks)]),
        )
        edges = np.array([-_SENTINEL]), np.array([_SENTINEL])
        starts, ends = (
            np.concatenate([edges[0], starts, edges[1]]),
            np.concatenate([edges[0], ends, edges[1]]),
        )
        before = np.concatenate([[0], np.cumsum(ends - starts)[:-1]]).astype(np.int64)
        # A local year reaches at most a day beyond its UTC year.
        origin = _unix(datetime(first, 1, 1, tzinfo=UTC)) - _DAY // _SECOND
        stop = _unix(datetime(last, 12, 31, tzinfo=UTC)) + 2 * _DAY // _SECOND
        cells = np.arange(origin, stop, _CELL, dtype=np.int64)
        grid = (np.searchsorted(starts, cells, side="right") - 1).astype(np.int64)
        return cls(first, last, starts, ends, before, origin, grid)

    def elapsed(self, moments: IntArray) -> IntArray:
        """Open seconds from the start of the timeline up to each moment."""
        # A binary search per moment is slower on unsorted input than this: the hourly
        # grid names the right interval or one a step or two before it (the end sentinel
        # stops the walk).
        i = self.grid[(moments - self.origin) // _CELL]
        while (step := self.starts[i + 1] <= moments).any():
            i = i + step
        return self.before[i] + np.minimum(moments, self.ends[i]) - self.starts[i]

    def instant(self, target: int) -> int | None:
        """The earliest moment where ``elapsed`` reaches ``target`` > 0; None past the end."""
        after = self.before + (self.ends - self.starts)
        i = int(np.searchsorted(after, target, side="left"))
        if i == len(after):
            return None
        return int(self.starts[i] + (target - self.before[i]))


class BusinessCalendar:
    """Open hours of a week in an IANA zone, minus holidays."""

    def __init__(
        self,
        tz: ZoneInfo,
        week: Sequence[Sequence[tuple[timedelta, timedelta]]],
        holidays: Iterable[date] = (),
        country: str | None = None,
    ) -> None:
        if len(week) != 7:
            raise ValueError("week must give the open hours of 7 days, Monday first")
        self.tz = tz
        self.week: tuple[Day, ...] = tuple(_checked_day(day) for day in week)
        self.holidays = frozenset(holidays)
        self.country = country
        if country is not None:
            try:  # fail now on an unknown code, not at the first KPI that needs a year
                holiday_calendars.country_holidays(country)
            except NotImplementedError:
                raise ValueError(f"the holidays package has no country {country!r}") from None
        self._years: dict[int, tuple[IntArray, IntArray]] = {}
        self._timeline: _Timeline | None = None

    @classmethod
    def from_config(cls, bh: BusinessHours) -> BusinessCalendar:
        return cls(bh.timezone, bh.week, bh.holidays, bh.country)

    def seconds(self, start: datetime, end: datetime) -> int:
        """Business seconds in [start, end); 0 when end <= start. Whole seconds, floored."""
        lo, hi = _unix(start), _unix(end)
        if hi <= lo:
            return 0
        elapsed = self._covering(lo, hi).elapsed(np.array([lo, hi], dtype=np.int64))
        return int(elapsed[1] - elapsed[0])

    def seconds_many(self, starts: IntArray, ends: IntArray) -> IntArray:
        """``seconds`` elementwise over Unix seconds (UTC); 0 where end <= start."""
        lo, hi = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        if lo.shape != hi.shape:
            raise ValueError(f"starts and ends differ in shape: {lo.shape} vs {hi.shape}")
        result = np.zeros(lo.shape, dtype=np.int64)
        # Pairs with end <= start are skipped before the year range is taken, so a
        # placeholder such as 0 for "no end yet" does not build a timeline back to 1970.
        valid = hi > lo
        if not valid.any():
            return result
        lo, hi = lo[valid], hi[valid]
        timeline = self._covering(int(lo.min()), int(hi.max()))
        result[valid] = timeline.elapsed(hi) - timeline.elapsed(lo)
        return result

    def add(self, start: datetime, business: timedelta) -> datetime:
        """The earliest instant at which ``business`` business time has passed since start.

        Whole seconds; the result is in start's time zone. A zero duration gives start.
        """
        need = business // _SECOND
        if need < 0:
            raise ValueError("business time to add must not be negative")
        if need == 0:
            return start
        if not any(self.week):
            raise ValueError("the calendar has no open hours, so business time never passes")
        origin = _unix(start)
        timeline = self._covering(origin, origin)
        target = int(timeline.elapsed(np.array([origin], dtype=np.int64))[0]) + need
        while (found := timeline.instant(target)) is None:
            if timeline.last > _LAST_YEAR:
                raise ValueError(f"business time does not pass before the year {_LAST_YEAR}")
            # Doubling the years ahead keeps the number of rebuilds logarithmic.
            ahead = max(1, timeline.last - _year_of(origin))
            timeline = self._years_covered(
                timeline.first, min(_LAST_YEAR + 1, timeline.last + ahead)
            )
        return (_EPOCH + found * _SECOND).astimezone(start.tzinfo)

    def _covering(self, lo: int, hi: int) -> _Timeline:
        return self._years_covered(_year_of(lo) - 1, _year_of(hi) + 1)

    def _years_covered(self, first: int, last: int) -> _Timeline:
        """A timeline spanning at least local years first..last, widened and cached.

        The cache is replaced whole and each caller keeps the timeline it was given,
        so concurrent callers at worst build one twice.
        """
        current = self._timeline
        if current is not None:
            if current.first <= first and last <= current.last:
                return current
            first, last = min(first, current.first), max(last, current.last)
        blocks = [self._year(year) for year in range(first, last + 1)]
        self._timeline = built = _Timeline.build(first, last, blocks)
        return built

    def _year(self, year: int) -> tuple[IntArray, IntArray]:
        """Open intervals (UTC seconds) of one local year, cached."""
        if year not in self._years:
            closed = self.holidays
            if self.country is not None:
                closed = closed | set(holiday_calendars.country_holidays(self.country, years=year))
            starts: list[int] = []
            ends: list[int] = []
            day = date(year, 1, 1)
            while day.year == year:
                if day not in closed:
                    for start, end in self._day(day):
                        starts.append(start)
                        ends.append(end)
                day += _DAY
            self._years[year] = (np.array(starts, np.int64), np.array(ends, np.int64))
        return self._years[year]

    def _day(self, day: date) -> list[tuple[int, int]]:
        midnight = datetime.combine(day, time())
        # Naive wall-clock arithmetic first, then the zone (fold=0): 24:00 is next midnight.
        return [
            (
                _unix((midnight + start).replace(tzinfo=self.tz)),
                _unix((midnight + end).replace(tzinfo=self.tz)),
            )
            for start, end in self.week[day.weekday()]
        ]
