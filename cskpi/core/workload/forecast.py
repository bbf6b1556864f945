"""`cskpi forecast`: arrivals and solves by day and hour for the coming days, the projected
backlog and the backtest error, from the store's history (SPEC §8; the maths in
``core/plan/forecast.py``, the choices in docs/planning.md).

The forecast starts at today's local midnight: today is forecast whole, so its hours so far
can be held against it. The history is the 12 weeks before (8 for the same-slot mean, 4
more for the backtest), cut to the day of the oldest stored ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine

from cskpi.core.config.periods import midnight
from cskpi.core.kpis.backlog import backlog_counts
from cskpi.core.plan.forecast import (
    BACKTEST_WEEKS,
    SAME_SLOT_WEEKS,
    Forecast,
    NoForecast,
    backtest_mape,
    forecast,
    project_backlog,
)
from cskpi.core.store.reads.hourly import arrivals, first_arrival, solves
from cskpi.core.workload.local import day_hours, local_seconds

HISTORY_DAYS = 7 * (SAME_SLOT_WEEKS + BACKTEST_WEEKS)


@dataclass(frozen=True)
class ForecastReport:
    start: date  # the first forecast day (today, local)
    days: int
    tz: ZoneInfo
    history_days: int
    created: Forecast | None
    solved: Forecast | None
    backlog_start: int  # at ``start``'s midnight
    backlog: list[float]  # at the end of each forecast day
    mape: float | None  # backtest error of the arrivals, %
    reason: str | None = None  # why there is no forecast


def forecast_report(
    engine: Engine, tz: ZoneInfo, now: datetime, days: int, connectors: Sequence[str] = ()
) -> ForecastReport:
    """The forecast for ``days`` days from the local day of ``now``."""
    today = now.astimezone(tz).date()
    begin = midnight(today, tz)
    first = _first_day(engine, tz, today, connectors)
    history = (today - first).days
    s, e = int(midnight(first, tz).timestamp()), int(begin.timestamp())
    came, went = arrivals(engine, s, e, connectors), solves(engine, s, e, connectors)
    created = day_hours(came.at, tz, first, history, came.n)
    solved = day_hours(went.at, tz, first, history, went.n)
    made, done = forecast(created, days), forecast(solved, days)
    if isinstance(made, NoForecast) or isinstance(done, NoForecast):
        reason = made.reason if isinstance(made, NoForecast) else getattr(done, "reason", "")
        return ForecastReport(today, days, tz, history, None, None, 0, [], None, reason)
    start_backlog = backlog_counts(engine, [begin], wall=now, connectors=connectors)[0]
    path = project_backlog(start_backlog, made.daily, done.daily)
    return ForecastReport(
        today, days, tz, history, made, done, start_backlog, [float(b) for b in path],
        backtest_mape(created),
    )  # fmt: skip


def _first_day(engine: Engine, tz: ZoneInfo, today: date, connectors: Sequence[str]) -> date:
    """The first day of history: 12 weeks back, or the oldest ticket's day when later."""
    oldest = first_arrival(engine, connectors)
    earliest = today - timedelta(days=HISTORY_DAYS)
    if oldest is None:
        return today
    day = date.fromordinal(int(local_seconds(np.array([float(oldest)]), tz)[0] // 86400) + 719163)
    return min(max(earliest, day), today)
