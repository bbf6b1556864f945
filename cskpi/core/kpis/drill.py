"""The rows behind a KPI (SPEC §6 Drill-down): `cskpi tickets`, and the unhappy customers.

``DRILLS`` maps each ticket KPI to its population and to the selection function its formula
is computed from (``formulas.py``), so the listed rows are the KPI's denominator (or n), the
``in_numerator`` rows its numerator and ``seconds`` its durations, by one code path. A new
ticket KPI is listed by adding one entry. The survey KPIs list their ratings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine

from cskpi.core.config.periods import Window
from cskpi.core.kpis import native
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.formulas import (
    KpiContext,
    Selection,
    escalation_selection,
    everyone,
    fcr_selection,
    first_response_selection,
    in_business_time,
    reopen_selection,
    resolution_selection,
    sla_selection,
    top_two,
)
from cskpi.core.kpis.populations import F64, Column, Frame, Obj, load, ratings_of, rows_of
from cskpi.core.kpis.report import Group, compute
from cskpi.core.kpis.views import first_resolution_selection, reassignment_selection

Select = Callable[[Frame, Window, KpiContext], Selection]


class DrillError(ValueError):
    """A KPI with no rows to list, or whose config is missing."""


@dataclass(frozen=True)
class Drill:
    population: str  # created, solved or backlog (populations.TICKET_COLUMNS)
    select: Select
    needs: str = ""  # "sla" or "business": the config table the KPI needs


def _plain(select: Callable[[Frame], Selection]) -> Select:
    """A selection that needs only the population's rows."""
    return lambda frame, w, ctx: select(frame)


def _business(select: Callable[[Frame], Selection]) -> Select:
    """The same rows, their durations in business time."""
    return lambda frame, w, ctx: in_business_time(select(frame), ctx)


def _sla(kind: str) -> Select:
    """The tickets judged against the ``[sla]`` target ``kind``, those met in the numerator."""
    return lambda frame, w, ctx: sla_selection(frame, w, ctx, kind)


_ALL = _plain(everyone)
DRILLS: dict[str, Drill] = {
    "tickets_created": Drill("created", _ALL),
    "tickets_solved": Drill("solved", _ALL),
    "backlog": Drill("backlog", _ALL),
    "backlog_age": Drill("backlog", _ALL),
    "first_response_time": Drill("created", _plain(first_response_selection)),
    "first_response_time_business": Drill(
        "created", _business(first_response_selection), "business"
    ),
    "resolution_time": Drill("solved", _plain(resolution_selection)),
    "resolution_time_business": Drill("solved", _business(resolution_selection), "business"),
    "fcr_rate": Drill("solved", _plain(fcr_selection)),
    "reopen_rate": Drill("solved", _plain(reopen_selection)),
    "escalation_rate": Drill("solved", _plain(escalation_selection)),
    "sla_first_response": Drill("created", _sla("first_response"), "sla"),
    "sla_resolution": Drill("created", _sla("resolution"), "sla"),
    "agent_replies_per_solved": Drill("solved", _ALL),
    "submissions_by_hour": Drill("created", _ALL),
    # SPEC §6 (the activity KPIs count messages, the repeat and status-time ones need the
    # history and requesters read at load: they have no listing)
    "first_resolution_time": Drill("solved", _plain(first_resolution_selection)),
    "first_resolution_time_business": Drill(
        "solved", _business(first_resolution_selection), "business"
    ),
    "reassignment_rate": Drill("solved", _plain(reassignment_selection)),
    "touches": Drill("solved", _ALL),
    "first_response_distribution": Drill("created", _ALL),
    "resolution_distribution": Drill("solved", _ALL),
    "awaiting_reply": Drill("backlog", _ALL),
}
RATING_KPIS = ("csat", "nps", "ces")


@dataclass(frozen=True)
class Listing:
    """Rows as columns (numpy arrays, times as epoch seconds, NaN or None for none), in
    ``fields`` order; ``times`` names the columns that are instants."""

    kind: str  # "tickets" or "ratings"
    kpi: str | None
    columns: dict[str, NDArray[Any]]
    times: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _c(name: str, sql: str, text: bool = True) -> Column:
    return Column(name, sql, text)


# Names come from the joined tables, falling back to the stored id.
_JOINS = (
    " LEFT JOIN person pa ON pa.id = t.assignee_id LEFT JOIN grp g ON g.id = t.group_id"
    " LEFT JOIN organization o ON o.id = t.organization_id"
)
TICKET_FIELDS = (
    _c("id", "t.id"), _c("connector", "t.connector"), _c("external_id", "t.external_id"),
    _c("subject", "t.subject"), _c("status", "t.status"), _c("priority", "t.priority"),
    _c("channel", "t.channel"), _c("type", "t.type"), _c("tags", "CAST(t.tags AS TEXT)"),
    _c("assignee", "COALESCE(pa.name, t.assignee_id)"), _c("group", "COALESCE(g.name, t.group_id)"),
    _c("organization", "COALESCE(o.name, t.organization_id)"), _c("mrr", "o.mrr", False),
    _c("created_at", "t.created_at", False), _c("first_reply_at", "t.first_reply_at", False),
    _c("solved_at", "t.solved_at", False), _c("agent_replies", "t.agent_replies", False),
    _c("reopens", "t.reopens", False),
)  # fmt: skip
_TICKET_TIMES = ("created_at", "first_reply_at", "solved_at")


def tickets(
    engine: Engine,
    window: Window,
    ctx: KpiContext,
    kpi: str | None = None,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
    wall: datetime | None = None,
) -> Listing:
    """The tickets behind ``kpi`` (default: the tickets created in W), or its ratings."""
    if kpi in RATING_KPIS:
        return ratings(engine, window, kpi, connectors=connectors, where=where)
    drill = _drill(kpi or "tickets_created", ctx)
    frame = rows_of(engine, window, drill.population, TICKET_FIELDS, _JOINS,
                    connectors=connectors, where=where, escalation_tags=ctx.escalation_tags,
                    wall=wall)  # fmt: skip
    chosen = drill.select(frame, window, ctx)
    columns = {c.name: frame[c.name][chosen.rows] for c in TICKET_FIELDS}
    columns["tags"] = tag_lists(columns["tags"])
    if chosen.in_numerator is not None:
        columns["in_numerator"] = chosen.in_numerator[chosen.rows]
    if chosen.seconds is not None:
        columns["seconds"] = chosen.seconds[chosen.rows]
    return Listing("tickets", kpi, columns, _TICKET_TIMES)


def _drill(kpi: str, ctx: KpiContext) -> Drill:
    drill = DRILLS.get(kpi)
    if drill is None:
        known = ", ".join((*DRILLS, *RATING_KPIS))
        raise DrillError(f"--kpi {kpi}: no tickets to list; use one of {known}")
    if drill.needs == "sla" and ctx.sla is None:
        raise DrillError(f"--kpi {kpi}: no [sla] in the config")
    if drill.needs == "business" and ctx.business is None:
        raise DrillError(f"--kpi {kpi}: no [business_hours] in the config")
    return drill


def tag_lists(texts: Obj) -> Obj:
    """The stored JSON tag lists as lists, each distinct list parsed once."""
    parsed: dict[str, list[Any]] = {}
    out = np.empty(len(texts), dtype=object)
    out[:] = [[] if t is None else parsed.get(t) or parsed.setdefault(t, json.loads(t))
              for t in texts]  # fmt: skip
    return out


# --- ratings ------------------------------------------------------------------------------

_RATING_JOINS = (
    " LEFT JOIN person pa ON pa.id = r.agent_id LEFT JOIN person pr ON pr.id = t.requester_id"
    " LEFT JOIN organization o ON o.id = t.organization_id"
)
RATING_FIELDS = (
    _c("id", "r.id"), _c("connector", "r.connector"), _c("kind", "r.kind"),
    _c("score", "r.score", False), _c("scale_min", "r.scale_min", False),
    _c("scale_max", "r.scale_max", False), _c("comment", "r.comment"),
    _c("agent", "COALESCE(pa.name, r.agent_id)"), _c("ticket", "r.ticket_id"),
    _c("ticket_external_id", "t.external_id"), _c("subject", "t.subject"),
    _c("requester", "COALESCE(pr.name, pr.email, t.requester_id)"),
    _c("organization", "COALESCE(o.name, t.organization_id)"), _c("mrr", "o.mrr", False),
    _c("rated_at", "r.rated_at", False),
)  # fmt: skip


def ratings(
    engine: Engine,
    window: Window,
    kind: str,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> Listing:
    """The ratings of ``kind`` (csat, nps, ces) in W: csat's n and, ``in_numerator``, its
    top-two-box ones; ces likewise; nps's promoters."""
    frame = ratings_of(engine, window, RATING_FIELDS, _RATING_JOINS,
                       connectors=connectors, where=where)  # fmt: skip
    rows = frame["kind"] == kind
    score, low, high = frame["score"], frame["scale_min"], frame["scale_max"]
    good = score >= 9 if kind == "nps" else top_two(score, low, high)
    columns = {c.name: frame[c.name][rows] for c in RATING_FIELDS}
    columns["in_numerator"] = good[rows]
    return Listing("ratings", kind, columns, ("rated_at",))


def bottom_two(score: F64, low: F64, high: F64) -> NDArray[np.bool_]:
    """The two lowest boxes on scales of 4 points or more, the lowest on smaller ones."""
    points = np.round(high - low) + 1
    bottom: F64 = np.where(points >= 4, low + 1, low)
    return score <= bottom


def unhappy(
    engine: Engine,
    window: Window,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
    limit: int | None = None,
) -> Listing:
    """Ratings in W that are not top-two-box csat, nps of 6 or less, or ces in the bottom two
    boxes: by mrr, highest first (none last), then rated_at. ``limit``: the first N (the
    digest's "customers who were unhappy")."""
    frame = ratings_of(engine, window, RATING_FIELDS, _RATING_JOINS,
                       connectors=connectors, where=where)  # fmt: skip
    kind, score = frame["kind"], frame["score"]
    low, high = frame["scale_min"], frame["scale_max"]
    sad = (
        ((kind == "csat") & ~top_two(score, low, high))
        | ((kind == "nps") & (score <= 6))
        | ((kind == "ces") & bottom_two(score, low, high))
    )
    mrr = np.nan_to_num(frame["mrr"], nan=-np.inf)
    order = np.lexsort((frame["id"].astype(str), frame["rated_at"], -mrr))
    chosen = order[sad[order]][:limit]
    columns = {c.name: frame[c.name][chosen] for c in RATING_FIELDS}
    return Listing("ratings", None, columns, ("rated_at",))


# --- the digest's sections ------------------------------------------------------------------


def accounts_at_risk(
    engine: Engine,
    window: Window,
    ctx: KpiContext,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
    wall: datetime | None = None,
) -> list[Group]:
    """The organizations at risk in W (SPEC §6 Accounts), highest mrr first, each with its
    KPIs and ``account`` (reasons): the digest's "accounts at risk"."""
    report = compute(engine, window, ctx, connectors=connectors, by="organization",
                     where=where, wall=wall)  # fmt: skip
    assert report.by is not None
    return [g for g in report.by.groups if g.account is not None and g.account["at_risk"]]


def diverging(
    engine: Engine,
    window: Window,
    ctx: KpiContext,
    kpi: str,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
    wall: datetime | None = None,
) -> Listing:
    """`cskpi tickets --kpi KPI --native`: the tickets behind ``kpi`` whose figure diverges
    from the vendor's, with both and the reason (SPEC §7; ``native.diverging_tickets``)."""
    p = load(engine, window, connectors, None, ctx.escalation_tags, ctx.timezone, wall=wall,
             repeat_window=ctx.repeat_window, native=True, where=where)  # fmt: skip
    try:
        rows = native.diverging_tickets(p, kpi, ctx)
    except ValueError as exc:
        raise DrillError(str(exc)) from None
    names = ("id", "seconds", "native_seconds", "reason")
    columns = {n: np.array([r[n] for r in rows], dtype=object if n in ("id", "reason")
                           else np.float64) for n in names}  # fmt: skip
    connector = [str(r["id"]).split(":", 1)[0] for r in rows]
    external = [str(r["id"]).split(":", 1)[1] for r in rows]
    columns |= {"connector": np.array(connector, dtype=object),
                "external_id": np.array(external, dtype=object)}  # fmt: skip
    return Listing("tickets", kpi, columns)
