from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cskpi.core.config.file import BusinessHours
from cskpi.core.kpis.business_hours import BusinessCalendar

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
ALL_DAYS = (*WEEKDAYS, "sat", "sun")


def calendar(
    tz: ZoneInfo, hours: str, days: Sequence[str] = WEEKDAYS, **extra: object
) -> BusinessCalendar:
    """Built through the config model, as the KPI engine does."""
    table = {"timezone": tz.key, **dict.fromkeys(days, hours), **extra}
    return BusinessCalendar.from_config(BusinessHours.model_validate(table))


BERLIN_9_5 = calendar(BERLIN, "09:00-17:00")
NEW_YORK_9_5 = calendar(NEW_YORK, "09:00-17:00")
US_9_5 = calendar(NEW_YORK, "09:00-17:00", country="US")
LUNCH = calendar(BERLIN, "09:00-12:00,13:00-17:00")
SHORT = calendar(NEW_YORK, "09:00-09:10,09:20-09:30,09:40-09:50,10:00-10:01")  # one hour, 4 starts
BERLIN_ALWAYS = calendar(BERLIN, "00:00-24:00", ALL_DAYS)
NEW_YORK_ALWAYS = calendar(NEW_YORK, "00:00-24:00", ALL_DAYS)
BERLIN_NIGHT = calendar(BERLIN, "01:00-03:00", ["sun"])  # straddles both DST changes
NEW_YORK_NIGHT = calendar(NEW_YORK, "01:00-03:00", ["sun"])


def at(tz: ZoneInfo, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


# 2026-01-05 is a Monday, 2026-01-09 a Friday.
@pytest.mark.parametrize(
    ("cal", "start", "end", "expected"),
    [
        pytest.param(BERLIN_9_5, "2026-01-05 10:00", "2026-01-05 12:30", 2.5 * HOUR, id="one-day"),
        pytest.param(BERLIN_9_5, "2026-01-05 16:00", "2026-01-06 10:00", 2 * HOUR, id="overnight"),
        pytest.param(BERLIN_9_5, "2026-01-09 16:00", "2026-01-12 10:00", 2 * HOUR, id="weekend"),
        pytest.param(BERLIN_9_5, "2026-01-05 07:00", "2026-01-05 09:30", 1800, id="before-open"),
        pytest.param(BERLIN_9_5, "2026-01-10 12:00", "2026-01-12 09:15", 900, id="from-saturday"),
        pytest.param(BERLIN_9_5, "2026-01-05 18:00", "2026-01-05 23:00", 0, id="after-close"),
        # 1 h Mon + 8 h Tue + 1 h Wed
        pytest.param(
            BERLIN_9_5, "2026-01-05 16:00", "2026-01-07 10:00", 10 * HOUR, id="two-nights"
        ),
        pytest.param(
            NEW_YORK_9_5, "2026-01-09 16:00", "2026-01-12 10:00", 2 * HOUR, id="ny-weekend"
        ),
        # 11-12 and 13-14; a full day is 3 h + 4 h
        pytest.param(LUNCH, "2026-01-05 11:00", "2026-01-05 14:00", 2 * HOUR, id="lunch"),
        pytest.param(LUNCH, "2026-01-05 12:10", "2026-01-05 12:50", 0, id="in-lunch"),
        pytest.param(LUNCH, "2026-01-05 00:00", "2026-01-06 00:00", 7 * HOUR, id="lunch-day"),
        # 5 + 10 + 5 minutes, then a full day of 31 minutes
        pytest.param(SHORT, "2026-01-05 09:05", "2026-01-05 09:45", 1200, id="short"),
        pytest.param(SHORT, "2026-01-05 09:05", "2026-01-06 09:45", 1200 + 1860, id="short-2"),
        # Thu 1 h, Fri 2026-07-03 is Independence Day (observed), Mon 1 h
        pytest.param(NEW_YORK_9_5, "2026-07-02 16:00", "2026-07-06 10:00", 10 * HOUR, id="no-us"),
        pytest.param(US_9_5, "2026-07-02 16:00", "2026-07-06 10:00", 2 * HOUR, id="us-july-3"),
        # Wed 1 h, Thu 2026-11-26 Thanksgiving, Fri 1 h
        pytest.param(US_9_5, "2026-11-25 16:00", "2026-11-27 10:00", 2 * HOUR, id="thanksgiving"),
        pytest.param(US_9_5, "2026-07-04 00:00", "2026-07-05 00:00", 0, id="us-saturday"),
    ],
)
def test_hand_worked(cal: BusinessCalendar, start: str, end: str, expected: float) -> None:
    tz = cal.tz
    assert cal.seconds(at(tz, start), at(tz, end)) == expected


def test_holiday_list_closes_whole_local_days() -> None:
    tuesday_off = calendar(BERLIN, "09:00-17:00", holidays=["2026-01-06"])
    start, end = at(BERLIN, "2026-01-05 16:00"), at(BERLIN, "2026-01-07 10:00")
    assert tuesday_off.seconds(start, end) == 2 * HOUR  # Mon 16-17 and Wed 9-10
    assert BERLIN_9_5.seconds(start, end) == 10 * HOUR


def test_country_holidays_come_from_the_holidays_package() -> None:
    import holidays

    us = holidays.country_holidays("US", years=2026)
    assert date(2026, 7, 3) in us  # observed, as Independence Day is a Saturday
    assert date(2026, 11, 26) in us
    day = (at(NEW_YORK, "2026-07-03 00:00"), at(NEW_YORK, "2026-07-04 00:00"))
    assert (US_9_5.seconds(*day), NEW_YORK_9_5.seconds(*day)) == (0, 8 * HOUR)


@pytest.mark.parametrize(
    ("cal", "day", "hours"),
    [
        (BERLIN_ALWAYS, "2026-03-29", 23),
        (BERLIN_ALWAYS, "2026-10-25", 25),
        (BERLIN_ALWAYS, "2026-03-30", 24),
        (NEW_YORK_ALWAYS, "2026-03-08", 23),
        (NEW_YORK_ALWAYS, "2026-11-01", 25),
        # 01:00-03:00 loses the hour the clocks skip, gains the hour they repeat
        (BERLIN_NIGHT, "2026-03-29", 1),
        (BERLIN_NIGHT, "2026-03-22", 2),
        (BERLIN_NIGHT, "2026-10-25", 3),
        (NEW_YORK_NIGHT, "2026-03-08", 1),
        (NEW_YORK_NIGHT, "2026-11-01", 3),
    ],
)
def test_dst_days_have_their_true_length(cal: BusinessCalendar, day: str, hours: int) -> None:
    start = at(cal.tz, day)
    end = datetime.combine(start.date() + timedelta(days=1), time(), cal.tz)
    assert cal.seconds(start, end) == hours * HOUR


def test_intervals_overlapping_in_utc_count_once() -> None:
    # On 2026-03-29 02:30 does not exist; fold=0 reads it as 03:30 CEST, past 03:00.
    cal = calendar(BERLIN, "01:00-02:30,03:00-04:00", ["sun"])
    day = (at(BERLIN, "2026-03-29 00:00"), at(BERLIN, "2026-03-30 00:00"))
    assert cal.seconds(*day) == 2 * HOUR  # 01:00-02:00 CET and 03:00-04:00 CEST
    assert cal.seconds_many(*_unix_pairs([day])).tolist() == [2 * HOUR]


def test_any_zone_gives_the_same_answer() -> None:
    start, end = at(BERLIN, "2026-01-09 16:00"), at(BERLIN, "2026-01-12 10:00")
    tokyo = ZoneInfo("Asia/Tokyo")
    assert BERLIN_9_5.seconds(start.astimezone(UTC), end.astimezone(tokyo)) == 2 * HOUR


def test_end_not_after_start_is_zero() -> None:
    moment = at(BERLIN, "2026-01-05 10:00")
    assert BERLIN_9_5.seconds(moment, moment) == 0
    assert BERLIN_9_5.seconds(moment, moment - timedelta(hours=3)) == 0
    # A placeholder 0 ("no end yet") must not widen the years built.
    many = BERLIN_9_5.seconds_many(np.array([1_767_600_000, 5]), np.array([0, 5]))
    assert many.tolist() == [0, 0]


def test_fractions_of_a_second_are_floored() -> None:
    start = at(BERLIN, "2026-01-05 09:00:00.900000")
    assert BERLIN_9_5.seconds(start, start + timedelta(seconds=1.2)) == 2


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="aware"):
        BERLIN_9_5.seconds(datetime(2026, 1, 5), at(BERLIN, "2026-01-06 00:00"))
    with pytest.raises(ValueError, match="shape"):
        BERLIN_9_5.seconds_many(np.zeros(2, np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="no country 'XX'"):
        BusinessCalendar(BERLIN, [[]] * 7, country="XX")
    with pytest.raises(ValueError, match="7 days"):
        BusinessCalendar(BERLIN, [[]] * 5)
    with pytest.raises(ValueError, match="start < end"):
        BusinessCalendar(BERLIN, [[(timedelta(hours=9), timedelta(hours=25))]] * 7)


@pytest.mark.parametrize(
    ("cal", "start", "business", "due"),
    [
        (BERLIN_9_5, "2026-01-09 16:00", 2 * HOUR, "2026-01-12 10:00"),
        (BERLIN_9_5, "2026-01-10 12:00", HOUR, "2026-01-12 10:00"),
        (BERLIN_9_5, "2026-01-05 10:00", 7 * HOUR, "2026-01-05 17:00"),  # at close, not next open
        (LUNCH, "2026-01-05 11:30", HOUR, "2026-01-05 13:30"),
        (US_9_5, "2026-07-02 16:00", 2 * HOUR, "2026-07-06 10:00"),
        (BERLIN_9_5, "2026-01-10 12:00", 0, "2026-01-10 12:00"),
    ],
)
def test_add(cal: BusinessCalendar, start: str, business: int, due: str) -> None:
    result = cal.add(at(cal.tz, start), timedelta(seconds=business))
    assert result == at(cal.tz, due)
    assert result.tzinfo is cal.tz


def test_add_reaches_years_ahead() -> None:
    start = at(BERLIN, "2026-01-05 09:00")
    due = BERLIN_9_5.add(start, timedelta(hours=20_000))  # about ten working years
    assert due.year in (2035, 2036)
    assert BERLIN_9_5.seconds(start, due) == 20_000 * HOUR
    with pytest.raises(ValueError, match="negative"):
        BERLIN_9_5.add(start, timedelta(seconds=-1))


# --- properties -------------------------------------------------------------------------

CALENDARS = [
    BERLIN_9_5,
    NEW_YORK_9_5,
    US_9_5,
    LUNCH,
    SHORT,
    BERLIN_ALWAYS,
    NEW_YORK_ALWAYS,
    BERLIN_NIGHT,
]
T2025 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
T2028 = int(datetime(2028, 1, 1, tzinfo=UTC).timestamp())
instants = st.integers(T2025, T2028)
calendars = st.sampled_from(CALENDARS)


def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _unix_pairs(pairs: Sequence[tuple[datetime, datetime]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([int(a.timestamp()) for a, _ in pairs], np.int64),
        np.array([int(b.timestamp()) for _, b in pairs], np.int64),
    )


def _day_by_day(cal: BusinessCalendar, a: datetime, b: datetime) -> int:
    """The obvious loop over local days, as an oracle (no overlap handling needed here)."""
    total = 0
    day = a.astimezone(cal.tz).date() - timedelta(days=1)
    while day <= b.astimezone(cal.tz).date():
        closed = cal.holidays | (_us(day.year) if cal.country == "US" else set())
        if day not in closed:
            midnight = datetime.combine(day, time(), cal.tz)
            for start, end in cal.week[day.weekday()]:
                lo = max((midnight + start).astimezone(UTC), a)
                hi = min((midnight + end).astimezone(UTC), b)
                total += max(0, int((hi - lo).total_seconds()))
        day += timedelta(days=1)
    return total


def _us(year: int) -> set[date]:
    import holidays

    return set(holidays.country_holidays("US", years=year))


@settings(max_examples=150, deadline=None)
@given(calendars, instants, st.integers(0, 40 * 86400))
def test_matches_a_day_by_day_loop(cal: BusinessCalendar, a: int, length: int) -> None:
    assert cal.seconds(_dt(a), _dt(a + length)) == _day_by_day(cal, _dt(a), _dt(a + length))


@settings(max_examples=200, deadline=None)
@given(calendars, instants, instants, instants)
def test_additive_and_at_most_calendar_time(cal: BusinessCalendar, x: int, y: int, z: int) -> None:
    a, b, c = sorted((x, y, z))
    ab, bc, ac = (
        cal.seconds(_dt(a), _dt(b)),
        cal.seconds(_dt(b), _dt(c)),
        cal.seconds(_dt(a), _dt(c)),
    )
    assert ac == ab + bc
    assert 0 <= ac <= c - a


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([BERLIN_ALWAYS, NEW_YORK_ALWAYS]), instants, instants)
def test_always_open_is_calendar_time(cal: BusinessCalendar, a: int, b: int) -> None:
    assert cal.seconds(_dt(a), _dt(b)) == max(0, b - a)


@settings(max_examples=100, deadline=None)
@given(calendars, st.lists(st.tuples(instants, instants), max_size=50))
def test_many_equals_one_by_one(cal: BusinessCalendar, pairs: list[tuple[int, int]]) -> None:
    starts = np.array([a for a, _ in pairs], np.int64)
    ends = np.array([b for _, b in pairs], np.int64)
    expected = [cal.seconds(_dt(a), _dt(b)) for a, b in pairs]
    assert cal.seconds_many(starts, ends).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(calendars, instants, st.integers(1, 2000 * HOUR))
def test_add_is_the_earliest_due_time(cal: BusinessCalendar, a: int, business: int) -> None:
    due = cal.add(_dt(a), timedelta(seconds=business))
    assert cal.seconds(_dt(a), due) == business
    assert cal.seconds(_dt(a), due - timedelta(seconds=1)) == business - 1


def test_many_runs_no_python_per_pair() -> None:
    """``seconds_many`` is what makes business hours affordable over a window's tickets:
    its Python work must not grow with the pairs (a loop over them took seconds for 100K).
    Counted as Python function calls, not timed (the speed is a benchmark's business)."""
    rng = np.random.default_rng(7)

    def calls(n: int) -> int:
        starts = rng.integers(T2025, T2028, n)
        starts[:2] = (T2025, T2028)  # the same years covered whatever n
        ends = starts + rng.integers(-HOUR, 30 * 86400, n)
        BERLIN_9_5.seconds_many(starts, ends)  # builds the years once
        counted = 0

        def count(frame: object, event: str, arg: object) -> None:
            nonlocal counted
            counted += event == "call"

        sys.setprofile(count)
        try:
            BERLIN_9_5.seconds_many(starts, ends)
        finally:
            sys.setprofile(None)
        return counted

    few, many = calls(1_000), calls(100_000)
    assert few > 0
    assert many == few
