"""Tables for the working views of SPEC §6 on a terminal: the rows behind a KPI and the
series. Plain text: a terminal has no links, so ticket ids are shown as they are."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from cskpi.core.config.periods import Window
from cskpi.core.kpis.drill import Listing
from cskpi.core.kpis.output import (
    clipped,
    duration_column,
    duration_text,
    listing_columns,
    value_text,
)
from cskpi.core.kpis.report import Report

# More rows than this are for --format csv or json: a terminal table of 80,000 rows helps
# nobody and takes long to lay out.
TABLE_ROWS = 500

_TICKET_COLUMNS = ("id", "status", "priority", "assignee", "organization", "created_at",
                   "first_reply_at", "solved_at", "subject")  # fmt: skip
_RATING_COLUMNS = ("rated_at", "kind", "score", "agent", "requester", "organization", "mrr",
                   "ticket", "comment")  # fmt: skip


def listing_table(listing: Listing, window: Window) -> Table:
    columns = listing_columns(listing, window.tz)
    shown = list(_TICKET_COLUMNS if listing.kind == "tickets" else _RATING_COLUMNS)
    shown += [c for c in ("in_numerator", "seconds") if c in columns]
    what = listing.kpi or ("unhappy ratings" if listing.kind == "ratings" else "tickets_created")
    title = f"{what}: {len(listing):,} {listing.kind}"
    if "in_numerator" in columns:
        title += f", {sum(bool(v) for v in columns['in_numerator']):,} in the numerator"
    if len(listing) > TABLE_ROWS:
        title += f" (the first {TABLE_ROWS}; --format csv for all)"
    table = Table(*shown, title=title, title_justify="left")
    for i in range(min(len(listing), TABLE_ROWS)):
        table.add_row(*(escape(_cell(name, columns[name][i])) for name in shown))
    return table


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "seconds":
        return duration_text(float(value))
    if name.endswith("_at"):
        return str(value)[:16].replace("T", " ")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return clipped(str(value), 60)


def series_table(report: Report, keys: tuple[str, ...]) -> Table:
    """One row per bucket of the series: its start and the headline of each KPI in ``keys``;
    a duration column in one format."""
    assert report.series is not None
    w, buckets = report.window, report.series.buckets
    table = Table(report.series.interval, *keys, title_justify="left",
                  title=f"per {report.series.interval}")  # fmt: skip
    columns = [
        duration_column([b.kpis[k]["value"] for b in buckets])
        if buckets and buckets[0].kpis[k]["unit"] == "s"
        else [value_text(k, b.kpis[k]) for b in buckets]
        for k in keys
    ]
    fmt = "%Y-%m-%d" if all(_at_midnight(b.window, w) for b in buckets) else "%Y-%m-%d %H:%M"
    for b, *cells in zip(buckets, *columns, strict=True):
        table.add_row(b.window.start.astimezone(w.tz).strftime(fmt), *(escape(c) for c in cells))
    return table


def _at_midnight(bucket: Window, w: Window) -> bool:
    local = bucket.start.astimezone(w.tz)
    return (local.hour, local.minute, local.second) == (0, 0, 0)
