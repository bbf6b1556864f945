"""The sections of `cskpi report` (SPEC §9), one provider each, in the order they are shown.

Every figure comes from the document `cskpi kpis --format json` prints for the same window
(``Inputs.doc``, `cskpi kpis --interval day --format json`, whose ``series`` is the daily
chart), or from the same engine run over another window (the previous window). The
forecast and staffing sections show the documents `cskpi forecast` and `cskpi staffing
--format json` print (``workload/documents.py``), the alerts section the ``alert_run`` rows
sent. A
provider whose data this version does not compute returns :class:`Missing` with the reason;
wiring such a section is filling its provider.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, text

from cskpi.core.config.file import Config
from cskpi.core.config.periods import Window
from cskpi.core.digest import alarm_text, chart
from cskpi.core.digest.content import (
    LABELS,
    Breached,
    Series,
    Unanswered,
    breached,
    delta,
    ticket_url,
    unanswered,
)
from cskpi.core.digest.report.blocks import (
    Block,
    Cell,
    Chart,
    Heading,
    Missing,
    Note,
    Section,
    Table,
)
from cskpi.core.kpis import drill
from cskpi.core.kpis.definitions import definition
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.output import detail_text, duration_text, value_text
from cskpi.core.kpis.report import Entry, Group, KpiContext
from cskpi.core.store.sync_state import all_states
from cskpi.core.workload.documents import forecast_document, staffing_document
from cskpi.core.workload.forecast import forecast_report
from cskpi.core.workload.staffing import staffing_plan

TICKETS_SHOWN = 20  # breached and waiting tickets: the oldest, so the file stays small
GROUPS_SHOWN = 50  # rows of the --by table, and accounts at risk
ALERTS_SHOWN = 50  # alarms sent in the window: the latest
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TONE_WORD = {"good": "better", "bad": "worse", "neutral": ""}


@dataclass(frozen=True)
class Figures:
    """The engine's figures of the window (``page.window_figures``)."""

    doc: dict[str, Any]  # `cskpi kpis --interval day --format json` of the window
    at_risk: list[Group]  # `kpis --by organization`'s accounts at risk


@dataclass(frozen=True)
class Inputs:
    """What every provider may read. The engine's figures are futures: the providers run
    while the engine computes them (``start``), and one that reads them waits for them."""

    config: Config
    engine: Engine
    window: Window
    previous: Window
    ctx: KpiContext
    connectors: tuple[str, ...]
    figures: Future[Figures]
    earlier: Future[dict[str, Any]]  # `cskpi kpis --format json` of the previous window
    where: Where = EVERYTHING  # --where: every section that reads the KPI engine takes it

    @property
    def doc(self) -> dict[str, Any]:
        return self.figures.result().doc

    @property
    def at_risk(self) -> list[Group]:
        return self.figures.result().at_risk

    @property
    def before(self) -> dict[str, Any]:
        return self.earlier.result()

    @property
    def kpis(self) -> dict[str, Entry]:
        kpis: dict[str, Entry] = self.doc["kpis"]
        return kpis


Provider = Callable[[Inputs], list[Block]]


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " ").capitalize())


def figure(key: str, value: Any, field: str = "value", **more: str) -> dict[str, str]:
    """The data attributes that carry a figure exactly as the JSON document has it."""
    attrs = {"data-kpi": key, "data-field": field, "data-value": json.dumps(value)}
    return attrs | {f"data-{k}": v for k, v in more.items()}


def shown(key: str, entry: Entry) -> str:
    """The headline as a person reads it; a shape this version's formatter does not know (a
    KPI added later) is shown plainly rather than failing the report."""
    value = entry.get("value")
    try:
        return value_text(key, entry)
    except (KeyError, TypeError, ValueError):
        if isinstance(value, dict):
            return " / ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in
                              value.items())  # fmt: skip
        return str(value)


def detail(key: str, entry: Entry) -> str:
    try:
        return detail_text(key, entry)
    except (KeyError, TypeError, ValueError):
        return str(entry.get("reason", ""))


def window_args(i: Inputs, where: bool = True) -> list[str]:
    """The options that give a command this report's window, connectors and (``where``)
    --where filter: how to reproduce a figure or list what a capped table leaves out."""
    w = i.window
    parts = [f"--from {w.start.astimezone(w.tz).isoformat()}",
             f"--to {w.end.astimezone(w.tz).isoformat()}",
             f"--now {w.now.astimezone(w.tz).isoformat()}"]  # fmt: skip
    parts += [f"--connector {c}" for c in i.connectors]
    return parts + ([f"--where {item}" for item in where_items(i.where)] if where else [])


def where_items(where: Where) -> list[str]:
    """``where`` as ``--where DIM=VALUE`` items (stored values: ids, which --where takes)."""
    return [f"{dim}={value}" for dim, values in where.terms for value in values
            if value is not None]  # fmt: skip


def more(
    total: int, shown: int, command: str, i: Inputs, options: str, where: bool = True,
    gives: str = "to list them all",
) -> str:  # fmt: skip
    """The line under a capped table: how many rows it leaves out and the command that lists
    them all (a big store's report stays small: SPEC §9, docs/performance.md)."""
    if total <= shown:
        return ""
    args = " ".join([f"cskpi {command}", *window_args(i, where), options])
    return f"{total - shown:,} more — run `{args}` {gives}"


# --- the KPI table ----------------------------------------------------------------------


def kpi_table(i: Inputs) -> list[Block]:
    before = i.before["kpis"]
    rows = [_kpi_row(key, entry, before.get(key)) for key, entry in i.kpis.items()]
    head = ["KPI", "Value", "Detail", "Previous window", "Change"]
    return [Table("Every KPI of the window, with the previous window's value", head, rows)]


def _kpi_row(key: str, entry: Entry, before: Entry | None) -> list[Cell]:
    change = _change(key, entry, before)
    previous = before.get("value") if before else None
    return [
        Cell(label(key), {"data-kpi": key, "data-entry": json.dumps(entry)}, header=True),
        Cell(shown(key, entry), figure(key, entry.get("value")), cls="num"),
        Cell(detail(key, entry)),
        Cell(shown(key, before) if before else "-", figure(key, previous, "previous"), cls="num"),
        change,
    ]


def _change(key: str, entry: Entry, before: Entry | None) -> Cell:
    """The change as text with its direction in words (colour is not the only signal)."""
    now, then = entry.get("value"), before.get("value") if before else None
    if not (_number(now) and _number(then)) or before is None:
        return Cell("")
    d = delta(key, entry, before)
    if d is None:
        return Cell("")
    word = _TONE_WORD[d.tone]
    return Cell(f"{d.arrow} {d.text}" + (f" ({word})" if word else ""), cls=d.tone)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- daily series -----------------------------------------------------------------------


def daily_series(i: Inputs) -> list[Block]:
    series = _series_of(i.doc)
    if series is None:
        return [Missing("the document has no daily series (cskpi kpis --interval day)")]
    title = "Tickets created and solved per day, and the backlog at each day's end"
    rows = [
        [Cell(f"{d:%a %d %b}", header=True),
         *(Cell(f"{v:,}", {"data-day": d.isoformat(), "data-field": name, "data-value": str(v)},
                cls="num") for name, v in (("created", c), ("solved", s), ("backlog", b)))]
        for d, c, s, b in zip(series.days, series.created, series.solved, series.backlog,
                              strict=True)
    ]  # fmt: skip
    table = Table("The numbers per day", ["Day", "Created", "Solved", "Backlog"], rows, folded=True)
    return [
        Chart(
            chart.svg(chart.chart_figure(series, "Per day", chart.REPORT_WIDTH_IN), title, "series")
        ),
        table,
    ]


def _series_of(doc: dict[str, Any]) -> Series | None:
    """The series `kpis --interval day` gives (SPEC §6), when the document has one."""
    series = doc.get("series")
    if not series or series.get("interval") != "day":
        return None
    buckets = series["buckets"]
    values = {k: [int(b["kpis"][k]["value"] or 0) for b in buckets]
              for k in ("tickets_created", "tickets_solved", "backlog")}  # fmt: skip
    days = [datetime.fromisoformat(b["from"]).date() for b in buckets]
    return Series(days, values["tickets_created"], values["tickets_solved"], values["backlog"])


# --- distributions and stages -----------------------------------------------------------

_DISTRIBUTIONS = {
    "first_response_distribution": "Time to first reply, tickets created in the window",
    "resolution_distribution": "Time to resolution, tickets solved in the window",
    "backlog_age": "Backlog by age at the window's end",
}


def distributions(i: Inputs) -> list[Block]:
    blocks: list[Block] = []
    for key, title in _DISTRIBUTIONS.items():
        blocks.append(Heading(label(key)))
        blocks += _distribution(key, title, i.kpis.get(key))
    return blocks


def _distribution(key: str, title: str, entry: Entry | None) -> list[Block]:
    if entry is None:
        return [Missing(f"{key} is not computed by this version (SPEC §6)")]
    value = entry.get("value")
    if not isinstance(value, dict):
        return [Missing(str(entry.get("reason", f"{key} has no buckets")))]
    names, counts = list(value), [int(v) for v in value.values()]
    rows = [[Cell(n, header=True), Cell(f"{c:,}", figure(key, c, "bucket", bucket=n), cls="num")]
            for n, c in zip(names, counts, strict=True)]  # fmt: skip
    svg = chart.svg(chart.bars_figure(names, counts, title), title, key)
    return [Chart(svg), Table(f"{title}: the numbers", ["Bucket", "Tickets"], rows, folded=True)]


_STAGED = ("resolution_stages", "time_in_status")


def stages(i: Inputs) -> list[Block]:
    blocks: list[Block] = []
    for key in _STAGED:
        blocks.append(Heading(label(key)))
        blocks += _stages(key, i.kpis.get(key))
    return blocks


def _stages(key: str, entry: Entry | None) -> list[Block]:
    """Each part of the entry that has a median (a stage, a status) as a row."""
    if entry is None:
        return [Missing(f"{key} is not computed by this version (SPEC §6)")]
    parts = {k: v for k, v in entry.items() if isinstance(v, dict) and "median" in v}
    if not parts:
        return [Missing(str(entry.get("reason", f"{key} has no stages")))]
    rows = [
        [Cell(name.replace("_", " "), header=True),
         *(Cell(duration_text(part.get(s)), figure(key, part.get(s), s, stage=name), cls="num")
           for s in ("median", "p90", "mean"))]
        for name, part in parts.items()
    ]  # fmt: skip
    n = entry.get("n")
    note = f"over {n:,} tickets" if isinstance(n, int) else ""
    return [Table(label(key), ["Stage", "Median", "p90", "Mean"], rows, note)]


# --- submissions heatmap ----------------------------------------------------------------


def heatmap(i: Inputs) -> list[Block]:
    key = "submissions_by_hour"
    matrix = i.kpis.get(key, {}).get("value")
    if not isinstance(matrix, list):
        return [Missing(f"{key} is not in the KPI document")]
    top = max((n for row in matrix for n in row), default=0)
    rows = []
    for day, hours in enumerate(matrix):
        cells = [Cell(f"{n:,}", figure(key, n, "cell", day=str(day), hour=str(h)),
                      cls=f"num heat-{math.ceil(5 * n / top) if top else 0}")
                 for h, n in enumerate(hours)]  # fmt: skip
        rows.append([Cell(_DAYS[day], header=True), *cells, Cell(f"{sum(hours):,}", cls="num")])
    head = ["Day", *(f"{h:02d}" for h in range(24)), "Total"]
    caption = (f"Tickets created by weekday and hour ({i.window.tz}); darker is busier, "
               "each cell shows its count")  # fmt: skip
    return [Table(caption, head, rows)]


# --- the --by table ---------------------------------------------------------------------

_BY_COLUMNS = {
    "tickets_created": "Created", "tickets_solved": "Solved", "backlog": "Backlog",
    "first_response_time": "First response", "resolution_time": "Resolution",
    "fcr_rate": "FCR", "csat": "CSAT", "sla_first_response": "SLA first reply met",
}  # fmt: skip


def by_table(i: Inputs) -> list[Block]:
    by = i.doc.get("by")
    if by is None:
        return [Missing("no --by dimension given (e.g. cskpi report --by agent)")]
    groups = by["groups"]
    rows = [_group_row(g) for g in groups[:GROUPS_SHOWN]]
    note = more(len(groups), GROUPS_SHOWN, "kpis", i, f"--by {by['dimension']} --format csv")
    head = [by["dimension"].capitalize(), *_BY_COLUMNS.values()]
    return [Table(f"KPIs by {by['dimension']}, the busiest first", head, rows, note)]


def _group_row(group: dict[str, Any]) -> list[Cell]:
    kpis = group["kpis"]
    key = json.dumps(group["key"])
    return [Cell(group["label"], header=True)] + [
        Cell(shown(k, kpis[k]), figure(k, kpis[k]["value"], group=key), cls="num")
        for k in _BY_COLUMNS
        if k in kpis
    ]


# --- SLA breaches and waiting tickets ---------------------------------------------------


def sla(i: Inputs) -> list[Block]:
    # the store first, while the engine computes the window; then its figures
    found = breached(i.engine, i.config, i.window, i.ctx, TICKETS_SHOWN + 1, i.connectors)
    waiting = unanswered(i.engine, i.config, i.window.at, TICKETS_SHOWN, i.connectors)
    rows = [_sla_row(k, i.kpis[k]) for k in ("sla_first_response", "sla_resolution")]
    head = ["Target", "Met", "Judged", "Breaches"]
    blocks: list[Block] = [Table("SLA targets of tickets created in the window", head, rows)]
    if i.where:
        blocks.append(Note("The two lists below are not filtered by --where: they cover every "
                           "ticket of the chosen connectors."))  # fmt: skip
    return blocks + _breached(i, found) + _waiting(i, *waiting)


def _sla_row(key: str, entry: Entry) -> list[Cell]:
    if entry["value"] is None:
        return [Cell(label(key), header=True), Cell("-", figure(key, None)),
                Cell(str(entry.get("reason", ""))), Cell("")]  # fmt: skip
    judged, met = int(entry["denominator"]), int(entry["numerator"])
    return [
        Cell(label(key), header=True),
        Cell(shown(key, entry), figure(key, entry["value"]), cls="num"),
        Cell(f"{met:,} of {judged:,}", figure(key, judged, "denominator"), cls="num"),
        Cell(f"{judged - met:,}", figure(key, judged - met, "breaches"), cls="num"),
    ]


def _breached(i: Inputs, found: list[Breached]) -> list[Block]:
    if not found:
        return [Note("No ticket created in the window missed a target.")]
    rows = [[Cell(b.ticket_id, href=b.url, header=True), Cell(b.priority or "-"),
             Cell(b.missed), Cell(b.subject)] for b in found[:TICKETS_SHOWN]]  # fmt: skip
    note = _more_breaches(i) if len(found) > TICKETS_SHOWN else ""
    head = ["Ticket", "Priority", "Missed", "Subject"]
    return [Table("Tickets that missed a target, oldest first", head, rows, note)]


_MISSED = {"sla_first_response": "first-response", "sla_resolution": "resolution"}


def _more_breaches(i: Inputs) -> str:
    """The breaches the list leaves out, counted by the SLA KPIs (a ticket may miss both)."""
    counts = [(k, int(e["denominator"]) - int(e["numerator"])) for k in ("sla_first_response",
              "sla_resolution") if (e := i.kpis[k])["value"] is not None]  # fmt: skip
    told = ", ".join(f"{n:,} {_MISSED[k]} breaches" for k, n in counts)
    commands = " and ".join(f"`{' '.join(['cskpi tickets', *window_args(i, False), '--kpi', k])}`"
                            for k, _ in counts)  # fmt: skip
    return (
        f"The oldest {TICKETS_SHOWN} are shown, of {told} in the window; {commands} "
        "list every ticket judged, with whether it met the target (in_numerator)."
    )


def _waiting(i: Inputs, found: list[Unanswered], total: int) -> list[Block]:
    if not total:
        return [Note("No ticket was waiting for a first reply at the window's end.")]
    rows = [[Cell(u.ticket_id, href=u.url, header=True), Cell(u.age, cls="num"),
             Cell(u.priority or "-"), Cell("breached" if u.overdue else "-"),
             Cell(u.subject)] for u in found]  # fmt: skip
    head = ["Ticket", "Waiting", "Priority", "First-reply SLA", "Subject"]
    caption = f"Waiting for a first reply at the window's end: {total:,}; the oldest"
    backlog = ("for the backlog at the window's end: those with no first_reply_at are the "
               "ones waiting")  # fmt: skip
    note = more(total, TICKETS_SHOWN, "tickets", i, "--kpi awaiting_reply", False, backlog)
    return [Table(caption, head, rows, note)]


# --- sections other work fills ----------------------------------------------------------


UNHAPPY_SHOWN = 20  # `cskpi tickets --unhappy`'s first rows: the highest mrr first


def unhappy(i: Inputs) -> list[Block]:
    """The first rows of `cskpi tickets --unhappy --format json` for the window: ratings
    below the top two boxes (csat), detractors (nps) and the bottom two boxes (ces), the
    customers paying most first."""
    found = drill.unhappy(i.engine, i.window, connectors=i.connectors, where=i.where)
    if not len(found):
        return [Note("No customer rated a ticket badly in the window.")]
    c = found.columns
    rows = [_unhappy_row(i, c, n) for n in range(min(len(found), UNHAPPY_SHOWN))]
    head = ["Ticket", "Organization", "MRR", "Rating", "Comment", "Agent"]
    caption = f"Bad ratings in the window: {len(found):,}; the highest MRR first"
    note = more(len(found), UNHAPPY_SHOWN, "tickets", i, "--unhappy")
    return [Table(caption, head, rows, note)]


def _unhappy_row(i: Inputs, c: dict[str, Any], n: int) -> list[Cell]:
    external, connector = c["ticket_external_id"][n], str(c["connector"][n])
    url = None if external is None else ticket_url(i.config, connector, str(external))
    mrr = None if math.isnan(c["mrr"][n]) else float(c["mrr"][n])
    score, low, high = (float(c[k][n]) for k in ("score", "scale_min", "scale_max"))
    at = {"data-rating": str(c["id"][n])}
    return [
        Cell(str(external or c["ticket"][n] or "-"), at, href=url, header=True),
        Cell(str(c["organization"][n] or "-")),
        Cell("-" if mrr is None else f"{mrr:,.2f}", at | {"data-field": "mrr",
             "data-value": json.dumps(mrr)}, cls="num"),
        Cell(f"{c['kind'][n]} {score:g} of {low:g}-{high:g}", at | {"data-field": "score",
             "data-value": json.dumps(score)}, cls="num"),
        Cell(str(c["comment"][n] or "-")),
        Cell(str(c["agent"][n] or "-")),
    ]  # fmt: skip


def accounts(i: Inputs) -> list[Block]:
    """The organizations `cskpi kpis --by organization` marks at risk (SPEC §6 Accounts),
    highest MRR first, as ``drill.accounts_at_risk`` gives them (``page.window_figures``)."""
    if not i.at_risk:
        return [Note("No account is at risk: none with MRR has low CSAT, a stale ticket or a "
                     "surge of tickets.")]  # fmt: skip
    accounts = sorted(
        ((g, g.account or {}) for g in i.at_risk),
        key=lambda ga: (-(ga[1].get("mrr") or 0), ga[0].label.casefold()),
    )
    rows = [[Cell(g.label, header=True),
             Cell(f"{a.get('mrr') or 0:,.2f}", figure("account", a.get("mrr"), "mrr",
                  group=json.dumps(g.key)), cls="num"),
             Cell(", ".join(r.replace("_", " ") for r in a.get("reasons", [])))]
            for g, a in accounts[:GROUPS_SHOWN]]  # fmt: skip
    note = more(len(accounts), GROUPS_SHOWN, "kpis", i, "--by organization --format csv")
    return [Table("Accounts at risk, by MRR", ["Organization", "MRR", "Why"], rows, note)]


def divergence(i: Inputs) -> list[Block]:
    native = {k: e["native"] for k, e in i.kpis.items() if isinstance(e.get("native"), dict)}
    if not native:
        return [Missing("vendor-native figures (SPEC §7, kpis --native) are not computed by this "
                        "version")]  # fmt: skip
    rows = [[Cell(label(k), header=True), Cell(shown(k, i.kpis[k]), cls="num"),
             Cell(duration_text(n.get("value")), figure(k, n.get("value"), "native"), cls="num"),
             Cell(f"{n.get('diverging', 0):,} of {n.get('n', 0):,}", cls="num"),
             Cell(", ".join(f"{r.replace('_', ' ')} {c:,}" for r, c in
                            (n.get("reasons") or {}).items()))]
            for k, n in native.items()]  # fmt: skip
    head = ["KPI", "cskpi", "Vendor", "Tickets diverging", "Why"]
    return [Table("cskpi's figures beside the vendors' own", head, rows)]


# --- forecast and staffing (SPEC §8) ---------------------------------------------------

FORECAST_DAYS = 14  # `cskpi forecast --days 14`
STAFFING_WEEKS = 4  # `cskpi staffing --weeks 4`, as the digest's understaffed hours


def forecast(i: Inputs) -> list[Block]:
    """`cskpi forecast --days 14 --now <the report's instant> --format json`, drawn: the
    forecast starts at the local day of the report's instant, not at the window's end (a
    report of last month looks forward from today, where staffing decisions are made)."""
    w = i.window
    report = forecast_report(i.engine, w.tz, w.now, FORECAST_DAYS, i.connectors)
    doc = forecast_document(report)
    head = Note(f"Tickets expected in the {FORECAST_DAYS} days from {doc['start']} (the day of "
                f"the report's instant, {w.now.astimezone(w.tz):%Y-%m-%d %H:%M}), as cskpi "
                f"forecast --days {FORECAST_DAYS} --now {_instant(w)} --format json gives "
                "them.")  # fmt: skip
    if doc["forecast"] is None:
        return [head, Missing(f"no forecast: {doc['reason']}")]
    days = doc["forecast"]
    dates = [date.fromisoformat(d["date"]) for d in days]
    title = "Tickets expected per day, with the 80 % band"
    fig = chart.forecast_figure(dates, [d["created"] for d in days], [d["lo"] for d in days],
                                [d["hi"] for d in days], title)  # fmt: skip
    return [head, _forecast_basis(doc), Chart(chart.svg(fig, title, "forecast")),
            _forecast_table(days)]  # fmt: skip


def _instant(w: Window) -> str:
    """The report's instant as `--now` takes it."""
    return w.now.astimezone(w.tz).isoformat()


def _plan(plan: str, field: str, value: Any, **more: str) -> dict[str, str]:
    """The data attributes of a forecast or staffing figure, as its JSON document has it."""
    attrs = {"data-plan": plan, "data-field": field, "data-value": json.dumps(value)}
    return attrs | {f"data-{k}": v for k, v in more.items()}


def _forecast_basis(doc: dict[str, Any]) -> Table:
    mape = doc["mape"]
    rows = [
        [Cell("Backtest error (MAPE)", header=True),
         Cell("n/a (no week had two weeks of history before it)" if mape is None
              else f"{mape:.1f} %", _plan("forecast", "mape", mape), cls="num"),
         Cell("week-ahead forecasts of the last 4 weeks against what arrived")],
        [Cell("Momentum", header=True),
         Cell(f"x {doc['momentum']:.2f}", _plan("forecast", "momentum", doc["momentum"]),
              cls="num"),
         Cell(f"the last 4 weeks against the 4 before (x {doc['trend']:.2f} before clipping)")],
        [Cell("History", header=True),
         Cell(f"{doc['history_days']} days", _plan("forecast", "history_days",
              doc["history_days"]), cls="num"),
         Cell("read before the first day: the same hours of its last 8 weeks make the "
              "forecast, up to 4 more the backtest")],
    ]  # fmt: skip
    return Table("How far to trust it", ["Measure", "Value", "Meaning"], rows)


def _forecast_table(days: list[dict[str, Any]]) -> Table:
    rows = []
    for d in days:
        day = d["date"]
        rows.append([
            Cell(f"{date.fromisoformat(day):%a %d %b}", header=True),
            Cell(f"{d['created']:,.1f}", _plan("forecast", "created", d["created"], date=day),
                 cls="num"),
            Cell(f"{d['lo']:,} to {d['hi']:,}", _plan("forecast", "band", [d["lo"], d["hi"]],
                 date=day), cls="num"),
            Cell(f"{d['solved']:,.1f}", _plan("forecast", "solved", d["solved"], date=day),
                 cls="num"),
            Cell(f"{d['backlog']:,.0f}", _plan("forecast", "backlog", d["backlog"], date=day),
                 cls="num"),
        ])  # fmt: skip
    head = ["Day", "Expected", "80 % band", "Solved", "Backlog at day end"]
    return Table("Tickets expected per day", head, rows)


def staffing(i: Inputs) -> list[Block]:
    """`cskpi staffing --weeks 4 --now <the report's instant> --format json`, with
    ``[staffing]`` from the config (its defaults when the table is absent)."""
    w = i.window
    plan = staffing_plan(i.engine, w.tz, i.config.staffing, w.now, STAFFING_WEEKS, i.connectors)
    doc = staffing_document(plan)
    if doc["total"] is None:
        return [Missing(f"no staffing plan: {doc['reason']}")]
    target = doc["target"]
    head = Note(f"Agents needed against agents seen at work (distinct authors of public "
                f"replies), per hour of the week, from the {doc['weeks']} whole weeks "
                f"{doc['from']} to {doc['to']} before the report's instant: handling time "
                f"{doc['aht']['seconds'] / 60:.1f} min ({doc['aht']['source']}), target "
                f"{target['share']:.0%} answered in {target['seconds']:g} s, shrinkage "
                f"{doc['shrinkage']:.0%}, occupancy at most {doc['max_occupancy']:.0%} "
                f"([staffing] in the config). As cskpi staffing --weeks {STAFFING_WEEKS} "
                f"--now {_instant(w)} --format json gives it.")  # fmt: skip
    blocks: list[Block] = [head, Heading("The most understaffed hours")]
    blocks.append(_understaffed(doc) if doc["understaffed"] else
                  Note("No hour of the week had fewer agents at work than needed."))  # fmt: skip
    for name, what in (("live", "chat, messaging, phone"), ("async", "email, web, other")):
        blocks += [Heading(f"Gap per hour, {name} ({what})"), _gap_grid(doc, name, w)]
    return blocks


def _understaffed(doc: dict[str, Any]) -> Table:
    rows = []
    for u in doc["understaffed"]:
        d, h = u["weekday"], u["hour"]
        at = {"day": str(d), "hour": str(h)}
        rows.append(
            [Cell(u["label"], _plan("staffing", "understaffed", u, **at), header=True)]
            + [Cell(f"{doc[c][f][d][h]:,.{p}f}", _plan("staffing", f, doc[c][f][d][h],
                    cls=c, **at), cls="num")
               for c in ("live", "async") for f, p in (("required", 0), ("observed", 1))]
            + [Cell(f"{u['required']:,.0f}", cls="num"), Cell(f"{u['observed']:,.1f}", cls="num"),
               Cell(f"{u['gap']:,.1f} short", cls="num bad")]
        )  # fmt: skip
    head = ["Hour", "Live needed", "Live at work", "Async needed", "Async at work",
            "Needed", "At work", "Gap"]  # fmt: skip
    return Table("The five hours of the week with the most agents short, live and async apart; "
                 "an agent answering both counts once in the total", head, rows)  # fmt: skip


def _gap_grid(doc: dict[str, Any], name: str, w: Window) -> Table:
    """Agents short (+) or spare (-) per weekday and hour: the sign says it, the shade
    repeats it."""
    rows = []
    for d, gaps in enumerate(doc[name]["gap"]):
        cells = [Cell(_gap_text(g), _plan("staffing", "gap", g, cls=name, day=str(d),
                      hour=str(h)), cls=f"num gap {_gap_class(g)}")
                 for h, g in enumerate(gaps)]  # fmt: skip
        rows.append([Cell(_DAYS[d], header=True), *cells])
    caption = (f"Agents needed minus agents at work, {name}, by weekday and hour ({w.tz}): "
               "+2 means two agents short, -1.5 one and a half to spare, 0 even")  # fmt: skip
    return Table(caption, ["Day", *(f"{h:02d}" for h in range(24))], rows)


def _gap_text(gap: float) -> str:
    if gap == 0:
        return "0"
    return f"{gap:+.1f}".removesuffix(".0")


def _gap_class(gap: float) -> str:
    return "short-2" if gap >= 1 else "short-1" if gap > 0 else "even"


# --- alerts fired in the window ---------------------------------------------------------


@dataclass(frozen=True)
class Fired:
    alert: str
    key: str
    start: datetime
    end: datetime
    value: float | None
    usual: float | None
    targets: list[str]


def fired(engine: Engine, window: Window) -> list[Fired]:
    """The alarms sent (``alert_run`` rows with status ``sent``) whose bucket lies in the
    window, one per alert, key and bucket with every target it reached, oldest first. A
    dry run records no row; a failed post is not counted until a later run sends it."""
    sql = ("SELECT alert, key, bucket_from, bucket_to, value, usual, target FROM alert_run "
           "WHERE status = 'sent' AND bucket_from >= :s AND bucket_to <= :e "
           "ORDER BY bucket_from, alert, key, target")  # fmt: skip
    params = {"s": int(window.start.timestamp()), "e": int(window.end.timestamp())}
    found: dict[tuple[str, str, int], Fired] = {}
    with engine.connect() as conn:
        for a, k, s, e, v, u, t in conn.execute(text(sql), params):
            row = found.setdefault((a, k, int(s)), Fired(
                a, k, datetime.fromtimestamp(int(s), UTC).astimezone(window.tz),
                datetime.fromtimestamp(int(e), UTC).astimezone(window.tz), v, u, []))  # fmt: skip
            row.targets.append(t)
    return list(found.values())


def alerts(i: Inputs) -> list[Block]:
    if not i.config.alerts:
        return [Missing("no [alerts.NAME] table in the config (docs/planning.md: Alarm bells)")]
    found = fired(i.engine, i.window)
    if not found:
        return [Note("None fired: no alert was sent for an hour or day in the window.")]
    rows = [_fired_row(i, f) for f in found[-ALERTS_SHOWN:]]
    head = ["Alert", "KPI", "Key", "Bucket", "Value", "Usual", "Change", "Sent to"]
    caption = "Alarms sent for an hour or day in the window, oldest first"
    if len(found) > ALERTS_SHOWN:
        caption += f": the latest {ALERTS_SHOWN} of {len(found):,}"
    note = (f"{len(found) - ALERTS_SHOWN:,} earlier alarms are not shown; the alert_run table "
            "holds every one" if len(found) > ALERTS_SHOWN else "")  # fmt: skip
    return [Table(caption, head, rows, note)]


def _fired_row(i: Inputs, f: Fired) -> list[Cell]:
    settings = i.config.alerts.get(f.alert)
    kpi = settings.kpi if settings else None
    key = (
        "all tickets"
        if f.key == ""
        else alarm_text.label_of(i.engine, settings.by if settings else None, f.key)
    )
    at = {"data-alert": f.alert, "data-key": f.key, "data-bucket": f.start.isoformat()}
    return [
        Cell(f.alert, at, header=True),
        Cell(label(kpi) if kpi else "(no longer configured)"),
        Cell(key),
        Cell(alarm_text.span_label(f.start, f.end)),
        Cell(_alarm_figure(kpi, f.value), at | {"data-field": "value",
             "data-value": json.dumps(f.value)}, cls="num"),
        Cell(_alarm_figure(kpi, f.usual), at | {"data-field": "usual",
             "data-value": json.dumps(f.usual)}, cls="num"),
        Cell(alarm_text.change(kpi, f.value, f.usual) if kpi and f.value is not None
             and f.usual is not None else "", cls="num"),
        Cell(", ".join(f.targets)),
    ]  # fmt: skip


def _alarm_figure(kpi: str | None, value: float | None) -> str:
    if value is None:
        return "-"
    return alarm_text.figure(kpi, value) if kpi else f"{value:,.2f}"


# --- data freshness and definitions -----------------------------------------------------


def freshness(i: Inputs) -> list[Block]:
    states = [s for s in all_states(i.engine) if s.connector in i.doc["connectors"]]
    if not states:
        return [Missing("no connector has a sync record")]
    rows = []
    for name in sorted({s.connector for s in states}):
        mine = [s for s in states if s.connector == name]
        times = [s.last_success_at for s in mine]
        oldest = None if None in times else min(t for t in times if t is not None)
        errors = "; ".join(f"{s.stream}: {s.last_error}" for s in mine if s.last_error)
        rows.append([
            Cell(name, header=True),
            Cell(_when(oldest, i.window), {"data-connector": name, "data-field": "last_success",
                                           "data-value": json.dumps(_iso(oldest))}),
            Cell(f"{len(mine)}", cls="num"),
            Cell(f"{sum(s.rows for s in mine):,}", cls="num"),
            Cell(errors or "-"),
        ])  # fmt: skip
    head = ["Connector", "Every stream synced by", "Streams", "Rows", "Last error"]
    return [Table("Last successful sync per connector", head, rows)]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _when(moment: datetime | None, w: Window) -> str:
    if moment is None:
        return "never (a stream has not synced yet)"
    age = duration_text((w.now - moment).total_seconds())
    return f"{moment.astimezone(w.tz):%Y-%m-%d %H:%M} ({age} before the report's instant)"


def definitions(i: Inputs) -> list[Block]:
    rows = [[Cell(label(k), {"id": f"def-{k}"}, header=True), Cell(k), Cell(definition(k))]
            for k in i.kpis]  # fmt: skip
    return [
        Table(
            "What each KPI counts (docs/kpis.md has every rule)", ["KPI", "Key", "Definition"], rows
        )
    ]


# (id, title, provider) in SPEC §9's order
SECTIONS: tuple[tuple[str, str, Provider], ...] = (
    ("kpis", "Key figures", kpi_table),
    ("series", "Created, solved and backlog per day", daily_series),
    ("distributions", "First response, resolution and backlog age", distributions),
    ("stages", "Resolution stages", stages),
    ("heatmap", "When tickets arrive", heatmap),
    ("by", "Breakdown", by_table),
    ("sla", "SLA breaches and the oldest waiting tickets", sla),
    ("unhappy", "Unhappy customers", unhappy),
    ("accounts", "Accounts at risk", accounts),
    ("divergence", "Vendor figures", divergence),
    ("forecast", "Forecast", forecast),
    ("staffing", "Staffing gaps", staffing),
    ("alerts", "Alerts fired in the window", alerts),
    ("freshness", "Data freshness", freshness),
    ("definitions", "Definitions", definitions),
)


Started = list[tuple[str, str, "Future[list[Block]]"]]


def start(i: Inputs, pool: ThreadPoolExecutor, only: Sequence[str] = ()) -> Started:
    """Every section's provider, started in ``pool`` (a thread each): those that read the
    store alone (the SLA lists, the unhappy ratings, the forecast and staffing) read it
    while the engine computes the window, and those that need its figures wait for them."""
    return [(sid, title, pool.submit(provider, i)) for sid, title, provider in SECTIONS
            if not only or sid in only]  # fmt: skip


def sections(started: Started) -> list[Section]:
    """The sections ``start`` started, in SPEC §9's order, once each is drawn."""
    return [Section(sid, title, drawn.result()) for sid, title, drawn in started]
