"""The KPI formulas of SPEC §4: one set of populations in, every KPI entry out, in SPEC order.

``report.py`` reads the store, splits it by group and shapes the report; what is here is pure
array code over the populations ``populations.py`` loaded (no SQL, no engine), kept apart from
that I/O so each family of formulas (counts, durations and their business-hours twins,
rates, SLA, surveys, money and churn) reads as one piece. ``kpi_set`` is what ``report.py``
calls, once for the whole window and once per group. ``KpiContext`` and ``Entry`` are
defined here because the formulas take and return them; callers import both from
``cskpi.core.kpis.report``. Every choice SPEC leaves open is written down in docs/kpis.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from cskpi.core.config.file import KPI_KEYS, Config, Costs, PriorityTargets, Sla
from cskpi.core.config.periods import Window, midnight, month_start
from cskpi.core.kpis import native
from cskpi.core.kpis.business_hours import BusinessCalendar
from cskpi.core.kpis.populations import F64, Frame, Populations
from cskpi.core.store.schema import to_epoch

Entry = dict[str, Any]


@dataclass(frozen=True)
class KpiContext:
    """What the KPIs need from the config besides the data."""

    timezone: ZoneInfo
    business: BusinessCalendar | None = None
    sla: Sla | None = None
    escalation_tags: tuple[str, ...] = ("escalated",)
    costs: Costs | None = None
    repeat_window: timedelta = timedelta(days=7)  # [kpis] repeat_window

    @classmethod
    def from_config(cls, config: Config) -> KpiContext:
        bh = config.business_hours
        return cls(
            timezone=config.timezone,
            business=BusinessCalendar.from_config(bh) if bh else None,
            sla=config.sla,
            escalation_tags=config.kpis.escalation_tags,
            costs=config.costs,
            repeat_window=config.kpis.repeat_window,
        )


# --- the KPI set ------------------------------------------------------------------------


def kpi_set(
    p: Populations, w: Window, ctx: KpiContext, split: str | None = None
) -> dict[str, Entry]:
    """Every KPI, in SPEC order, from one set of populations."""
    from cskpi.core.kpis import views  # §6's formulas, built on the helpers of this module

    solved = len(p.solved)
    created = len(p.created)
    entries: dict[str, Entry] = {
        "tickets_created": _count(created),
        "tickets_solved": _count(solved),
        "backlog": _count(len(p.backlog)),
        "backlog_change": _count(created - solved),
        "backlog_age": _backlog_age(p.backlog, w),
        **_first_response(p.created, ctx),
        "response_time": _response_time(p),
        **_resolution(p.solved, ctx),
        **_solved_rates(p.solved),
        "sla_first_response": _sla(p.created, w, ctx, "first_response"),
        "sla_resolution": _sla(p.created, w, ctx, "resolution"),
        **_surveys(native.answered(p.ratings, w)),
        "agent_replies_per_solved": _replies_per_solved(p.solved),
        "submissions_by_hour": _by_hour(p.created["hour_of_week"]),
        **_money(p, w, ctx, split),
        **views.ticket_views(p, w, ctx),
        "awaiting_reply": views.awaiting_reply(p.backlog, p.threads, w.at),
        "unique_customers": views.unique_customers(p.created),
        "repeat_contact_rate": views.repeat_contact_rate(p.solved),
        "backlog_time_to_clear": views.time_to_clear(
            len(p.backlog), p.days_created, p.days_solved, w.end, ctx.timezone
        ),
        **native.vendor_kpis(p, w),
    }
    assert tuple(entries) == KPI_KEYS, "kpi_set must follow SPEC order"
    return {key: finite(entry) for key, entry in entries.items()}


NOT_FINITE = "too large to compute: an input (an MRR or cost near 1e308?) overflows"


def finite(entry: Entry) -> Entry:
    """``entry``, or null with a reason when a figure in it overflowed to infinity or NaN
    (a 1e308 MRR or cost): JSON has no Infinity, and half an entry would mislead."""
    numbers = [v for v in entry.values() if isinstance(v, float)]
    if all(math.isfinite(v) for v in numbers):
        return entry
    return _null(NOT_FINITE, entry["unit"])


def _count(n: int) -> Entry:
    return {"value": int(n), "unit": "count"}


def _null(reason: str, unit: str) -> Entry:
    return {"value": None, "reason": reason, "unit": unit}


def percentile(ordered: F64, q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on a sorted array."""
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    if lo + 1 >= len(ordered):
        return float(ordered[lo])
    return float(ordered[lo] + (h - lo) * (ordered[lo + 1] - ordered[lo]))


def durations(seconds: F64, empty: str) -> Entry:
    if len(seconds) == 0:
        return _null(empty, "s")
    ordered = np.sort(seconds.astype(np.float64))
    median = percentile(ordered, 0.5)
    mean = float(ordered.sum()) / len(ordered)
    return {"value": median, "median": median, "p90": percentile(ordered, 0.9),
            "mean": mean, "n": len(ordered), "unit": "s"}  # fmt: skip


def rate(numerator: int, denominator: int, empty: str) -> Entry:
    if denominator == 0:
        return _null(empty, "%")
    return {"value": 100 * numerator / denominator, "numerator": int(numerator),
            "denominator": int(denominator), "unit": "%"}  # fmt: skip


_AGE_BUCKETS = (("<1d", 1), ("1-3d", 3), ("3-7d", 7))


def _backlog_age(backlog: Frame, w: Window) -> Entry:
    age = float(to_epoch(w.at) or 0) - backlog["created_at"]
    counts, below = {}, 0
    for label, days in _AGE_BUCKETS:
        under = int(np.count_nonzero(age < days * 86400))
        counts[label], below = under - below, under
    counts[">7d"] = len(age) - below
    return {"value": counts, "unit": "count"}


def business_seconds(calendar: BusinessCalendar, start: F64, end: F64) -> F64:
    """Signed like calendar durations: an end stamped before its start counts negative."""
    lo, hi = np.minimum(start, end).astype(np.int64), np.maximum(start, end).astype(np.int64)
    seconds = calendar.seconds_many(lo, hi).astype(np.float64)
    return np.where(end < start, -seconds, seconds)


def _calendar_and_business(
    name: str, selection: Selection, ctx: KpiContext, empty: str
) -> dict[str, Entry]:
    """A duration KPI in calendar time and its ``_business`` twin over the same rows."""
    rows, seconds = selection.rows, selection.seconds
    assert seconds is not None
    business = (
        durations(_seconds(in_business_time(selection, ctx))[rows], empty)
        if ctx.business is not None
        else _null("no [business_hours] in the config", "s")
    )
    return {name: durations(seconds[rows], empty), f"{name}_business": business}


def _seconds(selection: Selection) -> F64:
    assert selection.seconds is not None
    return selection.seconds


def _first_response(created: Frame, ctx: KpiContext) -> dict[str, Entry]:
    empty = "no ticket created in the window has a first reply"
    return _calendar_and_business("first_response_time", first_response_selection(created), ctx,
                                  empty)  # fmt: skip


def _response_time(p: Populations) -> Entry:
    if not p.has_messages:
        return _null("no message events for the tickets created in the window", "s")
    return durations(p.replies["seconds"], "no customer message in the window was answered")


def _resolution(solved: Frame, ctx: KpiContext) -> dict[str, Entry]:
    empty = "no ticket solved in the window"
    return _calendar_and_business("resolution_time", resolution_selection(solved), ctx, empty)


def _solved_rates(solved: Frame) -> dict[str, Entry]:
    empty = "no ticket solved in the window"
    return {
        "fcr_rate": rate_of(
            fcr_selection(solved), "no ticket solved in the window had an agent reply"
        ),
        "reopen_rate": rate_of(reopen_selection(solved), empty),
        "escalation_rate": rate_of(escalation_selection(solved), empty),
    }


def _sla(created: Frame, w: Window, ctx: KpiContext, kind: str) -> Entry:
    if ctx.sla is None:
        return _null("no [sla] in the config", "%")
    empty = "no ticket created in the window has a due " + kind.replace("_", " ")
    return rate_of(sla_selection(created, w, ctx, kind), empty)


# --- selections: the rows behind a ticket KPI -------------------------------------------
# Each ticket KPI of a rate or a duration is computed from its selection, and `cskpi
# tickets` (drill.py) lists the same selection: its rows are the KPI's denominator (or n),
# its ``in_numerator`` rows the numerator, its ``seconds`` the durations. One code path.


@dataclass(frozen=True)
class Selection:
    """Over a population's rows: which ones the KPI counts, and per row (full length) whether
    it is in the numerator, or its duration in seconds (NaN outside ``rows``)."""

    rows: NDArray[np.bool_]
    in_numerator: NDArray[np.bool_] | None = None
    seconds: F64 | None = None
    start: F64 | None = None  # a duration's ends, for its business-hours twin
    end: F64 | None = None


def rate_of(selection: Selection, empty: str) -> Entry:
    assert selection.in_numerator is not None
    rows = selection.rows
    return rate(int(np.count_nonzero(selection.in_numerator & rows)),
                int(np.count_nonzero(rows)), empty)  # fmt: skip


def _span(rows: NDArray[np.bool_], start: F64, end: F64) -> Selection:
    return Selection(rows, seconds=np.where(rows, end - start, np.nan), start=start, end=end)


def in_business_time(selection: Selection, ctx: KpiContext) -> Selection:
    """The same rows, their durations in business time (``ctx.business`` must be set)."""
    assert ctx.business is not None
    assert selection.start is not None
    assert selection.end is not None
    rows = selection.rows
    seconds = np.full(len(rows), np.nan)
    seconds[rows] = business_seconds(ctx.business, selection.start[rows], selection.end[rows])
    return Selection(rows, seconds=seconds, start=selection.start, end=selection.end)


def everyone(frame: Frame) -> Selection:
    """Every row: a count KPI (tickets_created, tickets_solved, backlog)."""
    return Selection(np.ones(len(frame), dtype=bool))


def first_response_selection(created: Frame) -> Selection:
    replied = ~np.isnan(created["first_reply_at"])
    return _span(replied, created["created_at"], created["first_reply_at"])


def resolution_selection(solved: Frame) -> Selection:
    return _span(np.ones(len(solved), dtype=bool), solved["created_at"], solved["solved_at"])


def fcr_selection(solved: Frame) -> Selection:
    replies, reopens = solved["agent_replies"], solved["reopens"]
    touched = replies >= 1
    return Selection(touched, touched & (replies == 1) & (reopens == 0))


def reopen_selection(solved: Frame) -> Selection:
    return Selection(np.ones(len(solved), dtype=bool), solved["reopens"] >= 1)


def escalation_selection(solved: Frame) -> Selection:
    return Selection(np.ones(len(solved), dtype=bool), solved["escalated"] > 0)


def sla_selection(created: Frame, w: Window, ctx: KpiContext, kind: str) -> Selection:
    met, breached = sla_judged(created, w, ctx, kind)
    return Selection(met | breached, met)


def sla_judged(
    created: Frame, w: Window, ctx: KpiContext, kind: str
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which tickets met and which breached their ``kind`` target (``first_response`` or
    ``resolution``); neither when they have none or are still within it. Each ticket is judged
    by what is known at ``now`` (SPEC §4): a reply or solve stamped after ``now`` had not
    happened yet, so the ticket is judged as still waiting at ``now``. The digest lists the
    breached ones with this same judgement."""
    assert ctx.sla is not None
    targets: PriorityTargets = getattr(ctx.sla, kind)
    seconds = {p: t.total_seconds() for p in ("urgent", "high", "normal", "low")
               if (t := targets.target(p)) is not None}  # fmt: skip
    target = _lookup(created["priority"], seconds)
    if kind == "first_response":
        done = created["first_reply_at"]
    else:
        solved = np.isin(created["status"], ("solved", "closed"))
        done = np.where(solved, created["solved_at"], np.nan)
    now = float(to_epoch(w.now) or 0)
    done = np.where(done <= now, done, np.nan)  # NaN stays NaN: not done by now
    at = np.where(np.isnan(done), now, done)
    elapsed = _elapsed(ctx, created["created_at"], at)
    counted = ~np.isnan(target)
    met = counted & ~np.isnan(done) & (elapsed <= target)
    return met, counted & (elapsed > target)


def _lookup(values: NDArray[np.object_], table: dict[str, float]) -> F64:
    """``table[value]`` per row, NaN where absent: one comparison pass per key (a handful),
    far cheaper than sorting the strings to find the distinct ones."""
    looked_up = np.full(len(values), np.nan)
    for key, value in table.items():
        looked_up[values == key] = value
    return looked_up


def _elapsed(ctx: KpiContext, start: F64, end: F64) -> F64:
    if ctx.sla is not None and ctx.sla.business_hours and ctx.business is not None:
        return business_seconds(ctx.business, start, end)
    return end - start


def _positive(score: F64, low: F64, high: F64) -> NDArray[np.bool_]:
    """Top two boxes on scales of 4 points or more, the top box on 2- and 3-point scales."""
    points = np.round(high - low) + 1
    top: F64 = np.where(points >= 4, high - 1, high)
    return score >= top


def top_two(score: F64, low: F64, high: F64) -> NDArray[np.bool_]:
    """The ratings csat and ces count as positive (the drill-down lists them as such)."""
    return _positive(score, low, high)


def _surveys(ratings: Frame) -> dict[str, Entry]:
    kind, score = ratings["kind"], ratings["score"]
    low, high = ratings["scale_min"], ratings["scale_max"]
    csat, nps, ces = (kind == "csat"), (kind == "nps"), (kind == "ces")
    return {
        "csat": csat_entry(score[csat], low[csat], high[csat]),
        "nps": _nps(score[nps]),
        "ces": _ces(score[ces], low[ces], high[ces]),
    }


def csat_entry(score: F64, low: F64, high: F64) -> Entry:
    if len(score) == 0:
        return _null("no csat rating in the window", "%")
    positive = int(np.count_nonzero(_positive(score, low, high)))
    mean = float(((score - low) / (high - low)).sum()) / len(score)
    return {"value": 100 * positive / len(score), "numerator": positive, "n": len(score),
            "mean": mean, "unit": "%"}  # fmt: skip


def _nps(score: F64) -> Entry:
    if len(score) == 0:
        return _null("no nps rating in the window", "score")
    promoters = int(np.count_nonzero(score >= 9))
    detractors = int(np.count_nonzero(score <= 6))
    n = len(score)
    return {"value": 100 * (promoters - detractors) / n, "n": n, "promoters": promoters,
            "passives": n - promoters - detractors, "detractors": detractors,
            "unit": "score"}  # fmt: skip


def _ces(score: F64, low: F64, high: F64) -> Entry:
    if len(score) == 0:
        return _null("no ces rating in the window", "score")
    top = int(np.count_nonzero(_positive(score, low, high)))
    return {"value": float(score.sum()) / len(score), "n": len(score),
            "top2": 100 * top / len(score), "unit": "score"}  # fmt: skip


def _replies_per_solved(solved: Frame) -> Entry:
    if len(solved) == 0:
        return _null("no ticket solved in the window", "ratio")
    total = int(solved["agent_replies"].sum())
    return {"value": total / len(solved), "numerator": total, "denominator": len(solved),
            "unit": "ratio"}  # fmt: skip


def _by_hour(hour_of_week: NDArray[np.int64]) -> Entry:
    """Tickets created by local weekday (0 = Monday) x hour."""
    counts = np.bincount(hour_of_week.astype(np.int64), minlength=168).reshape(7, 24)
    return {"value": counts.tolist(), "unit": "count"}


# --- money and accounts -----------------------------------------------------------------


def prorated(monthly: float, w: Window, tz: ZoneInfo) -> float:
    """``monthly`` spread over each calendar month in ``tz`` the window touches, by seconds."""
    total = 0.0
    month = month_start(w.start.astimezone(tz).date())
    while (begin := midnight(month, tz)) < w.end:
        following = month_start(month, -1)
        end = midnight(following, tz)
        overlap = (min(end, w.end) - max(begin, w.start)).total_seconds()
        total += monthly * max(overlap, 0.0) / (end - begin).total_seconds()
        month = following
    return total


def _money(p: Populations, w: Window, ctx: KpiContext, split: str | None) -> dict[str, Entry]:
    currency = ctx.costs.currency if ctx.costs else "USD"
    if split is not None:
        reason = f"not split by {split}"
        return {
            "cost_per_ticket": _null(reason, currency),
            "cost_revenue_ratio": _null(reason, "%"),
            "churn_rate": _null(reason, "%"),
        }
    orgs = p.organizations
    start = float(to_epoch(w.start) or 0)
    active = (np.isnan(orgs["created_at"]) | (orgs["created_at"] < start)) & (
        np.isnan(orgs["churned_at"]) | (orgs["churned_at"] >= start)
    )
    churned = active & (orgs["churned_at"] < float(to_epoch(w.end) or 0))
    with np.errstate(over="ignore"):  # an overflow makes the entries null: see ``finite``
        mrr = float(orgs["mrr"][active].sum())
    return {
        **_costs(len(p.solved), mrr, w, ctx),
        "churn_rate": rate(int(np.count_nonzero(churned)), int(np.count_nonzero(active)),
                           "no organization with mrr was active at the window's start"),
    }  # fmt: skip


def _costs(solved: int, mrr: float, w: Window, ctx: KpiContext) -> dict[str, Entry]:
    costs = ctx.costs
    if costs is None:
        reason = "no [costs] in the config"
        return {"cost_per_ticket": _null(reason, "USD"), "cost_revenue_ratio": _null(reason, "%")}
    cost = prorated(costs.monthly_support_cost, w, ctx.timezone)
    revenue = prorated(costs.monthly_revenue if costs.monthly_revenue else mrr, w, ctx.timezone)
    per_ticket = (
        {"value": cost / solved, "cost": cost, "tickets_solved": solved, "unit": costs.currency}
        if solved
        else _null("no ticket solved in the window", costs.currency)
    )
    ratio = (
        {"value": 100 * cost / revenue, "cost": cost, "revenue": revenue, "unit": "%"}
        if revenue > 0
        else _null("no revenue: set monthly_revenue or import accounts with mrr", "%")
    )
    return {"cost_per_ticket": per_ticket, "cost_revenue_ratio": ratio}
