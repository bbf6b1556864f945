"""The forecast and the staffing plan over a store whose every figure is worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine

from cskpi.connectors.base import Message, Record, Ticket
from cskpi.core.config.file import StaffingSettings
from cskpi.core.config.tables import ServiceTarget
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.sync_state import finish_stream
from cskpi.core.store.upserts import upsert_records
from cskpi.core.workload.forecast import forecast_report
from cskpi.core.workload.staffing import staffing_plan

TZ = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 9, 28, tzinfo=TZ)  # 8 whole weeks before Mon 23 Nov 2026
NOW = datetime(2026, 11, 23, 10, tzinfo=TZ)


def store(tmp_path: Path, records: list[Record], url: str | None = None) -> Engine:
    engine = open_engine(url or f"sqlite:///{tmp_path / 'kpi.db'}")
    with write_transaction(engine) as conn:
        upsert_records(conn, "hd", records)
        finish_stream(conn, "hd", "tickets", None)
    return engine


def test_a_fixed_week_is_forecast_as_it_was(tmp_path: Path, store_url: str) -> None:
    # Every weekday: 3 tickets created at 10:xx, solved at 11:xx; Saturdays 1 at 15:xx.
    records: list[Record] = []
    for day in range(56):
        start = MONDAY + timedelta(days=day)
        slots = [(15, 1)] if start.weekday() == 5 else [] if start.weekday() == 6 else [(10, 3)]
        for hour, count in slots:
            for i in range(count):
                created = start.replace(hour=hour, minute=10 * i)
                records.append(Ticket(f"{day}-{i}", created, created, "solved",
                                      solved_at=created + timedelta(hours=1)))  # fmt: skip
    engine = store(tmp_path, records, store_url)
    report = forecast_report(engine, TZ, NOW, 7)
    assert report.created is not None
    assert report.solved is not None
    assert report.history_days == 56
    assert report.created.momentum == 1.0
    assert report.created.daily.tolist() == [3, 3, 3, 3, 3, 1, 0]
    assert report.created.hourly[0, 10] == 3
    assert report.created.hourly[5, 15] == 1
    assert report.solved.hourly[0, 11] == 3
    assert report.backlog_start == 0  # every ticket solved within its hour
    assert report.backlog == [0] * 7
    assert report.mape == 0.0
    engine.dispose()


def test_under_two_weeks_of_history_gives_a_reason(tmp_path: Path) -> None:
    created = NOW - timedelta(days=10)
    engine = store(tmp_path, [Ticket("a", created, created, "open")])
    report = forecast_report(engine, TZ, NOW, 28)
    assert report.created is None
    assert report.reason == "10 days of history; a forecast needs at least 14"
    engine.dispose()


def test_staffing_grid_by_hand(tmp_path: Path, store_url: str) -> None:
    # Each of 4 weeks, Mon 10:00-11:00: 200 chats (λ = 200/3600 per s; AHT 180 s: A = 10,
    # SPEC §8's vector, so 80 % in 20 s needs 14) with replies by 3 agents; Tue 09:00: 30
    # emails (30/3600 · 180 = 1.5 Erlangs of work: ⌈1.5⌉ = 2 at full occupancy).
    records: list[Record] = []
    for week in range(4):
        monday = MONDAY + timedelta(weeks=4 + week)
        for i in range(200):
            at = monday.replace(hour=10) + timedelta(seconds=18 * i)
            records.append(Ticket(f"c{week}-{i}", at, at, "open", channel="chat"))
            author = f"agent{i % 3}"
            records.append(Message(f"m{week}-{i}", f"c{week}-{i}", at + timedelta(seconds=5),
                                   "agent", author_id=author))  # fmt: skip
        for i in range(30):
            at = monday.replace(hour=9) + timedelta(days=1, minutes=i)
            records.append(Ticket(f"e{week}-{i}", at, at, "open", channel="email"))
    engine = store(tmp_path, records, store_url)
    settings = StaffingSettings(aht=timedelta(minutes=3), target=ServiceTarget(0.8, 20.0),
                                shrinkage=0.0, max_occupancy=1.0)  # fmt: skip
    plan = staffing_plan(engine, TZ, settings, NOW, 4)
    assert plan.weeks == 4
    assert plan.aht_source == "config"
    assert plan.live is not None
    assert plan.async_ is not None
    assert plan.total is not None
    assert plan.live.arrivals[0, 10] == 200
    assert plan.live.required[0, 10] == 14
    assert plan.live.observed[0, 10] == 3
    assert plan.live.gap[0, 10] == 11
    assert plan.async_.required[1, 9] == 2
    assert plan.async_.observed[1, 9] == 0
    assert np.count_nonzero(plan.total.required) == 2
    worst = plan.understaffed()
    assert [(u.label, u.gap) for u in worst] == [("Mon 10:00", 11.0), ("Tue 09:00", 2.0)]
    engine.dispose()


def test_staffing_without_a_whole_week(tmp_path: Path) -> None:
    created = NOW - timedelta(days=3)
    engine = store(tmp_path, [Ticket("a", created, created, "open")])
    plan = staffing_plan(engine, TZ, None, NOW, 4)
    assert plan.total is None
    assert plan.reason == "no whole week of tickets before this week"
    assert plan.aht == 480
    engine.dispose()


@pytest.mark.parametrize("aht", [None])
def test_vendor_handle_time_is_used_when_stored(tmp_path: Path, aht: None) -> None:
    """The vendors' ``handling_time`` in ``vendor_metric`` (m009): its median over the
    weeks' solved tickets is the AHT."""
    records: list[Record] = []
    for i in range(21):
        at = MONDAY + timedelta(weeks=7, hours=i)
        records.append(Ticket(f"s{i}", at, at, "solved", solved_at=at + timedelta(minutes=5)))
    engine = store(tmp_path, records)
    with write_transaction(engine) as conn:
        for i in range(21):
            conn.exec_driver_sql(
                "INSERT INTO vendor_metric (ticket_id, name, seconds, connector) "
                "VALUES (?, 'handling_time', ?, 'hd')",
                (f"hd:s{i}", 100 + i),
            )
    plan = staffing_plan(engine, TZ, StaffingSettings(aht=aht), NOW, 1)
    assert plan.aht == 110.0
    assert plan.aht_source == "vendor handling_time (median of 21)"
    engine.dispose()


def test_now_in_utc_and_local_agree(tmp_path: Path) -> None:
    engine = store(tmp_path, [Ticket("a", MONDAY, MONDAY, "open")])
    local = forecast_report(engine, TZ, NOW, 1)
    utc = forecast_report(engine, TZ, NOW.astimezone(UTC), 1)
    assert local.start == utc.start
    assert local.history_days == utc.history_days == 56
    engine.dispose()
