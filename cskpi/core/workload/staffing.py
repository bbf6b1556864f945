"""`cskpi staffing`: agents required, agents seen at work and the gap, per hour of the week,
live and async channels apart (SPEC §8; the maths in ``core/plan/erlang.py``, the choices in
docs/planning.md).

The weeks are the last ``weeks`` whole local weeks (Monday to Monday) before ``now``, cut to
the week of the oldest stored ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine

from cskpi.core.config.file import StaffingSettings
from cskpi.core.config.periods import midnight
from cskpi.core.plan.erlang import required_async, required_live
from cskpi.core.store.reads.hourly import AgentHours, agent_hours, arrivals, first_arrival
from cskpi.core.store.reads.hourly import handle_times as read_handle_times
from cskpi.core.workload.local import local_seconds, week_hours

F64 = NDArray[np.float64]
DEFAULT_AHT = 480.0  # 8 minutes, when neither the config nor a vendor gives one
MIN_HANDLE_TIMES = 20  # vendor handle times needed before their median is trusted
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SHOWN_GAPS = 5


@dataclass(frozen=True)
class Grid:
    """One channel class over the week, each (7, 24), Monday 00:00 first."""

    arrivals: F64  # mean arrivals in the hour
    required: F64
    observed: F64  # mean distinct agents with a public reply in the hour
    gap: F64  # required - observed: above 0 is understaffed


@dataclass(frozen=True)
class Understaffed:
    weekday: int  # 0 = Monday
    hour: int
    required: float
    observed: float
    gap: float

    @property
    def label(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.hour:02d}:00"


@dataclass(frozen=True)
class StaffingPlan:
    start: date
    end: date  # exclusive: the Monday the weeks end at
    weeks: int
    tz: ZoneInfo
    settings: StaffingSettings
    aht: float
    aht_source: str  # "config", "vendor handling_time (median of N)" or "default"
    live: Grid | None
    async_: Grid | None
    total: Grid | None
    reason: str | None = None

    def understaffed(self, count: int = SHOWN_GAPS) -> list[Understaffed]:
        """The ``count`` hours with the largest positive total gap, largest first."""
        if self.total is None:
            return []
        flat = self.total.gap.ravel()
        order = [int(i) for i in np.argsort(-flat, kind="stable")[:count] if flat[i] > 0]
        return [Understaffed(i // 24, i % 24, float(self.total.required.ravel()[i]),
                             float(self.total.observed.ravel()[i]), float(flat[i]))
                for i in order]  # fmt: skip


def staffing_plan(
    engine: Engine,
    tz: ZoneInfo,
    settings: StaffingSettings | None,
    now: datetime,
    weeks: int,
    connectors: Sequence[str] = (),
) -> StaffingPlan:
    """The plan from the last ``weeks`` whole weeks before ``now``."""
    settings = settings or StaffingSettings()
    today = now.astimezone(tz).date()
    end = today - timedelta(days=today.weekday())
    start, weeks = _weeks(engine, tz, end, weeks, connectors)
    s, e = int(midnight(start, tz).timestamp()), int(midnight(end, tz).timestamp())
    aht, source = _aht(engine, settings, s, e)
    plan = StaffingPlan(start, end, weeks, tz, settings, aht, source, None, None, None)
    if weeks == 0:
        return _no_plan(plan, "no whole week of tickets before this week")
    came = arrivals(engine, s, e, connectors)
    worked = agent_hours(engine, s, e, connectors)
    live, async_ = (
        _grid(
            week_hours(came.at[came.live == flag], tz, came.n[came.live == flag]) / weeks,
            _present(worked, tz, worked.live == flag) / weeks,
            settings,
            aht,
            live=flag == 1,
        )
        for flag in (1, 0)
    )
    observed = _present(worked, tz, None) / weeks
    required = live.required + async_.required
    total = Grid(live.arrivals + async_.arrivals, required, observed, required - observed)
    return StaffingPlan(start, end, weeks, tz, settings, aht, source, live, async_, total)


def _no_plan(plan: StaffingPlan, reason: str) -> StaffingPlan:
    return StaffingPlan(plan.start, plan.end, 0, plan.tz, plan.settings, plan.aht,
                        plan.aht_source, None, None, None, reason)  # fmt: skip


def _weeks(
    engine: Engine, tz: ZoneInfo, end: date, weeks: int, connectors: Sequence[str]
) -> tuple[date, int]:
    """The first Monday and the number of whole weeks, no earlier than the oldest ticket's
    week (a week that began before the data did would read as a quiet one)."""
    oldest = first_arrival(engine, connectors)
    if oldest is None:
        return end, 0
    day = date.fromordinal(int(local_seconds(np.array([float(oldest)]), tz)[0] // 86400) + 719163)
    monday = day - timedelta(days=day.weekday())
    first_whole = monday if monday == day else monday + timedelta(days=7)
    available = max(0, (end - first_whole).days // 7)
    weeks = min(weeks, available)
    return end - timedelta(days=7 * weeks), weeks


def _aht(engine: Engine, settings: StaffingSettings, s: int, e: int) -> tuple[float, str]:
    """The configured AHT; else the vendors' median handle time over the weeks when at
    least ``MIN_HANDLE_TIMES`` are stored; else 8 minutes."""
    if settings.aht is not None:
        return settings.aht.total_seconds(), "config"
    stored = read_handle_times(engine, s, e)
    if len(stored) >= MIN_HANDLE_TIMES:
        return float(np.median(stored)), f"vendor handling_time (median of {len(stored)})"
    return DEFAULT_AHT, "default"


def _present(worked: AgentHours, tz: ZoneInfo, mask: NDArray[np.bool_] | None) -> F64:
    """Distinct agents per hour, summed by hour of week."""
    hour, agent = (
        (worked.hour, worked.agent) if mask is None else (worked.hour[mask], worked.agent[mask])
    )
    # each (hour, agent) once, as one integer: unique on a 1-D array, not on pairs (axis=1)
    agents = int(agent.max()) + 1 if len(agent) else 1
    codes = np.unique(hour.astype(np.int64) * agents + agent)
    return week_hours((codes // agents).astype(np.float64), tz)


def _grid(
    arrived: F64, observed: F64, settings: StaffingSettings, aht: float, *, live: bool
) -> Grid:
    rates = arrived / 3600
    if live:
        share, seconds = settings.target
        required = required_live(
            rates, aht, share, seconds, settings.max_occupancy, settings.shrinkage
        )
    else:
        required = required_async(rates, aht, settings.max_occupancy, settings.shrinkage)
    needed = required.astype(np.float64)
    return Grid(arrived, needed, observed, needed - observed)
