"""The KPI formulas of SPEC §6 (the working views): pure array code over the populations, as
``formulas.py`` is for §4, whose entry helpers they share; ``formulas.kpi_set`` calls them in
SPEC order. Every choice SPEC leaves open is written down in docs/kpis.md.

A state at an instant (``awaiting_reply``) and a figure over the days before an instant
(``time_to_clear``) take that instant as an argument and only filter the rows they are given,
so a series can evaluate them at each bucket's end over rows read once for all buckets.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from cskpi.core.config.periods import Window
from cskpi.core.kpis.derived import UNSOLVED
from cskpi.core.kpis.formulas import (
    Entry,
    KpiContext,
    Selection,
    _calendar_and_business,
    _count,
    _null,
    _positive,
    percentile,
    rate,
    rate_of,
)
from cskpi.core.kpis.native import answered
from cskpi.core.kpis.populations import F64, Frame, Populations, clearing_days
from cskpi.core.store.schema import to_epoch

H = 3600.0
D = 86400.0
# Duration buckets, half-open [lower, upper): (label, upper edge in seconds); the last label
# takes the rest.
Edges = tuple[tuple[str, float | None], ...]
FIRST_RESPONSE_BUCKETS: Edges = (
    ("<1h", H), ("1-4h", 4 * H), ("4-8h", 8 * H), ("8-24h", D), (">24h", None)
)  # fmt: skip
RESOLUTION_BUCKETS: Edges = (
    ("<4h", 4 * H), ("4-24h", D), ("1-3d", 3 * D), ("3-7d", 7 * D), (">7d", None)
)  # fmt: skip
WAIT_BUCKETS: Edges = (("<1h", H), ("1-4h", 4 * H), ("4-24h", D), ("1-3d", 3 * D), (">3d", None))
TOUCHES = ("0", "1", "2", "3+")
CLEARING_DAYS = 14
NO_SOLVED = "no ticket solved in the window"


def ticket_views(p: Populations, w: Window, ctx: KpiContext) -> dict[str, Entry]:
    """The §6 KPIs from the created, solved and rated populations, first_resolution_time
    to the activity counts, in SPEC order."""
    solved, created = p.solved, p.created
    return {
        **first_resolution(solved, ctx),
        "resolution_stages": resolution_stages(solved),
        "time_in_status": time_in_status(solved),
        "reassignment_rate": reassignment_rate(solved),
        "touches": touches(solved),
        "first_response_distribution": first_response_distribution(created, w),
        "resolution_distribution": resolution_distribution(solved),
        "esat": esat(answered(p.ratings, w)),
        **activity(p.activity),
    }


def _counts(split: dict[str, int]) -> Entry:
    """A count split into named buckets, shaped as backlog_age is."""
    return {"value": split, "unit": "count"}


def buckets(seconds: F64, edges: Edges) -> dict[str, int]:
    """How many of ``seconds`` fall in each half-open bucket (an edge opens the next one)."""
    uppers = np.array([upper for _, upper in edges[:-1]])
    counts = np.bincount(np.searchsorted(uppers, seconds, "right"), minlength=len(edges))
    return {label: int(n) for (label, _), n in zip(edges, counts, strict=True)}


def stages(parts: dict[str, F64], empty: str) -> Entry:
    """Median, p90 and mean of each part over the same tickets; ``value`` the medians."""
    n = len(next(iter(parts.values())))
    if n == 0:
        return _null(empty, "s")
    ordered = {name: np.sort(seconds) for name, seconds in parts.items()}
    medians = {name: percentile(x, 0.5) for name, x in ordered.items()}
    return {"value": medians, "median": dict(medians),
            "p90": {name: percentile(x, 0.9) for name, x in ordered.items()},
            "mean": {name: float(x.sum()) / n for name, x in ordered.items()},
            "n": n, "unit": "s"}  # fmt: skip


def first_resolution_selection(solved: Frame) -> Selection:
    """Tickets solved in W with a first solve stamp: first_solved_at - created_at."""
    stamped = ~np.isnan(solved["first_solved_at"])
    start, end = solved["created_at"], solved["first_solved_at"]
    return Selection(stamped, seconds=np.where(stamped, end - start, np.nan), start=start, end=end)


def first_resolution(solved: Frame, ctx: KpiContext) -> dict[str, Entry]:
    empty = "no ticket solved in the window has a first solve stamp"
    return _calendar_and_business(
        "first_resolution_time", first_resolution_selection(solved), ctx, empty
    )


def resolution_stages(solved: Frame) -> Entry:
    created, reply = solved["created_at"], solved["first_reply_at"]
    first, last = solved["first_solved_at"], solved["solved_at"]
    both = ~np.isnan(reply) & ~np.isnan(first)
    entry = stages(
        {
            "to_first_reply": (reply - created)[both],
            "to_first_solve": np.maximum(first - reply, 0.0)[both],
            "after_reopen": (last - first)[both],
        },
        "no ticket solved in the window has both a first reply and a first solve stamp",
    )
    if entry["value"] is not None:
        entry["unreplied"] = int(np.count_nonzero(np.isnan(reply)))
    return entry


def time_in_status(solved: Frame) -> Entry:
    known = ~np.isnan(solved["in_new"])
    return stages(
        {name: solved[f"in_{name}"][known] for name in UNSOLVED},
        "no ticket solved in the window has a status history",
    )


def reassignment_selection(solved: Frame) -> Selection:
    """Every ticket solved in W; in the numerator when it changed assignee."""
    return Selection(np.ones(len(solved), dtype=bool), solved["assignee_changes"] >= 1)


def reassignment_rate(solved: Frame) -> Entry:
    changes = solved["assignee_changes"]
    entry = rate_of(reassignment_selection(solved), NO_SOLVED)
    if entry["value"] is not None:
        entry["mean_assignees"] = 1 + float(changes.sum()) / len(changes)
    return entry


def touches(solved: Frame) -> Entry:
    replies = np.minimum(np.maximum(solved["agent_replies"], 0), 3).astype(np.int64)
    counts = np.bincount(replies, minlength=4)
    return _counts({label: int(n) for label, n in zip(TOUCHES, counts, strict=True)})


def first_response_distribution(created: Frame, w: Window) -> Entry:
    """A reply stamped after ``now`` had not happened yet: unanswered, as the SLA has it."""
    now = float(to_epoch(w.now) or 0)
    reply = created["first_reply_at"]
    answered = reply <= now  # NaN compares false
    counts = buckets((reply - created["created_at"])[answered], FIRST_RESPONSE_BUCKETS)
    counts["unanswered"] = int(np.count_nonzero(~answered))
    return _counts(counts)


def resolution_distribution(solved: Frame) -> Entry:
    return _counts(buckets(solved["solved_at"] - solved["created_at"], RESOLUTION_BUCKETS))


def esat(ratings: Frame) -> Entry:
    mine = ratings["kind"] == "esat"
    score, low, high = (ratings[c][mine] for c in ("score", "scale_min", "scale_max"))
    if len(score) == 0:
        return _null("no esat rating in the window", "score")
    top = int(np.count_nonzero(_positive(score, low, high)))
    return {"value": float(score.sum()) / len(score), "n": len(score),
            "top2": 100 * top / len(score), "unit": "score"}  # fmt: skip


def activity(messages: Frame) -> dict[str, Entry]:
    public = messages["public"] > 0
    authors = {a for a in messages["author"][public].tolist() if a is not None}
    return {
        "public_replies": _count(int(np.count_nonzero(public))),
        "internal_notes": _count(int(np.count_nonzero(~public))),
        "tickets_touched": _count(len(set(messages["ticket"].tolist()))),
        "active_agents": _count(len(authors)),
    }


def awaiting_reply(backlog: Frame, threads: Frame, at: datetime) -> Entry:
    """The ``backlog`` tickets at ``at`` by who is awaited and the time since the latest public
    agent message before ``at`` (see ``awaited``)."""
    on_agent, since = awaited(backlog, threads, at)
    counts: dict[str, int] = {}
    for who, rows in (("agent", on_agent), ("customer", ~on_agent)):
        counts |= {f"{who}.{k}": n for k, n in buckets(since[rows], WAIT_BUCKETS).items()}
    return _counts(counts)


def awaited(backlog: Frame, threads: Frame, at: datetime) -> tuple[NDArray[np.bool_], F64]:
    """Per backlog row (rowid, created_at): whether the agent is awaited, and the seconds
    since the latest public agent message before ``at`` (since created_at when none).
    ``threads`` holds public customer and agent messages (ticket, at, agent) of at least
    those tickets; only those before ``at`` are read."""
    moment = float(to_epoch(at) or 0)
    before = threads["at"] < moment
    ticket, when = threads["ticket"][before], threads["at"][before]
    agent = threads["agent"][before] > 0
    last_agent = _latest(backlog["rowid"], ticket[agent], when[agent])
    last_customer = _latest(backlog["rowid"], ticket[~agent], when[~agent])
    # the customer wrote last, or nobody did: the agent is awaited (an agent message in the
    # same second answers the customer's, as in response_time)
    on_agent = np.isnan(last_agent) | (last_customer > last_agent)
    since = moment - np.where(np.isnan(last_agent), backlog["created_at"], last_agent)
    return on_agent, since


def _latest(rowid: F64, ticket: F64, at: F64) -> F64:
    """Per ``rowid``, the latest ``at`` of its ``ticket`` rows; NaN where it has none."""
    if len(ticket) == 0:
        return np.full(len(rowid), np.nan)
    order = np.lexsort((at, ticket))
    ticket, at = ticket[order], at[order]
    last = np.r_[ticket[1:] != ticket[:-1], True]
    keys, latest = ticket[last], at[last]
    where = np.minimum(np.searchsorted(keys, rowid), len(keys) - 1)
    return np.where(keys[where] == rowid, latest[where], np.nan)


def unique_customers(created: Frame) -> Entry:
    return _count(len({r for r in created["requester_id"].tolist() if r is not None}))


def repeat_contact_rate(solved: Frame) -> Entry:
    judged = ~np.isnan(solved["repeat"])
    repeat = solved["repeat"] > 0
    entry = rate(
        int(np.count_nonzero(repeat)),
        int(np.count_nonzero(judged)),
        "no ticket solved in the window has a requester email and its repeat window over by now",
    )
    if entry["value"] is not None:
        entry["cross_channel"] = int(np.count_nonzero(solved["repeat_cross"] > 0))
        entry["pending"] = int(np.count_nonzero(solved["pending"] > 0))
    return entry


def time_to_clear(
    backlog: int, created: Frame, solved: Frame, end: datetime, tz: ZoneInfo
) -> Entry:
    """Days to clear ``backlog`` at the net rate of the 14 local days before ``end``'s date
    (``created`` and ``solved`` hold at least the tickets created and solved in them)."""
    first, last = (float(to_epoch(x) or 0) for x in clearing_days(end, tz))
    made = np.count_nonzero((created["created_at"] >= first) & (created["created_at"] < last))
    done = np.count_nonzero((solved["solved_at"] >= first) & (solved["solved_at"] < last))
    net = (int(done) - int(made)) / CLEARING_DAYS
    if net <= 0:
        return _null(f"backlog growing by {max(-net, 0.0):.2f} a day", "days")
    return {"value": backlog / net, "backlog": backlog, "net_per_day": net, "unit": "days"}
