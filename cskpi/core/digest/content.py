"""What a digest says, as data: KPI lines with their change, SLA call-outs, the oldest
unanswered tickets, the optional unhappy customers and accounts at risk, a leaderboard and
the 14-day series. Rendering is ``render.py``.

Every number comes from the KPI engine (``kpis.compute``) except the 14-day series and the
unanswered tickets, read here with the engine's own population rules (docs/kpis.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, text

from cskpi.core.config.file import Config, DigestSettings
from cskpi.core.config.periods import SINCE_LAST, Window, midnight, month_start, period_window
from cskpi.core.config.targets import Target
from cskpi.core.kpis.backlog import backlog_counts
from cskpi.core.kpis.drill import accounts_at_risk, unhappy
from cskpi.core.kpis.filters import Where, resolve
from cskpi.core.kpis.formulas import sla_judged
from cskpi.core.kpis.output import (
    clipped,
    detail_text,
    duration_column,
    duration_text,
    value_text,
)
from cskpi.core.kpis.populations import Frame
from cskpi.core.kpis.report import Entry, KpiContext, Report, compute
from cskpi.core.plan.anomaly import robust_z
from cskpi.core.store.dialect import connector_condition
from cskpi.core.store.reads.columns import read
from cskpi.core.store.reads.hourly import first_arrival
from cskpi.core.store.schema import from_epoch, to_epoch
from cskpi.core.workload.staffing import staffing_plan

Tone = Literal["good", "bad", "neutral"]
CHART_DAYS = 14
UNANSWERED_SHOWN = 5
BREACHED_SHOWN = 5
UNHAPPY_SHOWN = 5
AT_RISK_SHOWN = 10
COMMENT_SHOWN = 140

LABELS = {
    "tickets_created": "Tickets created", "tickets_solved": "Tickets solved",
    "backlog": "Backlog", "backlog_change": "Backlog change", "backlog_age": "Backlog age",
    "first_response_time": "First response (median)",
    "first_response_time_business": "First response, business (median)",
    "response_time": "Response time (median)", "resolution_time": "Resolution (median)",
    "resolution_time_business": "Resolution, business (median)",
    "fcr_rate": "First-contact resolution",
    "reopen_rate": "Reopen rate", "escalation_rate": "Escalation rate",
    "sla_first_response": "SLA first response met", "sla_resolution": "SLA resolution met",
    "csat": "CSAT", "nps": "NPS", "ces": "CES", "agent_replies_per_solved": "Replies per solved",
    "submissions_by_hour": "Busiest hour", "cost_per_ticket": "Cost per ticket",
    "cost_revenue_ratio": "Cost / revenue", "churn_rate": "Churn rate",
    "first_resolution_time": "First resolution (median)",
    "first_resolution_time_business": "First resolution, business (median)",
    "resolution_stages": "Resolution stages (median)", "time_in_status": "Time in status (median)",
    "reassignment_rate": "Reassignment rate", "touches": "Touches",
    "first_response_distribution": "First response spread",
    "resolution_distribution": "Resolution spread", "esat": "eSAT",
    "public_replies": "Public replies", "internal_notes": "Internal notes",
    "tickets_touched": "Tickets touched", "active_agents": "Active agents",
    "awaiting_reply": "Awaiting reply", "unique_customers": "Unique customers",
    "repeat_contact_rate": "Repeat contact rate", "backlog_time_to_clear": "Days to clear backlog",
}  # fmt: skip

# Which way is better; a KPI not listed (volume, CES whose scale direction varies) is neutral.
_HIGHER_IS_BETTER = {"tickets_solved", "fcr_rate", "sla_first_response", "sla_resolution",
                     "csat", "nps", "public_replies"}  # fmt: skip
_LOWER_IS_BETTER = {"backlog", "backlog_change", "first_response_time",
                    "first_response_time_business", "response_time", "resolution_time",
                    "resolution_time_business", "reopen_rate", "escalation_rate",
                    "agent_replies_per_solved", "cost_per_ticket", "cost_revenue_ratio",
                    "churn_rate", "first_resolution_time", "first_resolution_time_business",
                    "reassignment_rate", "repeat_contact_rate",
                    "backlog_time_to_clear"}  # fmt: skip
# Split into buckets or stages: no one change to show.
_NO_DELTA = {"backlog_age", "submissions_by_hour", "resolution_stages", "time_in_status",
             "touches", "first_response_distribution", "resolution_distribution",
             "awaiting_reply"}  # fmt: skip


@dataclass(frozen=True)
class Delta:
    arrow: str  # ▲ ▼ or = (unchanged)
    text: str  # "+12 (+8.1%)", "-18m (-15.0%)", "+2.3 pts"
    tone: Tone


@dataclass(frozen=True)
class KpiLine:
    key: str
    label: str
    value: str  # "1h 42m", "88.0%", "412"; "-" when null
    detail: str  # supporting numbers, or why the value is null
    delta: Delta | None
    null: bool = False
    target: str = ""  # "≥ 85%" from [targets], "" when none is set
    met: bool | None = None  # None: no target, or no value to judge

    unusual: bool = False  # robust z >= 3 against the same window of the last 8 weeks


def goal_text(line: KpiLine) -> str:
    """``target ≥ 85%: met``; "" without a target."""
    if not line.target:
        return ""
    verdict = "no value" if line.met is None else "met" if line.met else "missed"
    return f"target {line.target}: {verdict}"


@dataclass(frozen=True)
class Unanswered:
    ticket_id: str
    subject: str
    age: str
    priority: str | None
    overdue: bool  # past its first-response SLA target
    url: str | None = None  # the ticket in the helpdesk's agent UI, when it has one


@dataclass(frozen=True)
class Breached:
    """A ticket created in the window that missed a target, judged as the SLA KPIs judge."""

    ticket_id: str
    subject: str
    priority: str | None
    missed: str  # "first response", "resolution" or both
    url: str | None = None


@dataclass(frozen=True)
class Unhappy:
    """An unhappy rating of the window (SPEC §6 ``tickets --unhappy``), as a lead reads it."""

    rating: str  # "csat 2 (1-5)": the kind, the score and its scale
    comment: str  # on one line, clipped; "" when none
    agent: str  # "-" when none
    organization: str  # "-" when none
    mrr: str  # "1,200"; "-" when unknown
    ticket_id: str  # "-" when the rating has no ticket
    url: str | None = None


@dataclass(frozen=True)
class AtRisk:
    organization: str
    mrr: str
    reasons: str  # "low CSAT, ticket open over 7 days"


@dataclass(frozen=True)
class LeaderRow:
    label: str
    solved: str
    frt: str
    csat: str


@dataclass(frozen=True)
class Leaderboard:
    dimension: str
    rows: list[LeaderRow]  # every group, most solved first


@dataclass(frozen=True)
class Series:
    days: list[date]
    created: list[int]
    solved: list[int]
    backlog: list[int]  # at each day's end (or at the evaluation instant for today)


@dataclass(frozen=True)
class Breaches:
    first_response: int | None  # None: no [sla] (or nothing due) — see reason
    resolution: int | None
    reason: str = ""


@dataclass(frozen=True)
class Digest:
    name: str
    title: str
    window: Window
    compare: Window | None
    compare_label: str
    lines: list[KpiLine]
    breaches: Breaches
    unanswered: list[Unanswered]
    unanswered_total: int
    leaderboard: Leaderboard | None
    series: Series
    breached: list[Breached] = field(default_factory=list)  # the oldest BREACHED_SHOWN
    headline: str = ""  # "backlog 12, first response 1h 05m": for the email subject
    understaffed: list[str] = field(default_factory=list)  # with [staffing]: the worst hours
    unhappy: list[Unhappy] | None = None  # None: the digest does not ask for the section
    at_risk: list[AtRisk] | None = None  # the first AT_RISK_SHOWN, highest mrr first
    at_risk_total: int = 0


def build(engine: Engine, config: Config, name: str, at: datetime) -> Digest:
    """The digest ``name`` for the window its period gives at ``at``."""
    settings = config.digests[name]
    ctx = KpiContext.from_config(config)
    window = period_window(settings.period, config.timezone, at, settings.schedule)
    where = resolve(engine, dict(settings.where.items()), list(config.connectors),
                    f"{config.path.name}: [digests.{name}] where")  # fmt: skip
    report = compute(engine, window, ctx, by=settings.by, where=where)
    compare = compare_window(settings, config.timezone, at)
    before = compute(engine, compare, ctx, where=where).kpis if compare is not None else None
    # Waiting now, when the digest is read: at ``at``, not at the window's end.
    shown, total = unanswered(engine, config, at)
    odd = unusual(engine, config, name, at, report.kpis)
    lines = [
        kpi_line(k, report.kpis[k], before[k] if before else None, config.targets.get(k))
        for k in settings.kpis
    ]
    risky = accounts(engine, window, ctx, where) if settings.at_risk else None
    return Digest(
        unhappy=unhappy_rows(engine, config, window, where) if settings.unhappy else None,
        at_risk=risky[:AT_RISK_SHOWN] if risky is not None else None,
        at_risk_total=len(risky or []),
        understaffed=understaffed(engine, config, at),
        breached=breached(engine, config, window, ctx),
        headline=headline(report.kpis),
        name=name,
        title=f"{name} digest · {window_label(window)}",
        window=window,
        compare=compare,
        compare_label=f"vs {window_label(compare)}" if compare else "",
        lines=[replace(line, unusual=line.key in odd) for line in lines],
        breaches=_breaches(report.kpis),
        unanswered=shown,
        unanswered_total=total,
        leaderboard=_leaderboard(report),
        series=series(engine, window),
    )


# --- unhappy customers and accounts at risk (SPEC §6, docs/digest.md) ---------------------

_REASONS = {"low_csat": "low CSAT", "stale_ticket": "ticket open over 7 days",
            "ticket_surge": "ticket surge"}  # fmt: skip


def mrr_text(mrr: float | None) -> str:
    if mrr is None or not math.isfinite(mrr):
        return "-"
    return f"{mrr:,.0f}" if mrr == round(mrr) else f"{mrr:,.2f}"


def rating_text(kind: str, score: float, low: float, high: float) -> str:
    """``csat 2 (1-5)``: the score on its own scale, as the helpdesk asked it."""
    return f"{kind} {score:g} ({low:g}-{high:g})"


def unhappy_rows(engine: Engine, config: Config, window: Window, where: Where) -> list[Unhappy]:
    """The UNHAPPY_SHOWN unhappy ratings of the window with the highest mrr
    (``drill.unhappy``), restricted by the digest's ``where`` as its KPI lines are."""
    c = unhappy(engine, window, where=where, limit=UNHAPPY_SHOWN).columns
    return [
        Unhappy(
            rating=rating_text(c["kind"][i], c["score"][i], c["scale_min"][i], c["scale_max"][i]),
            comment=clipped(" ".join(str(c["comment"][i] or "").split()), COMMENT_SHOWN),
            agent=clipped(c["agent"][i] or "-"),
            organization=clipped(c["organization"][i] or "-"),
            mrr=mrr_text(c["mrr"][i]),
            ticket_id=clipped(c["ticket"][i] or "-"),
            url=ticket_url(config, c["connector"][i], c["ticket_external_id"][i])
            if c["ticket"][i] else None,
        )
        for i in range(len(c["kind"]))
    ]  # fmt: skip


def accounts(engine: Engine, window: Window, ctx: KpiContext, where: Where) -> list[AtRisk]:
    """Every organization at risk in the window, highest mrr first (``drill.accounts_at_risk``)."""
    return [
        AtRisk(clipped(g.label), mrr_text(g.account["mrr"] if g.account else None),
               ", ".join(_REASONS.get(r, r) for r in (g.account or {}).get("reasons", [])))
        for g in accounts_at_risk(engine, window, ctx, where=where)
    ]  # fmt: skip


# --- unusual lines and understaffed hours (SPEC §8, docs/planning.md) ---------------------

UNUSUAL_WEEKS = 8
UNUSUAL_Z = 3.0
UNUSUAL_MIN_WEEKS = 4  # earlier windows with data needed before a line can be unusual


def unusual(
    engine: Engine, config: Config, name: str, at: datetime, kpis: dict[str, Entry]
) -> set[str]:
    """The digest's KPIs whose value has a robust |z| >= 3 against the same window 1…8 weeks
    earlier (the same weekday, for a daily digest); windows before the oldest stored ticket
    are no baseline (they would read as zeros)."""
    settings = config.digests[name]
    oldest = first_arrival(engine)
    if oldest is None:
        return set()
    ctx = KpiContext.from_config(config)
    past: dict[str, list[float]] = {k: [] for k in settings.kpis}
    for weeks in range(1, UNUSUAL_WEEKS + 1):
        moment = at - timedelta(weeks=weeks)
        window = period_window(settings.period, config.timezone, moment, settings.schedule)
        if to_epoch(window.start) < oldest:  # type: ignore[operator]
            break
        earlier = compute(engine, window, ctx).kpis
        for key in settings.kpis:
            if isinstance(value := earlier[key]["value"], int | float):
                past[key].append(float(value))
    return {
        key for key in settings.kpis
        if isinstance(value := kpis[key]["value"], int | float)
        and len(past[key]) >= UNUSUAL_MIN_WEEKS
        and abs(robust_z(float(value), np.array(past[key])).z) >= UNUSUAL_Z
    }  # fmt: skip


def understaffed(engine: Engine, config: Config, at: datetime) -> list[str]:
    """With ``[staffing]``: the five most understaffed hours of the week over the last four
    whole weeks, as "Mon 10:00 (5 needed, 3.2 at work)"."""
    if config.staffing is None:
        return []
    plan = staffing_plan(engine, config.timezone, config.staffing, at, 4)
    return [f"{u.label} ({u.required:.0f} needed, {u.observed:.1f} at work)"
            for u in plan.understaffed()]  # fmt: skip


# --- windows ----------------------------------------------------------------------------


def compare_window(settings: DigestSettings, tz: ZoneInfo, at: datetime) -> Window | None:
    """The same period evaluated one period earlier (``previous``: yesterday vs the day
    before, this-month-to-date vs last month to the same day) or 7 days earlier."""
    if settings.compare == "none":
        return None
    period, schedule = settings.period, settings.schedule
    if settings.compare == "same-period-last-week":
        return period_window(period, tz, at - timedelta(days=7), schedule)
    if period == SINCE_LAST:  # the run before: up to this window's start
        return period_window(period, tz, period_window(period, tz, at, schedule).start, schedule)
    return period_window(period, tz, one_period_back(period, tz, at))


def one_period_back(period: str, tz: ZoneInfo, at: datetime) -> datetime:
    """``at`` moved back by one ``period`` (a month back for a month period)."""
    local = at.astimezone(tz)
    if period.endswith("month"):
        first = month_start(local.date(), 1)
        last_day = (month_start(local.date()) - timedelta(days=1)).day
        day = first.replace(day=min(local.day, last_day))
        moment = datetime.combine(day, local.time(), tz)
    else:
        days = {"today": 1, "yesterday": 1, "this-week": 7, "last-week": 7}.get(period)
        span = days if days is not None else int(period.removeprefix("last-")[:-1])
        moment = datetime.combine(local.date() - timedelta(days=span), local.time(), tz)
    return moment.astimezone(at.tzinfo)


def window_label(w: Window) -> str:
    first = w.start.astimezone(w.tz)
    last = (w.end - timedelta(microseconds=1)).astimezone(w.tz)
    if first.date() == last.date():
        return first.strftime("%a %d %b %Y").replace(" 0", " ")
    return f"{first:%d %b} to {last:%d %b %Y}".replace(" 0", " ").lstrip("0")


# --- KPI lines --------------------------------------------------------------------------


def kpi_line(key: str, entry: Entry, before: Entry | None, target: Target | None = None) -> KpiLine:
    null = entry["value"] is None
    return KpiLine(
        target=target.label if target else "",
        met=target.met(entry["value"]) if target else None,
        key=key,
        label=LABELS.get(key, key),
        value=value_text(key, entry),
        detail=str(entry.get("reason", "")) if null else detail_text(key, entry),
        delta=None if before is None else delta(key, entry, before),
        null=null,
    )


def tone(key: str, change: float) -> Tone:
    if change == 0 or (key not in _HIGHER_IS_BETTER and key not in _LOWER_IS_BETTER):
        return "neutral"
    return "good" if (change > 0) == (key in _HIGHER_IS_BETTER) else "bad"


def delta(key: str, now: Entry, before: Entry) -> Delta | None:
    """The change against the comparison window; None when either side is null."""
    a, b = now["value"], before["value"]
    if key in _NO_DELTA or a is None or b is None:
        return None
    change = float(a) - float(b)
    arrow = "=" if change == 0 else ("▲" if change > 0 else "▼")
    return Delta(arrow, _change_text(now["unit"], key, change, float(b)), tone(key, change))


def _change_text(unit: str, key: str, change: float, before: float) -> str:
    if unit == "%":
        return f"{change:+.1f} pts"
    if unit == "s":
        size = duration_text(abs(change))
        head = f"{'+' if change > 0 else '-' if change < 0 else '±'}{size}"
    elif unit == "count":
        head = f"{round(change):+,}"
    elif key == "nps":
        head = f"{change:+.1f}"
    else:
        head = f"{change:+,.2f}"
    if before == 0 or change == 0:
        return head if change else "±0"
    if not math.isfinite(relative := 100 * change / abs(before)):
        return head
    return f"{head} ({relative:+.1f}%)"


def _breaches(kpis: dict[str, Entry]) -> Breaches:
    counts: list[int | None] = []
    reasons = []
    for key in ("sla_first_response", "sla_resolution"):
        entry = kpis[key]
        if entry["value"] is None:
            counts.append(None)
            reasons.append(str(entry.get("reason", "")))
        else:
            counts.append(int(entry["denominator"]) - int(entry["numerator"]))
    reason = next((r for r in reasons if r), "")
    return Breaches(counts[0], counts[1], reason)


# A leaderboard row with none of these (no ticket solved, no first reply, no rating) says
# nothing: "(unassigned) 0 - -" is left out.
_BOARD = ("tickets_solved", "first_response_time", "csat")


def _leaderboard(report: Report) -> Leaderboard | None:
    if report.by is None:
        return None
    shown = [g for g in report.by.groups if any(g.kpis[k]["value"] for k in _BOARD)]
    groups = sorted(
        shown, key=lambda g: (-(g.kpis["tickets_solved"]["value"] or 0), g.label.casefold())
    )
    frt = duration_column([g.kpis["first_response_time"]["value"] for g in groups])
    rows = [
        LeaderRow(
            label=clipped(g.label),
            solved=value_text("tickets_solved", g.kpis["tickets_solved"]),
            frt=time,
            csat=value_text("csat", g.kpis["csat"]),
        )
        for g, time in zip(groups, frt, strict=True)
    ]
    return Leaderboard(report.by.dimension, rows)


def headline(kpis: dict[str, Entry]) -> str:
    """The two figures a lead looks at first, for the subject line and notification."""
    text = f"backlog {value_text('backlog', kpis['backlog'])}"
    frt = kpis["first_response_time"]
    if frt["value"] is not None:
        text += f", first response {value_text('first_response_time', frt)}"
    return text


# --- what the KPI engine does not give: unanswered tickets, the daily series ------------


def ticket_url(config: Config, connector: str, external_id: str) -> str | None:
    """The ticket's page in its helpdesk (``ConnectorSettings.ticket_url``); a link is an
    extra, so a plugin whose method fails gives none rather than stopping the digest."""
    settings = config.connectors.get(connector)
    try:
        return settings.ticket_url(external_id) if settings is not None else None
    except Exception:
        return None


def unanswered(
    engine: Engine, config: Config, at: datetime, limit: int = UNANSWERED_SHOWN,
    connectors: Sequence[str] = (),
) -> tuple[list[Unanswered], int]:  # fmt: skip
    """The ``limit`` oldest tickets with no first reply at ``at`` (and not solved by then),
    and how many there are; judged from the stored timestamps, so a past ``at`` is
    reproducible. ``connectors``: only theirs (default every connector)."""
    only, params = connector_condition(connectors)
    where = (
        "FROM ticket WHERE NOT deleted AND created_at < :at "
        "AND (first_reply_at IS NULL OR first_reply_at >= :at) "
        "AND (COALESCE(first_solved_at, solved_at) IS NULL OR "
        f"COALESCE(first_solved_at, solved_at) >= :at){only}"
    )
    params |= {"at": to_epoch(at), "n": max(limit, 1)}
    # one scan gives both: the count over every row, before the LIMIT
    sql = ("SELECT id, subject, created_at, priority, connector, external_id, "
           f"COUNT(*) OVER () {where} ORDER BY created_at, id LIMIT :n")  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    total = int(rows[0][-1]) if rows else 0
    return [_unanswered_row(config, at, *row[:-1]) for row in rows[:limit]], total


def _unanswered_row(
    config: Config, at: datetime, ticket_id: str, subject: str | None, created: int, prio: Any,
    connector: str, external_id: str,
) -> Unanswered:  # fmt: skip
    started = from_epoch(created)
    assert started is not None
    return Unanswered(
        ticket_id=clipped(ticket_id),
        subject=clipped(subject or "(no subject)"),
        age=duration_text((at - started).total_seconds()),
        priority=prio,
        overdue=_overdue(config, prio, started, at),
        url=ticket_url(config, connector, external_id),
    )


def breached(
    engine: Engine, config: Config, window: Window, ctx: KpiContext, limit: int = BREACHED_SHOWN,
    connectors: Sequence[str] = (),
) -> list[Breached]:  # fmt: skip
    """The ``limit`` oldest tickets created in the window that breached a first-response or
    resolution target: the tickets the SLA KPIs count as breaches (``formulas.sla_judged``)."""
    if ctx.sla is None:
        return []
    only, params = connector_condition(connectors)
    sql = ("SELECT id, created_at, first_reply_at, priority, status, solved_at FROM ticket "  # noqa: S608
           "WHERE NOT deleted AND created_at >= :s AND created_at < :e "
           f"AND priority IS NOT NULL{only} ORDER BY created_at, id")  # fmt: skip
    params |= {"s": to_epoch(window.start), "e": to_epoch(window.end)}
    # as columns, the KPI engine's reader: a month holds tens of thousands of tickets
    (ids, created, replied, priority, status, solved) = read(engine, [sql], params)[0]
    frame = Frame({"created_at": created.astype(np.float64),
                   "first_reply_at": replied.astype(np.float64),
                   "solved_at": solved.astype(np.float64), "priority": priority,
                   "status": status}, None)  # fmt: skip
    kinds = ("first_response", "resolution")
    missed = [sla_judged(frame, window, ctx, kind)[1] for kind in kinds]
    shown = np.flatnonzero(missed[0] | missed[1])[:limit]
    what = {str(ids[i]): ", ".join(k.replace("_", " ") for k, m in zip(kinds, missed,
            strict=True) if m[i]) for i in shown}  # fmt: skip
    return _breached_rows(engine, config, what)


def _breached_rows(engine: Engine, config: Config, missed: dict[str, str]) -> list[Breached]:
    if not missed:
        return []
    marks = ", ".join(f":k{n}" for n in range(len(missed)))
    sql = ("SELECT id, subject, priority, connector, external_id FROM ticket "  # noqa: S608
           f"WHERE id IN ({marks}) ORDER BY created_at, id")  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {f"k{n}": k for n, k in enumerate(missed)}).all()
    return [
        Breached(clipped(i), clipped(subject or "(no subject)"), prio, missed[i],
                 ticket_url(config, connector, external_id))
        for i, subject, prio, connector, external_id in rows
    ]  # fmt: skip


def _overdue(config: Config, priority: str | None, created: datetime, at: datetime) -> bool:
    target = config.sla.first_response.target(priority) if config.sla else None
    if target is None or config.sla is None:
        return False
    if config.sla.business_hours and config.business_hours is not None:
        calendar = KpiContext.from_config(config).business
        assert calendar is not None
        return calendar.seconds(created, at) > target.total_seconds()
    return at - created > target


def series(engine: Engine, window: Window, wall: datetime | None = None) -> Series:
    """Created, solved and end-of-day backlog for the 14 local days ending with the
    window's last day, with the KPI engine's rules for each (docs/kpis.md)."""
    last = (window.end - timedelta(microseconds=1)).astimezone(window.tz).date()
    days = [last - timedelta(days=i) for i in range(CHART_DAYS - 1, -1, -1)]
    bounds = [midnight(d, window.tz) for d in days] + [
        midnight(last + timedelta(days=1), window.tz)
    ]
    bounds[-1] = min(bounds[-1], window.end)
    edges = np.array([to_epoch(b) for b in bounds], dtype=np.float64)
    with engine.connect() as conn:
        created = _column(conn, "SELECT created_at FROM ticket WHERE NOT deleted "
                          "AND created_at >= :s AND created_at < :e", edges)  # fmt: skip
        solved = _column(conn, "SELECT solved_at FROM ticket WHERE NOT deleted AND "
                         "status IN ('solved', 'closed') AND solved_at >= :s AND solved_at < :e",
                         edges)  # fmt: skip
    # Each day's end as the backlog KPI takes a window's: at now, if that comes first.
    backlog = backlog_counts(engine, [min(b, window.now) for b in bounds[1:]], wall=wall)
    return Series(days, _per_day(created, edges), _per_day(solved, edges), backlog)


def _column(conn: Any, sql: str, edges: Any) -> Any:
    rows = conn.execute(text(sql), {"s": int(edges[0]), "e": int(edges[-1])}).all()
    return np.array([r[0] for r in rows], dtype=np.float64)


def _per_day(stamps: Any, edges: Any) -> list[int]:
    counts, _ = np.histogram(stamps, bins=edges)
    return [int(c) for c in counts]
