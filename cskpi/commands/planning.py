"""Rendering `cskpi forecast` and `cskpi staffing`: JSON documents, CSV and rich tables.

The table shows the week as a 7x24 grid; on a terminal its cells are coloured by the gap
(red: fewer agents than required), piped it is plain text.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from cskpi.core.workload.documents import forecast_document
from cskpi.core.workload.documents import rounded as _r
from cskpi.core.workload.forecast import ForecastReport
from cskpi.core.workload.staffing import WEEKDAYS, Grid, StaffingPlan

if TYPE_CHECKING:  # `cskpi forecast` and `staffing` need none of the alerts' modules
    from cskpi.core.alerts.runs import AlertResult
    from cskpi.core.config.file import AlertSettings

# --- forecast ---------------------------------------------------------------------------


def forecast_csv(report: ForecastReport) -> str:
    """One row per day and hour, and a row per day (hour ``all``) with the backlog."""
    doc = forecast_document(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["date", "hour", "created", "lo", "hi", "solved", "backlog"])
    for day in doc["forecast"] or []:
        for h in day["hours"]:
            writer.writerow(
                [day["date"], h["hour"], h["created"], h["lo"], h["hi"], h["solved"], ""]
            )
        writer.writerow([day["date"], "all", day["created"], day["lo"], day["hi"], day["solved"],
                         day["backlog"]])  # fmt: skip
    return buffer.getvalue()


def forecast_table(report: ForecastReport) -> Table | str:
    doc = forecast_document(report)
    if doc["forecast"] is None:
        return f"no forecast: {doc['reason']}"
    mape = "n/a" if doc["mape"] is None else f"{doc['mape']:.1f}%"
    table = Table(
        title=f"Forecast from {doc['start']} ({doc['timezone']})",
        caption=f"momentum x{doc['momentum']:.2f} (trend x{doc['trend']:.2f}); backtest error "
        f"(MAPE, last 4 weeks) {mape}; backlog at the start {doc['backlog_start']}",
    )
    for name in ("day", "created", "80% band", "solved", "backlog"):
        table.add_column(name, justify="left" if name == "day" else "right")
    for day in doc["forecast"]:
        weekday = WEEKDAYS[(report.start + timedelta(days=len(table.rows))).weekday()]
        band = f"{day['lo']}-{day['hi']}"
        table.add_row(f"{weekday} {day['date']}", f"{day['created']:.1f}", band,
                      f"{day['solved']:.1f}", f"{day['backlog']:.0f}")  # fmt: skip
    return table


# --- staffing ---------------------------------------------------------------------------


def staffing_csv(plan: StaffingPlan) -> str:
    """One row per channel class, weekday and hour."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "weekday", "hour", "arrivals", "required", "observed", "gap"])
    grids = (("live", plan.live), ("async", plan.async_), ("total", plan.total))
    for name, grid in grids:
        if grid is None:
            continue
        for d in range(7):
            for h in range(24):
                writer.writerow([name, WEEKDAYS[d], h, _r(grid.arrivals[d, h]),
                                 int(grid.required[d, h]), _r(grid.observed[d, h]),
                                 _r(grid.gap[d, h])])  # fmt: skip
    return buffer.getvalue()


def _cell(required: float, gap: float) -> Text:
    if required == 0 and gap <= 0:
        return Text("·", style="dim")
    style = "bold red" if gap >= 1 else "yellow" if gap > 0 else "green"
    return Text(f"{required:.0f}", style=style)


def staffing_grid(title: str, grid: Grid) -> Table:
    """Required agents by weekday (rows) and hour (columns), coloured by the gap."""
    table = Table(title=title, padding=(0, 0), pad_edge=False)
    table.add_column("", justify="left")
    for h in range(24):
        table.add_column(f"{h:>3}", justify="right")
    for d in range(7):
        table.add_row(WEEKDAYS[d], *(_cell(grid.required[d, h], grid.gap[d, h]) for h in range(24)))
    return table


def staffing_views(plan: StaffingPlan) -> list[Table | str]:
    s = plan.settings
    if plan.live is None or plan.async_ is None or plan.total is None:
        return [f"no staffing plan: {plan.reason}"]
    head = (f"Staffing from {plan.weeks} week(s), {plan.start} to {plan.end} ({plan.tz}): AHT "
            f"{plan.aht / 60:.1f} min ({plan.aht_source}), target {s.target.share:.0%} in "
            f"{s.target.seconds:g}s, shrinkage {s.shrinkage:.0%}, max occupancy "
            f"{s.max_occupancy:.0%}.\nCells: agents required; red: fewer at work.")  # fmt: skip
    short = [f"  {u.label}: {u.required:.0f} required, {u.observed:.1f} at work (gap {u.gap:.1f})"
             for u in plan.understaffed()]  # fmt: skip
    tail = "Most understaffed hours:\n" + "\n".join(short) if short else "No hour is understaffed."
    return [head, staffing_grid("live (chat, messaging, phone)", plan.live),
            staffing_grid("async (email, web, other)", plan.async_), tail]  # fmt: skip


# --- alerts -----------------------------------------------------------------------------


def alert_lines(result: AlertResult, settings: AlertSettings, *, dry_run: bool) -> str:
    """What `cskpi alerts` prints for one alert: the bucket, the keys judged and how many are
    unusual, each alarm's text and, when sending, what became of each target."""
    from cskpi.core.alerts.message import bucket_label, plain
    from cskpi.core.alerts.runs import targets_of

    head = f"alert {result.alert} ({bucket_label(result.bucket)})"
    if result.unsynced and not dry_run:
        return f"{head}: not evaluated: {result.unsynced}; run `cskpi sync` first"
    lines = [f"{head}: {len(result.findings)} key(s) judged, {len(result.alarms)} unusual"]
    if result.unsynced:  # a dry run shows what the store holds, with the warning
        lines.append(f"  (the store is {result.unsynced}: this bucket may be incomplete)")
    lines += [plain(alarm, result.alert).rstrip() for alarm in result.alarms]
    if result.alarms and not dry_run and not targets_of(settings):
        lines.append("no slack or email target configured; nothing sent")
    for d in result.deliveries:
        note = (
            f": {d.error}"
            if d.error
            else " (already sent for this bucket)" * (d.status == "skipped")
        )
        lines.append(f"  {d.key or 'all'}: {d.target} {d.status}{note}")
    return "\n".join(lines)
