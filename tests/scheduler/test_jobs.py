"""When the daemon's jobs fire: triggers in the config's time zone, the missed-digest rule,
and the job options that stop a job overlapping itself. All on fixed instants, no waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cskpi.connectors.registry import installed
from cskpi.core.config.file import Config, load_config
from cskpi.scheduler.jobs import (
    DEFAULT_EVERY,
    JobSpec,
    job_specs,
    latest_fire_time,
    owed_digests,
    owed_reports,
)

BERLIN = ZoneInfo("Europe/Berlin")


def config(tmp_path: Path, body: str, timezone: str = "Europe/Berlin") -> Config:
    path = tmp_path / "cskpi.toml"
    if "[connectors." not in body:  # a config needs a connector
        body += '\n[connectors.demo]\ntype = "demo"\n'
    path.write_text(f'timezone = "{timezone}"\ndatabase = "sqlite:///cskpi.db"\n{body}')
    return load_config(path, installed())


DIGEST = """
[digests.daily]
schedule = "0 9 * * mon-fri"
grace = "6h"
"""


def specs(cfg: Config) -> dict[str, JobSpec]:
    return {s.id: s for s in job_specs(cfg)}


def test_connector_triggers_cron_every_and_default(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        '[connectors.a]\ntype = "demo"\nschedule = "*/15 * * * *"\n'
        '[connectors.b]\ntype = "demo"\nevery = "90s"\n'
        '[connectors.c]\ntype = "demo"\n',
    )
    jobs = {s.id: s for s in job_specs(cfg)}
    now = datetime(2026, 11, 23, 10, 7, 30, tzinfo=UTC)
    assert jobs["sync:a"].trigger.get_next_fire_time(None, now) == datetime(
        2026, 11, 23, 10, 15, tzinfo=UTC
    )
    b = jobs["sync:b"].trigger
    first = b.get_next_fire_time(None, now)
    assert first is not None
    assert b.get_next_fire_time(first, first + timedelta(seconds=1)) == first + timedelta(
        seconds=90
    )
    c = jobs["sync:c"].trigger
    first = c.get_next_fire_time(None, now)
    assert first is not None
    assert c.get_next_fire_time(first, first) == first + DEFAULT_EVERY
    assert jobs["sync:a"].misfire_grace is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Friday 10:00 UTC (11:00 Berlin) -> Monday 09:00 Berlin, still CET (UTC+1)
        (datetime(2026, 11, 20, 10, 0, tzinfo=UTC), datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),
        # across the spring change: Monday 30 March 2026 09:00 Berlin is CEST (UTC+2)
        (datetime(2026, 3, 27, 12, 0, tzinfo=UTC), datetime(2026, 3, 30, 7, 0, tzinfo=UTC)),
    ],
)
def test_digest_fires_at_local_time(tmp_path: Path, now: datetime, expected: datetime) -> None:
    trigger = specs(config(tmp_path, DIGEST))["digest:daily"].trigger
    assert trigger.get_next_fire_time(None, now) == expected


@pytest.mark.parametrize(
    ("now_local", "owed_local"),
    [
        (datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 9, 0)),  # at the very time
        (datetime(2026, 11, 23, 14, 59), datetime(2026, 11, 23, 9, 0)),  # within 6 h
        (datetime(2026, 11, 23, 15, 0), None),  # grace is half-open: 6 h later is too late
        (datetime(2026, 11, 23, 8, 59), None),  # Monday before 09:00: Friday's is long gone
        (datetime(2026, 11, 21, 10, 0), None),  # Saturday: no digest on weekends
        (datetime(2026, 11, 24, 9, 30), datetime(2026, 11, 24, 9, 0)),  # the latest, not Monday's
    ],
)
def test_owed_digest_within_grace(
    tmp_path: Path, now_local: datetime, owed_local: datetime | None
) -> None:
    cfg = config(tmp_path, DIGEST)
    owed = owed_digests(cfg, now_local.replace(tzinfo=BERLIN).astimezone(UTC))
    if owed_local is None:
        assert owed == []
    else:
        assert owed == [("daily", owed_local.replace(tzinfo=BERLIN))]


def test_latest_fire_time_picks_the_last_of_several(tmp_path: Path) -> None:
    cfg = config(tmp_path, '[digests.hourly]\nschedule = "0 * * * *"\ngrace = "3h"\n', "UTC")
    trigger = specs(cfg)["digest:hourly"].trigger
    now = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    assert latest_fire_time(trigger, now, timedelta(hours=3)) == datetime(
        2026, 11, 23, 12, 0, tzinfo=UTC
    )
    assert latest_fire_time(trigger, now, timedelta(minutes=20)) is None


def test_digest_grace_is_its_misfire_grace(tmp_path: Path) -> None:
    spec = specs(config(tmp_path, DIGEST))["digest:daily"]
    assert spec.misfire_grace == timedelta(hours=6)


def test_alerts_fire_at_the_end_of_each_local_hour_or_day(tmp_path: Path) -> None:
    cfg = config(tmp_path, '[alerts.h]\nkpi = "tickets_created"\ninterval = "hour"\n'
                 '[alerts.d]\nkpi = "backlog"\n')  # fmt: skip
    jobs = specs(cfg)
    now = datetime(2026, 11, 23, 10, 20, tzinfo=UTC)  # 11:20 in Berlin
    hourly, daily = jobs["alert:h"], jobs["alert:d"]
    assert hourly.trigger.get_next_fire_time(None, now) == datetime(2026, 11, 23, 11, tzinfo=UTC)
    assert daily.trigger.get_next_fire_time(None, now) == datetime(2026, 11, 23, 23, tzinfo=UTC)
    assert (hourly.misfire_grace, daily.misfire_grace) == (timedelta(hours=1), timedelta(days=1))


def test_a_report_is_owed_within_six_hours_of_its_time(tmp_path: Path) -> None:
    cfg = config(tmp_path, '[reports.weekly]\nschedule = "0 6 * * mon"\n')
    due = datetime(2026, 11, 23, 6, 0, tzinfo=BERLIN)
    assert owed_reports(cfg, datetime(2026, 11, 23, 5, 59, tzinfo=BERLIN)) == []
    assert owed_reports(cfg, due) == [("weekly", due)]
    assert owed_reports(cfg, datetime(2026, 11, 23, 11, 59, tzinfo=BERLIN)) == [("weekly", due)]
    assert owed_reports(cfg, datetime(2026, 11, 23, 12, 0, tzinfo=BERLIN)) == []
