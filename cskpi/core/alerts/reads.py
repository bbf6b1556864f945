"""An alert's KPI in each of its buckets (the current one and its baseline), per key of its
``by`` dimension, each from ONE query however many buckets (SPEC §8; docs/planning.md).

A command's time goes into reading, so each KPI reads only what it is computed from:
counts are counted in SQL by bucket and stored key; the backlog at every bucket's end is
counted in SQL too, one sum per instant of ``backlog.py``'s rule over the tickets that can
be in the backlog at any of them (a past backlog read per instant walked the tickets solved
since that instant nine times over); a duration or rate reads its one population (the
tickets created or solved in the buckets, or the csat ratings), split by bucket and key here
and computed by the selection its KPI is computed from in the engine (``formulas.py``, as
``drill.DRILLS`` names it), so the figures are the KPI report's; response_time from the
public messages of the tickets created in the buckets, by the engine's ``answered``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, text

from cskpi.core.config.periods import Window
from cskpi.core.kpis.backlog import conditions, is_present, unindexed
from cskpi.core.kpis.drill import DRILLS
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.formulas import KpiContext, csat_entry, durations, rate_of
from cskpi.core.kpis.populations import (
    RATING_KEY,
    TICKET_KEY,
    Frame,
    answered,
    by_tag,
    escalated,
    escalation_params,
)
from cskpi.core.kpis.report import none_label
from cskpi.core.store.dialect import sql_for

WHOLE = ""  # the key of an alert without ``by``


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime


Values = dict[str, list[float | None]]  # key -> value per bucket (the current one first)
Sizes = dict[str, list[int | None]]  # key -> population per bucket (durations and rates)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def keys_of(raw: object, dimension: str | None) -> list[str]:
    """A row's keys: its tags for ``tag`` (none: the none label), else its one value."""
    if dimension is None:
        return [WHOLE]
    if dimension == "tag":
        # the stored JSON list, read as text (a driver that parses it hands over a list)
        tags = json.loads(raw) if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return [str(t) for t in tags] or [none_label("tag")]
    return [none_label(dimension) if raw is None else str(raw)]


def _ranges(column: str, buckets: Sequence[Bucket]) -> tuple[list[str], dict[str, int]]:
    """``column`` in each bucket, as SQL conditions binding ``:s{i}``/``:e{i}``."""
    ranges = [f"{column} >= :s{i} AND {column} < :e{i}" for i in range(len(buckets))]
    params = {f"{e}{i}": _epoch(getattr(b, n)) for i, b in enumerate(buckets)
              for e, n in (("s", "start"), ("e", "end"))}  # fmt: skip
    return ranges, params


def _split_keys(rows: Sequence[Any], dimension: str | None, n: int) -> Values:
    """Rows of (stored key, count per bucket…) as counts per key: a tag list is one stored
    key, split here (a store holds a few hundred distinct lists)."""
    values: Values = {WHOLE: [0.0] * n} if dimension is None else {}
    for raw, *counts in rows:
        for k in keys_of(raw, dimension):
            slots = values.setdefault(k, [0.0] * n)
            for i, c in enumerate(counts):
                slots[i] = (slots[i] or 0.0) + float(c or 0)
    return values


def count_values(
    engine: Engine, kpi: str, dimension: str | None, buckets: Sequence[Bucket],
    where: Where = EVERYTHING,
) -> Values:  # fmt: skip
    """tickets_created or tickets_solved per bucket and key: one read, counted in SQL by
    bucket and stored key."""
    column = "t.created_at" if kpi == "tickets_created" else "t.solved_at"
    solved = " AND t.status IN ('solved', 'closed')" if kpi == "tickets_solved" else ""
    ranges, params = _ranges(column, buckets)
    which = " ".join(f"WHEN {r} THEN {i}" for i, r in enumerate(ranges))
    key = TICKET_KEY[dimension] if dimension else "NULL"
    sql = (f"SELECT CASE {which} END AS b, {key} AS k, COUNT(*) FROM ticket t "  # noqa: S608
           f"WHERE t.deleted = FALSE{solved} AND ({' OR '.join(f'({r})' for r in ranges)})"
           f"{where.sql('t', sql_for(engine))} GROUP BY b, k")  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {**params, **where.params()}).all()
    values: Values = {WHOLE: [0.0] * len(buckets)} if dimension is None else {}
    for bucket, raw, count in rows:
        for k in keys_of(raw, dimension):
            slots = values.setdefault(k, [0.0] * len(buckets))
            slots[int(bucket)] = (slots[int(bucket)] or 0.0) + count
    return values


# --- the backlog at every bucket's end ----------------------------------------------------

_AT = re.compile(r":a\b")  # the instant ``backlog.conditions`` binds
_UNSOLVED = "t.status IN ('new', 'open', 'pending', 'on_hold')"
# The tickets that can be in the backlog at some instant from :s to :e, in three disjoint
# index ranges (as ``populations.backlog_candidates`` reads them): solved since the first
# instant ({straddles}: of them, only the unsolved ones and those created before an instant
# and solved at or after it can be in its backlog); unsolved now and not solved since; solved
# now without a stamp (on the solved_at index: few tickets lack one, most are solved).
_CANDIDATES = (
    f"t.solved_at >= :s AND {{+t.created_at}} < :e AND ({_UNSOLVED}{{straddles}})",
    f"{_UNSOLVED} AND t.created_at < :e AND (t.solved_at IS NULL OR t.solved_at < :s)",
    "t.solved_at IS NULL AND {+t.status} IN ('solved', 'closed') AND {+t.created_at} < :e",
)


def backlog_values(
    engine: Engine, dimension: str | None, buckets: Sequence[Bucket], now: datetime,
    where: Where = EVERYTHING,
) -> Values:  # fmt: skip
    """The backlog at each bucket's end (at ``now`` if that comes first), by ``backlog.py``'s
    rule (``now`` is the wall clock it judges the real present by): one query over the
    candidates, one sum per instant. With ``by``, the keys in a backlog at any instant."""
    instants = [min(b.end, now) for b in buckets]
    sums, params = [], {"s": _epoch(min(instants)), "e": _epoch(max(instants))}
    for i, at in enumerate(instants):
        rule = " OR ".join(f"({_AT.sub(f':a{i}', c)})" for c in conditions(is_present(at, now)))
        # created before the instant, as both conditions say: one comparison rules out most
        # candidates before the status lists (docs/performance.md)
        sums.append(f"SUM(CASE WHEN t.created_at < :a{i} AND ({rule}) THEN 1 ELSE 0 END) AS n{i}")
        params[f"a{i}"] = _epoch(at)
    straddles = "".join(f" OR (t.created_at < :a{i} AND t.solved_at >= :a{i})"
                        for i in range(len(instants)))  # fmt: skip
    key = TICKET_KEY[dimension] if dimension else "NULL"
    group = f" GROUP BY {key}" if dimension else ""
    dialect = sql_for(engine)
    parts = [
        f"SELECT {key} AS k, {', '.join(sums)} FROM ticket t "  # noqa: S608
        f"WHERE t.deleted = FALSE AND {c.replace('{straddles}', straddles)}"
        f"{where.sql('t', dialect)}{group}"
        for c in _CANDIDATES
    ]
    with engine.connect() as conn:
        rows = conn.execute(text(unindexed(" UNION ALL ".join(parts), dialect)),
                            {**params, **where.params()}).all()  # fmt: skip
    values = _split_keys(rows, dimension, len(buckets))
    return {k: v for k, v in values.items() if k == WHOLE or any(v)}


# --- durations and rates ------------------------------------------------------------------

# Each measure's ticket population: the timestamp that puts a row in a bucket, the columns
# its selections read (``_TEXT`` ones as text, the rest numbers) and what else it needs.
_POPULATIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "created": ("created_at", ("created_at", "first_reply_at", "solved_at", "priority",
                               "status"), ""),
    "solved": ("solved_at", ("created_at", "solved_at", "agent_replies", "reopens",
                             "escalated"), " AND {+t.status} IN ('solved', 'closed')"),
}  # fmt: skip
_TEXT = ("priority", "status")


def measure_values(
    engine: Engine, ctx: KpiContext, kpi: str, dimension: str | None,
    buckets: Sequence[Bucket], now: datetime, where: Where = EVERYTHING,
) -> tuple[Values, Sizes]:  # fmt: skip
    """A duration or rate per bucket and key, and its population (n or denominator)."""
    if kpi == "csat":
        frame, stamps = _ratings(engine, dimension, buckets, where)
    elif kpi == "response_time":
        frame, stamps = _replies(engine, dimension, buckets, where)
    else:
        frame, stamps = _tickets(engine, kpi, ctx, dimension, buckets, where)
    values: Values = {}
    sizes: Sizes = {}
    for i, b in enumerate(buckets):
        window = Window(b.start, b.end, ctx.timezone, max(now, b.end))
        inside = (stamps >= _epoch(b.start)) & (stamps < _epoch(b.end))
        for k, rows in _groups(frame, inside, dimension).items():
            value, n = _entry(kpi, rows, window, ctx)
            values.setdefault(k, [None] * len(buckets))[i] = value
            sizes.setdefault(k, [None] * len(buckets))[i] = n
    return values, sizes


def _groups(frame: Frame, inside: NDArray[np.bool_], dimension: str | None) -> dict[str, Frame]:
    """The bucket's rows per key (``frame`` is keyed per tag already)."""
    if dimension is None:
        return {WHOLE: frame.where(inside)}
    assert frame.key is not None
    keys = frame.key[inside]
    rows = frame.where(inside)
    found: dict[str, Frame] = {}
    for k in dict.fromkeys(keys.tolist()):
        label = none_label(dimension) if k is None else str(k)
        found[label] = rows.where(keys == k) if k is not None else rows.where(_none(keys))
    return found


def _none(keys: NDArray[np.object_]) -> NDArray[np.bool_]:
    return np.fromiter((k is None for k in keys), dtype=bool, count=len(keys))


def _entry(kpi: str, rows: Frame, w: Window, ctx: KpiContext) -> tuple[float | None, int | None]:
    """The KPI's value and n (or denominator) over ``rows``, as the KPI report has them."""
    if kpi == "csat":
        entry = csat_entry(rows["score"], rows["scale_min"], rows["scale_max"])
        return entry["value"], entry.get("n")
    if kpi == "response_time":  # no reply in a bucket without messages: null, as the engine
        entry = durations(rows["seconds"], "")
        return entry["value"], entry.get("n")
    drill = DRILLS[kpi]
    if (drill.needs == "sla" and ctx.sla is None) or (
        drill.needs == "business" and ctx.business is None
    ):
        return None, None
    chosen = drill.select(rows, w, ctx)
    if chosen.seconds is not None:
        entry = durations(chosen.seconds[chosen.rows], "")
        return entry["value"], entry.get("n")
    entry = rate_of(chosen, "")
    return entry["value"], entry.get("denominator")


def _tickets(
    engine: Engine, kpi: str, ctx: KpiContext, dimension: str | None,
    buckets: Sequence[Bucket], where: Where,
) -> tuple[Frame, NDArray[np.float64]]:  # fmt: skip
    """The KPI's ticket population in every bucket (one query), keyed per tag with ``tag``,
    and each row's instant that places it in a bucket."""
    population = DRILLS[kpi].population
    column, names, only = _POPULATIONS[population]
    ranges, params = _ranges(f"t.{column}", buckets)
    dialect = sql_for(engine)
    escalation = escalated(ctx.escalation_tags, dialect)  # the KPI engine's rule, as it reads it
    selected = ", ".join(escalation if n == "escalated" else f"t.{n}" for n in names)
    key = TICKET_KEY[dimension] if dimension else "NULL"
    sql = (f"SELECT {selected}, {key} FROM ticket t WHERE t.deleted = FALSE{only} "  # noqa: S608
           f"AND ({' OR '.join(f'({r})' for r in ranges)}){where.sql('t', dialect)}")  # fmt: skip
    bound = {**params, **escalation_params(ctx.escalation_tags), **where.params()}
    with engine.connect() as conn:
        rows = conn.execute(text(unindexed(sql, dialect)), bound).all()
    frame = _frame(rows, names, dimension)
    stamps: NDArray[np.float64] = frame[column]
    return frame, stamps


def _ratings(
    engine: Engine, dimension: str | None, buckets: Sequence[Bucket], where: Where
) -> tuple[Frame, NDArray[np.float64]]:
    """The csat ratings answered in every bucket (one query; a deleted ticket drops its
    rating), as the KPI report's ratings are read."""
    ranges, params = _ranges("r.rated_at", buckets)
    any_range = " OR ".join(f"({r})" for r in ranges)
    key = RATING_KEY[dimension] if dimension else "NULL"
    names = ("score", "scale_min", "scale_max", "rated_at")
    sql = (f"SELECT {', '.join(f'r.{n}' for n in names)}, {key} "  # noqa: S608
           "FROM rating r LEFT JOIN ticket t ON t.id = r.ticket_id "
           "WHERE COALESCE(t.deleted, FALSE) = FALSE AND r.kind = 'csat' "
           "AND r.score IS NOT NULL AND r.scale_max > r.scale_min "
           f"AND ({any_range}){where.sql('r', sql_for(engine))}")  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {**params, **where.params()}).all()
    frame = _frame(rows, names, dimension)
    stamps: NDArray[np.float64] = frame["rated_at"]
    return frame, stamps


def _replies(
    engine: Engine, dimension: str | None, buckets: Sequence[Bucket], where: Where
) -> tuple[Frame, NDArray[np.float64]]:
    """Per customer message answered, of a ticket created in one of the buckets (one query):
    the seconds to the agent's answer (``populations.answered``, the KPI engine's rule) and
    the ticket's creation, which places it in its bucket."""
    ranges, params = _ranges("t.created_at", buckets)
    any_range = " OR ".join(f"({r})" for r in ranges)
    key = TICKET_KEY[dimension] if dimension else "NULL"
    # CROSS JOIN keeps SQLite on the buckets' tickets first (as JOIN it walked the messages;
    # docs/performance.md); PostgreSQL plans it as the inner join it is
    sql = (f"SELECT t.id, t.created_at, m.created_at, "  # noqa: S608
           f"CASE WHEN m.author_role = 'agent' THEN 1 ELSE 0 END, {key} "
           "FROM ticket t CROSS JOIN message m WHERE m.ticket_id = t.id AND t.deleted = FALSE "
           f"AND ({any_range}) AND m.public = TRUE AND m.author_role IN ('customer', 'agent')"
           f"{where.sql('t', sql_for(engine))}")  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {**params, **where.params()}).all()
    if not rows:
        return _frame([], ("created_at", "seconds"), dimension), np.zeros(0)
    ids, created, at, agent, keys = zip(*rows, strict=True)
    # tickets numbered, each one's first row kept for its creation and key
    _, first, ticket = np.unique(np.array(ids, dtype=str), return_index=True, return_inverse=True)
    found = answered(ticket.astype(np.int64), np.array(at, dtype=np.int64),
                     np.array(agent, dtype=bool))  # fmt: skip
    of = first[found["ticket"]].tolist()
    replies = [(created[i], float(seconds), keys[i])
               for i, seconds in zip(of, found["seconds"].tolist(), strict=True)]  # fmt: skip
    frame = _frame(replies, ("created_at", "seconds"), dimension)
    stamps: NDArray[np.float64] = frame["created_at"]
    return frame, stamps


def _frame(rows: Sequence[Any], names: Sequence[str], dimension: str | None) -> Frame:
    """Rows (the key last) as the engine's columns: numbers as float64 with NaN for NULL,
    text as objects; with ``tag``, once per tag of the row's ticket."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(names) + 1)
    cols: dict[str, NDArray[Any]] = {}
    for name, column in zip(names, columns, strict=False):
        if name in _TEXT:
            cols[name] = np.array(column, dtype=object)
        else:
            cols[name] = np.array([np.nan if v is None else v for v in column], dtype=np.float64)
    if dimension is None:
        return Frame(cols, None)
    keys = np.empty(len(rows), dtype=object)
    keys[:] = [_key(k, dimension) for k in columns[-1]]
    frame = Frame(cols, keys)
    return by_tag(frame) if dimension == "tag" else frame


def _key(raw: object, dimension: str) -> str | None:
    """A stored key as text (a driver that parses JSON hands a tag list over as a list)."""
    if raw is None or isinstance(raw, str):
        return raw
    return json.dumps(raw) if dimension == "tag" else str(raw)
