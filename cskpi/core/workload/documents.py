"""`cskpi forecast --format json` and `cskpi staffing --format json`: the documents, made once
here so the HTML report (``digest/report/sections.py``) shows the very figures the commands
print (docs/planning.md lists the keys)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from cskpi.core.workload.forecast import ForecastReport
from cskpi.core.workload.staffing import Grid, StaffingPlan


def rounded(value: float) -> float:
    return round(float(value), 2)


def forecast_document(report: ForecastReport) -> dict[str, Any]:
    """``{"forecast": [{"date", "created", "lo", "hi", "solved", "backlog", "hours"}], "mape"}``
    (docs/planning.md); ``"forecast": null`` with a ``reason`` under two weeks of history."""
    head: dict[str, Any] = {"timezone": str(report.tz), "start": report.start.isoformat(),
                            "days": report.days, "history_days": report.history_days}  # fmt: skip
    made, done = report.created, report.solved
    if made is None or done is None:
        return {**head, "forecast": None, "reason": report.reason, "mape": None}
    days = []
    for d in range(report.days):
        hours = [{"hour": h, "created": rounded(made.hourly[d, h]), "lo": int(made.low[d, h]),
                  "hi": int(made.high[d, h]), "solved": rounded(done.hourly[d, h])}
                 for h in range(24)]  # fmt: skip
        days.append({
            "date": (report.start + timedelta(days=d)).isoformat(),
            "created": rounded(made.daily[d]), "lo": int(made.daily_low[d]),
            "hi": int(made.daily_high[d]), "solved": rounded(done.daily[d]),
            "backlog": rounded(report.backlog[d]), "hours": hours,
        })  # fmt: skip
    mape = None if report.mape is None else rounded(report.mape)
    return {**head, "momentum": rounded(made.momentum), "trend": rounded(made.trend),
            "solved_momentum": rounded(done.momentum), "backlog_start": report.backlog_start,
            "mape": mape, "forecast": days}  # fmt: skip


def _grid_document(grid: Grid) -> dict[str, Any]:
    return {name: np.round(getattr(grid, name), 2).tolist()
            for name in ("arrivals", "required", "observed", "gap")}  # fmt: skip


def staffing_document(plan: StaffingPlan) -> dict[str, Any]:
    """Every cell: ``live``, ``async`` and ``total``, each with 7x24 ``arrivals`` (mean per
    hour), ``required``, ``observed`` and ``gap``, Monday 00:00 first."""
    s = plan.settings
    doc: dict[str, Any] = {
        "timezone": str(plan.tz), "from": plan.start.isoformat(), "to": plan.end.isoformat(),
        "weeks": plan.weeks, "aht": {"seconds": rounded(plan.aht), "source": plan.aht_source},
        "target": {"share": s.target.share, "seconds": s.target.seconds},
        "shrinkage": s.shrinkage, "max_occupancy": s.max_occupancy,
    }  # fmt: skip
    if plan.total is None or plan.live is None or plan.async_ is None:
        return {**doc, "live": None, "async": None, "total": None, "reason": plan.reason}
    doc.update(live=_grid_document(plan.live), total=_grid_document(plan.total))
    doc["async"] = _grid_document(plan.async_)
    doc["understaffed"] = [
        {"weekday": u.weekday, "hour": u.hour, "label": u.label, "required": rounded(u.required),
         "observed": rounded(u.observed), "gap": rounded(u.gap)}
        for u in plan.understaffed()
    ]  # fmt: skip
    return doc
