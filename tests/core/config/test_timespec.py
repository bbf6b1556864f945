from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cskpi.core.config.timespec import (
    cron_trigger,
    last_fire_times,
    parse_duration,
    validate_cron,
)

THURSDAY = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # 2026-01-01 is a Thursday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("72h", timedelta(hours=72)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(days=14)),
        ("1h30m", timedelta(minutes=90)),
        (" 1H 30m ", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["15x", "", "h", "1.5h", "-5m", "m15", "30m1h", "15", "1 h x"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; use e\.g\. 90s, 15m, 4h, 7d, 1h30m$"):
        parse_duration(text)


def test_parse_duration_message_quotes_the_input() -> None:
    with pytest.raises(ValueError, match="15x") as info:
        parse_duration("15x")
    assert str(info.value) == "'15x' is not a duration; use e.g. 90s, 15m, 4h, 7d, 1h30m"


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("*/15 * * * *", "*/15 * * * *"),
        ("0  9 * *   MON-FRI", "0 9 * * mon-fri"),
        ("0 0 1 jan,jul *", "0 0 1 jan,jul *"),
        ("5/15 * * * *", "5/15 * * * *"),
        ("0 9 * * 7", "0 9 * * 7"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
    ],
)
def test_validate_cron_normalises(expr: str, normalised: str) -> None:
    assert validate_cron(expr) == normalised


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 9 * *", "it needs 5 fields"),
        ("0 9 * * * *", "it needs 5 fields"),
        ("", "it needs 5 fields"),
        ("60 * * * *", "minute must be 0-59"),
        ("* 24 * * *", "hour must be 0-23"),
        ("* * 0 * *", "day-of-month must be 1-31"),
        ("* * * 13 *", "month must be 1-12 or jan..dec"),
        ("* * * * 8", "day-of-week must be 0-7 or sun..sat"),
        ("* * * * mun", "day-of-week must be 0-7 or sun..sat"),
        ("*/0 * * * *", "minute step must be a positive number"),
        ("5-1 * * * *", "minute has a range that runs backwards"),
        ("1,,2 * * * *", "minute must be 0-59"),
        ("* * * jan-mon *", "month must be 1-12 or jan..dec"),
    ],
)
def test_validate_cron_rejects(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a cron expression") as info:
        validate_cron(expr)
    assert f"is not a cron expression: {reason}" in str(info.value)


def _fires(expr: str, start: datetime = THURSDAY, count: int = 4, tz: str = "UTC") -> list[str]:
    trigger = cron_trigger(expr, ZoneInfo(tz))
    times: list[str] = []
    previous = None
    now = start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        times.append(fire.strftime("%a %Y-%m-%d %H:%M %z"))
        previous, now = fire, fire + timedelta(seconds=1)
    return times


@pytest.mark.parametrize("dow", ["0", "7", "sun"])
def test_cron_sunday_is_0_and_7(dow: str) -> None:
    # APScheduler's own from_crontab would read 0 as Monday.
    assert _fires(f"0 9 * * {dow}", count=2) == [
        "Sun 2026-01-04 09:00 +0000",
        "Sun 2026-01-11 09:00 +0000",
    ]


def test_cron_numeric_monday_is_1() -> None:
    assert _fires("0 9 * * 1", count=1) == ["Mon 2026-01-05 09:00 +0000"]


def test_cron_weekday_range_skips_the_weekend() -> None:
    friday_after_nine = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
    assert _fires("0 9 * * mon-fri", friday_after_nine, count=2) == [
        "Mon 2026-01-05 09:00 +0000",
        "Tue 2026-01-06 09:00 +0000",
    ]


def test_cron_range_ending_on_sunday() -> None:
    assert _fires("0 9 * * fri-sun", count=4) == [
        "Fri 2026-01-02 09:00 +0000",
        "Sat 2026-01-03 09:00 +0000",
        "Sun 2026-01-04 09:00 +0000",
        "Fri 2026-01-09 09:00 +0000",
    ]
    assert _fires("0 9 * * 5-7", count=3) == _fires("0 9 * * fri-sun", count=3)


def test_cron_restricted_day_fields_fire_on_either() -> None:
    # crontab(5): "0 0 13 * fri" fires on every 13th and on every Friday.
    assert _fires("0 0 13 * fri", count=4) == [
        "Fri 2026-01-02 00:00 +0000",
        "Fri 2026-01-09 00:00 +0000",
        "Tue 2026-01-13 00:00 +0000",
        "Fri 2026-01-16 00:00 +0000",
    ]


def test_cron_star_day_field_still_ands() -> None:
    # A day field starting with "*" keeps the AND: Mondays on odd days of the month only.
    assert _fires("0 0 */2 * mon", count=2) == [
        "Mon 2026-01-05 00:00 +0000",
        "Mon 2026-01-19 00:00 +0000",
    ]


def test_cron_fires_in_the_given_timezone() -> None:
    assert _fires("0 9 * * *", count=1, tz="Europe/Berlin") == ["Fri 2026-01-02 09:00 +0100"]


def test_cron_steps_and_month_names() -> None:
    assert _fires("5/20 8 * * *", count=3) == [
        "Fri 2026-01-02 08:05 +0000",
        "Fri 2026-01-02 08:25 +0000",
        "Fri 2026-01-02 08:45 +0000",
    ]
    assert _fires("0 0 1 jul *", count=1) == ["Wed 2026-07-01 00:00 +0000"]


def test_last_fire_times_look_back_as_far_as_the_cron_needs() -> None:
    at = datetime(2028, 3, 1, tzinfo=UTC)
    assert last_fire_times("0 0 29 2 *", UTC, at, 2) == [
        datetime(2024, 2, 29, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)
    ]  # fmt: skip
    assert last_fire_times("*/30 * * * *", UTC, at, 3) == [
        at - timedelta(minutes=60), at - timedelta(minutes=30), at
    ]  # fmt: skip
