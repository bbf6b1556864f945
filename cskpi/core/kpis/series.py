"""`cskpi kpis --interval day|week|month` (SPEC §6 Series): every KPI per local calendar
bucket of W, in one pass over W's rows.

The window's populations are read once (``populations.load``) and each is split by bucket on
its own timestamp (created_at, solved_at, rated_at; the replies follow their ticket's
creation), as ``report.py`` splits by group. The backlog, a state at an instant, is read once
too: the tickets that can be in it at any bucket's end, with their status history
(``populations.backlog_candidates``); each ticket's membership over time is a few half-open
intervals of instants by ``backlog.py``'s rule, and each bucket's end is placed in them with
binary searches, so no query runs per bucket. Every bucket is then computed by ``kpi_set``
with its own ``from``/``to`` and the report's ``now``, exactly as a window of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine

from cskpi.core.config.periods import Window, midnight, month_start
from cskpi.core.kpis.backlog import is_present
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.formulas import kpi_set
from cskpi.core.kpis.populations import (
    F64,
    I64,
    Frame,
    Populations,
    backlog_candidates,
    by_tag,
    clearing_days,
    load,
    messages_by_bucket,
    totals,
)
from cskpi.core.kpis.report import (
    Bucket,
    Group,
    KpiContext,
    Report,
    Series,
    assemble,
    group_keys,
    group_labels,
    groups_of,
    unsplit,
)
from cskpi.core.store.schema import to_epoch

INTERVALS = ("day", "week", "month")
# The timestamp each population is split on; a population not named here (one added later)
# is given whole to every bucket until it is named.
SPLIT_ON = {"created": "created_at", "solved": "solved_at", "ratings": "rated_at",
            "activity": "created_at"}  # fmt: skip
# Cut per bucket by the bucket's own instants: the 14 days before each bucket's end
# (backlog_time_to_clear, read from the first bucket's on) and, of the messages of every
# backlog candidate, the latest agent and customer message before each bucket's ``at`` for
# the tickets in its backlog (all that awaiting_reply reads).
BY_INSTANT = ("days_created", "days_solved", "threads")


def buckets(window: Window, interval: str) -> list[Window]:
    """W cut at local midnights (day), Mondays (week) or firsts of the month (month), the
    first and last bucket clipped to W; each with W's ``now``."""
    tz = window.tz
    day = window.start.astimezone(tz).date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = month_start(day)
    edges = [window.start]
    while (edge := midnight(day := _next(day, interval), tz)) < window.end:
        if edge > window.start:
            edges.append(edge)
    edges.append(window.end)
    return [Window(a, b, tz, window.now) for a, b in itertools.pairwise(edges)]


def _next(day: date, interval: str) -> date:
    if interval == "month":
        return month_start(day, -1)
    return day + timedelta(days=7 if interval == "week" else 1)


def compute_series(
    engine: Engine,
    window: Window,
    ctx: KpiContext,
    interval: str,
    *,
    connectors: Sequence[str] = (),
    by: str | None = None,
    wall: datetime | None = None,
    where: Where = EVERYTHING,
    native: bool = False,
) -> Report:
    """The report of W (as ``report.compute``) with its ``series`` of buckets; ``native``
    puts the vendors' figures beside the window's KPIs (not each bucket's)."""
    windows = buckets(window, interval)
    keyed = load(engine, window, connectors, by, ctx.escalation_tags, ctx.timezone, wall=wall,
                 repeat_window=ctx.repeat_window, native=native, where=where,
                 days_from=windows[0].end)  # fmt: skip
    report = assemble(engine, keyed, window, ctx, connectors=connectors, by=by, where=where,
                      native=native)  # fmt: skip
    parts = _split_by_bucket(engine, keyed, windows, by, connectors, where, wall, ctx.timezone)
    made = []
    for w, part in zip(windows, parts, strict=True):
        whole = totals(part) if by == "tag" else part
        groups = None if by is None else _groups(engine, report, part, w, ctx, by)
        made.append(Bucket(w, kpi_set(whole, w, ctx, split=unsplit(where)), groups))
    return replace(report, series=Series(interval, made))


def _groups(
    engine: Engine, report: Report, part: Populations, w: Window, ctx: KpiContext, by: str
) -> list[Group]:
    """The groups with rows in the bucket, in the window's order of groups; a group only a
    bucket has (a ticket in an earlier backlog only) after them."""
    assert report.by is not None
    known = [g.key for g in report.by.groups]
    labels = {g.key: g.label for g in report.by.groups if g.key is not None}
    found = group_keys(part)  # by key, None last
    extra = [k for k in found if k not in set(known)]
    labels |= group_labels(engine, by, [k for k in extra if k is not None])
    keys = [k for k in known if k in set(found)] + extra
    return groups_of(part, w, ctx, by, keys, labels)


def _split_by_bucket(
    engine: Engine,
    p: Populations,
    windows: list[Window],
    by: str | None,
    connectors: Sequence[str],
    where: Where,
    wall: datetime | None,
    tz: ZoneInfo,
) -> list[Populations]:
    edges = np.array([to_epoch(w.start) for w in windows] + [to_epoch(windows[-1].end)],
                     dtype=np.float64)  # fmt: skip
    split = {name: _by_bucket(getattr(p, name), column, edges)
             for name, column in SPLIT_ON.items()}  # fmt: skip
    if "offered_at" in p.ratings.cols:  # csat_response_rate: a survey in its offer's bucket too
        split["ratings"] = _ratings_by_bucket(p.ratings, edges)
    backlog, threads = _backlogs(engine, windows, by, connectors, where, wall)
    latest = _Latest(threads)
    clearing = [clearing_days(w.end, tz) for w in windows]
    days_created = _by_span(p.days_created, "created_at", clearing)
    days_solved = _by_span(p.days_solved, "solved_at", clearing)
    messages = (
        messages_by_bucket(
            engine,
            [w.start for w in windows] + [windows[-1].end],
            connectors=connectors,
            where=where,
        )
        if p.has_messages
        else np.zeros(len(windows), dtype=bool)
    )
    created_bucket = _bucket_of_tickets(p.created, p.replies["ticket"], edges)
    parts = []
    for i in range(len(windows)):
        chosen = {name: frames[i] for name, frames in split.items()}
        replies = p.replies.take(np.flatnonzero(created_bucket == i))
        mine = latest.before(backlog[i]["rowid"], windows[i].at)
        parts.append(replace(p, **chosen, backlog=backlog[i], replies=replies, threads=mine,
                             days_created=days_created[i], days_solved=days_solved[i],
                             has_messages=bool(messages[i])))  # fmt: skip
    named = {*SPLIT_ON, *BY_INSTANT, "backlog", "replies", "has_messages", "organizations"}
    assert {f.name for f in fields(p)} == named, "series.py must say how to split each population"
    return parts


def _take(frame: Frame, rows: NDArray[np.intp]) -> Frame:
    """``frame``'s rows, keeping the group key (``Frame.take`` drops it)."""
    return Frame({k: v[rows] for k, v in frame.cols.items()},
                 None if frame.key is None else frame.key[rows])  # fmt: skip


def _by_bucket(frame: Frame, column: str, edges: F64) -> list[Frame]:
    """``frame``'s rows per bucket of ``column``'s instant, each in row order."""
    index = np.searchsorted(edges, frame[column], side="right") - 1
    return [_take(frame, rows) for rows in _positions(index, len(edges) - 1)]


def _by_span(frame: Frame, column: str, spans: list[tuple[datetime, datetime]]) -> list[Frame]:
    """Per span [from, to), ``frame``'s rows with ``column`` in it, in row order (one sort,
    then two binary searches a span, where a scan a bucket read the whole year each time)."""
    order = np.argsort(frame[column], kind="stable")
    stamps = frame[column][order]
    out = []
    for first, last in spans:
        span = np.array([to_epoch(first), to_epoch(last)], dtype=np.float64)
        a, b = np.searchsorted(stamps, span, side="left")
        out.append(_take(frame, np.sort(order[a:b])))
    return out


class _Latest:
    """The public messages of the backlog candidates (ticket, at, agent), sorted once, so
    that each bucket's ``threads`` can be the latest agent and the latest customer message
    before its instant of each of its backlog's tickets: awaiting_reply (views.awaited)
    reads nothing else, and each bucket no longer sorts the messages of its whole backlog."""

    def __init__(self, threads: Frame) -> None:
        ticket = threads["ticket"].astype(np.int64)
        self.tickets, rank = np.unique(ticket, return_inverse=True)
        at = threads["at"].astype(np.int64)
        self.base = int(at.min()) if len(at) else 0
        self.sides = []
        for agent in (True, False):
            mine = (threads["agent"] > 0) == agent
            # (ticket, at) as one number: the ticket's rank above the seconds since ``base``
            keys = np.sort((rank[mine].astype(np.int64) << _SPAN) + (at[mine] - self.base))
            self.sides.append((agent, keys))

    def before(self, rowid: F64, at: datetime) -> Frame:
        """Per ticket of ``rowid``, its latest agent and latest customer message before
        ``at`` (a frame as ``Populations.threads``)."""
        moment = min(max(int(to_epoch(at) or 0) - self.base, 0), _SECONDS)
        keys = np.unique(rowid.astype(np.int64))  # a ticket may come once per tag
        place = np.minimum(np.searchsorted(self.tickets, keys), max(len(self.tickets) - 1, 0))
        known = self.tickets[place] == keys if len(self.tickets) else np.zeros(len(keys), bool)
        tickets, ranks = keys[known], place[known].astype(np.int64)
        empty = np.zeros(0)
        cols: dict[str, list[NDArray[Any]]] = {"ticket": [empty], "at": [empty], "agent": [empty]}
        for agent, sorted_keys in self.sides:
            if len(sorted_keys) == 0:
                continue
            # the last key below (rank, moment) is the ticket's latest message before it
            last = np.searchsorted(sorted_keys, (ranks << _SPAN) + moment, side="left") - 1
            hit = (last >= 0) & ((sorted_keys[np.maximum(last, 0)] >> _SPAN) == ranks)
            cols["ticket"].append(tickets[hit].astype(np.float64))
            cols["at"].append((sorted_keys[last[hit]] & _SECONDS) + float(self.base))
            cols["agent"].append(np.full(int(hit.sum()), float(agent)))
        return Frame({k: np.concatenate(v) for k, v in cols.items()}, None)


_SPAN = 34  # bits for seconds since the earliest message: over 500 years
_SECONDS = (1 << _SPAN) - 1


def _ratings_by_bucket(ratings: Frame, edges: F64) -> list[Frame]:
    """Each rating in the bucket of its answer and, when offered, of its offer (SPEC §7: the
    response rate is over the surveys offered in the bucket), each once, in row order."""
    n = len(edges) - 1
    answered = _positions(np.searchsorted(edges, ratings["rated_at"], side="right") - 1, n)
    offer = np.where(ratings["kind"] == "csat", ratings["offered_at"], np.nan)  # csat only
    offered = _positions(np.searchsorted(edges, offer, side="right") - 1, n)
    return [_take(ratings, np.union1d(a, o)) for a, o in zip(answered, offered, strict=True)]


def _positions(index: NDArray[np.intp], n: int) -> list[NDArray[np.intp]]:
    """Row positions with each bucket number 0..n-1, in row order (one stable sort)."""
    order = np.argsort(index, kind="stable")
    ends = np.searchsorted(index[order], np.arange(n), side="right")
    starts = np.searchsorted(index[order], np.arange(n), side="left")
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]


def _bucket_of_tickets(created: Frame, tickets: NDArray[np.int64], edges: F64) -> I64:
    """The bucket of each ticket row key in ``tickets`` by its creation (-1 if not found)."""
    rowid = created["rowid"].astype(np.int64)
    if len(rowid) == 0:
        return np.full(len(tickets), -1, dtype=np.int64)
    order = np.argsort(rowid, kind="stable")
    at = np.minimum(np.searchsorted(rowid[order], tickets), len(rowid) - 1)
    found = rowid[order][at] == tickets
    bucket = np.searchsorted(edges, created["created_at"][order][at], side="right") - 1
    return np.where(found, bucket, -1).astype(np.int64)


# --- the backlog at each bucket's end --------------------------------------------------------

NEVER = np.float64(np.inf)


def _backlogs(
    engine: Engine,
    windows: list[Window],
    by: str | None,
    connectors: Sequence[str],
    where: Where,
    wall: datetime | None,
) -> tuple[list[Frame], Frame]:
    """The backlog population at each bucket's ``at`` (its end, or ``now`` if sooner), and
    the public messages of every ticket among them (``Populations.threads`` of each)."""
    instants = [w.at for w in windows]
    frame, ticket, at, done, threads = backlog_candidates(
        engine, instants[0], instants[-1], by, connectors=connectors, where=where
    )
    a = np.array([to_epoch(i) for i in instants], dtype=np.float64)
    live = np.array([is_present(i, wall) for i in instants])
    members = _members(frame, ticket, at, done, a, live)
    out = []
    for rows in members:
        part = Frame({"rowid": frame["rowid"][rows], "created_at": frame["created_at"][rows]},
                     None if frame.key is None else frame.key[rows])  # fmt: skip
        out.append(by_tag(part) if by == "tag" else part)
    return out, threads


def _members(
    frame: Frame, ticket: I64, at: I64, done: NDArray[np.bool_], a: F64,
    live: NDArray[np.bool_],
) -> list[NDArray[np.intp]]:  # fmt: skip
    """Per instant of ``a`` (non-decreasing), the candidate rows in the backlog then."""
    lo, hi, row = _intervals(frame, ticket, at, done)
    first = np.searchsorted(a, lo, side="left")
    last = np.searchsorted(a, hi, side="left")
    count = np.maximum(last - first, 0)
    total = int(count.sum())
    rows = np.repeat(row, count)
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    instant = np.repeat(first, count) + offsets
    by_instant = _positions(instant, len(a))
    unsolved = ~np.isin(frame["status"], ("solved", "closed"))
    created = frame["created_at"]
    return [
        np.flatnonzero(unsolved & (created < a[i])) if live[i] else np.sort(rows[by_instant[i]])
        for i in range(len(a))
    ]


def _intervals(
    frame: Frame, ticket: I64, at: I64, done: NDArray[np.bool_]
) -> tuple[F64, F64, NDArray[np.intp]]:
    """The instants ``a`` (as [lo, hi), integer seconds) at which each candidate row is in
    a past backlog by ``backlog.py``'s rule: created before ``a``; not solved now with its
    latest solve before ``a``; and then, with no solve stamp, in; else by the latest status
    change at or before ``a`` (a solve wins its second), or without one by its first solve
    stamp being at or after ``a``."""
    created, solved = frame["created_at"], frame["solved_at"]
    is_done = np.isin(frame["status"], ("solved", "closed"))
    start = created + 1  # a > created_at
    stop = np.where(is_done & ~np.isnan(solved), solved + 1, NEVER)  # a <= solved_at
    stamp = np.where(np.isnan(frame["first_solved_at"]), solved, frame["first_solved_at"])
    rows = np.arange(len(frame))
    c_row, c_at, c_unsolved, c_next = _changes(frame["rowid"], ticket, at, done)
    first_change = np.full(len(frame), NEVER)
    np.minimum.at(first_change, c_row, c_at)
    # before any change: by the stamps (none: in all along)
    pre_hi = np.where(np.isnan(stamp), NEVER, np.minimum(first_change, stamp + 1))
    pre_hi = np.where(np.isnan(stamp), stop, np.minimum(pre_hi, stop))
    history = c_unsolved & ~np.isnan(stamp[c_row])
    lo = np.concatenate([start, np.maximum(c_at[history], start[c_row[history]])])
    hi = np.concatenate([pre_hi, np.minimum(c_next[history], stop[c_row[history]])])
    row = np.concatenate([rows, c_row[history]])
    keep = lo < hi
    return lo[keep], hi[keep], row[keep]


def _changes(
    rowid: F64, ticket: I64, at: I64, done: NDArray[np.bool_]
) -> tuple[NDArray[np.intp], F64, NDArray[np.bool_], F64]:
    """Each ticket's changes as candidate rows, one per (row, second) — unsolved unless a
    solve or close is among them — with the next change's instant (inf after the last).
    A ticket that came as several rows (one per tag) has its changes on each."""
    keys = rowid.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    first = np.searchsorted(keys[order], ticket, side="left")
    count = np.searchsorted(keys[order], ticket, side="right") - first
    row = order[np.repeat(first, count) + np.arange(int(count.sum()))
                - np.repeat(np.cumsum(count) - count, count)]  # fmt: skip
    at, done = np.repeat(at, count), np.repeat(done, count)
    sort = np.lexsort((at, row))
    row, at, done = row[sort], at[sort], done[sort]
    new = np.r_[True, (row[1:] != row[:-1]) | (at[1:] != at[:-1])] if len(row) else np.ones(0, bool)
    starts = np.flatnonzero(new)
    any_done = np.maximum.reduceat(done, starts) if len(starts) else done[:0]
    row, when = row[starts], at[starts].astype(np.float64)
    following: F64 = np.r_[when[1:], NEVER] if len(when) else when
    last_of_row = np.r_[row[1:] != row[:-1], True] if len(row) else np.ones(0, bool)
    unsolved: NDArray[np.bool_] = ~any_done.astype(bool)
    following = np.where(last_of_row, NEVER, following)
    rows: NDArray[np.intp] = row
    return rows, when, unsolved, following
