"""An independent reference for the KPI definitions of docs/kpis.md, and test helpers.

Written from the doc alone, with plain loops over the record dataclasses of
``cskpi.connectors.base`` (no SQL, no numpy), so the engine in ``cskpi.core.kpis.report`` can be
checked against it. Stored times are integer Unix seconds, as in the store; ids are
``"{connector}:{external_id}"``. ``reference_kpis`` returns the report as plain data:
``{"kpis": {key: entry}, "by": None | {"dimension": d, "groups": [{"key", "label", "kpis"}]}}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import holidays as holiday_calendars
import pytest
from sqlalchemy import Engine, text

from cskpi.connectors import base
from cskpi.core.config.periods import Window
from cskpi.core.store.engine import write_transaction
from cskpi.core.store.schema import to_epoch
from cskpi.core.store.upserts import upsert_records

Entry = dict[str, Any]
Report = dict[str, Any]
PerConnector = Mapping[str, Sequence[Any]]

UNSOLVED = ("new", "open", "pending", "on_hold")
DONE = ("solved", "closed")
RATED_KINDS = ("csat", "nps", "ces", "esat")
AGE_BUCKETS = ("<1d", "1-3d", "3-7d", ">7d")
DAY = 86400
NONE_LABEL = "(none)"
PRESENT_SLACK = 60  # seconds an instant may lie behind the wall clock and be the present


@dataclass(frozen=True)
class Account:
    """An organization as the store holds it after ``cskpi import accounts``."""

    external_id: str
    name: str | None = None
    mrr: float | None = None
    created_at: datetime | None = None
    churned_at: datetime | None = None


# --- the stored form: prefixed ids, epoch seconds ----------------------------------------


@dataclass(frozen=True)
class _Ticket:
    id: str
    connector: str
    status: str
    priority: str | None
    channel: str | None
    type: str | None
    tags: tuple[str, ...]
    organization_id: str | None
    assignee_id: str | None
    group_id: str | None
    created: int
    first_reply: int | None
    first_solved: int | None
    solved: int | None
    agent_replies: int
    reopens: int
    group_changes: int
    deleted: bool
    requester_id: str | None = None
    assignee_changes: int = 0
    handling: int | None = None  # the vendor's handling_time (vendor_metric)


@dataclass(frozen=True)
class _Message:
    ticket_id: str
    role: str
    public: bool
    at: int
    author_id: str | None = None


@dataclass(frozen=True)
class _Rating:
    connector: str
    ticket_id: str | None
    kind: str
    score: float | None  # None: a survey offered, not answered
    scale_min: float
    scale_max: float
    agent_id: str | None
    at: int
    offered: int | None = None


@dataclass(frozen=True)
class _Org:
    connector: str
    mrr: float | None
    created: int | None
    churned: int | None
    id: str = ""


def _prefix(connector: str, value: str | None) -> str | None:
    return None if value is None else f"{connector}:{value}"


def _epoch(value: datetime | None) -> int | None:
    return to_epoch(value)


def _store_ticket(c: str, t: base.Ticket) -> _Ticket:
    created = _epoch(t.created_at)
    assert created is not None
    return _Ticket(
        f"{c}:{t.external_id}",
        c,
        t.status,
        t.priority,
        t.channel,
        t.type,
        tuple(t.tags),
        _prefix(c, t.organization_id),
        _prefix(c, t.assignee_id),
        _prefix(c, t.group_id),
        created,
        _epoch(t.first_reply_at),
        _epoch(t.first_solved_at),
        _epoch(t.solved_at),
        t.agent_replies,
        t.reopens,
        t.group_changes,
        t.deleted,
        _prefix(c, t.requester_id),
        t.assignee_changes,
    )


def _store_rating(c: str, r: base.Rating) -> _Rating:
    at = _epoch(r.rated_at)
    assert at is not None
    return _Rating(
        c,
        _prefix(c, r.ticket_id),
        r.kind,
        None if r.score is None else float(r.score),
        float(r.scale_min),
        float(r.scale_max),
        _prefix(c, r.agent_id),
        at,
        _epoch(r.offered_at),
    )


def _store_message(c: str, m: base.Message) -> _Message:
    at = _epoch(m.created_at)
    assert at is not None
    return _Message(f"{c}:{m.ticket_id}", m.author_role, m.public, at, _prefix(c, m.author_id))


def _wanted(connector: str, connectors: Sequence[str]) -> bool:
    return not connectors or connector in connectors


# --- the evaluation scope ------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    start: float
    end: float
    now: float
    ctx: Any  # cskpi.core.kpis.report.KpiContext: timezone, business, sla, escalation_tags, costs
    wall: float  # the wall clock: whether `at` is the real present
    history: Mapping[str, Sequence[tuple[int, str]]]  # ticket id -> (at, status) changes
    split_by: str | None = None  # set inside a group: cost and churn are then not split
    # the whole store, whatever the connector filter or group: repeat contacts look here
    everyone: Sequence[_Ticket] = ()
    emails: Mapping[str, str] = field(default_factory=dict)  # person id -> email

    @property
    def at(self) -> float:
        return min(self.end, self.now)

    @property
    def live(self) -> bool:
        return self.at >= self.wall - PRESENT_SLACK

    def in_w(self, moment: float | None) -> bool:
        return moment is not None and self.start <= moment < self.end


def _created(tickets: Iterable[_Ticket], s: _Scope) -> list[_Ticket]:
    return [t for t in tickets if s.in_w(t.created)]


def _solved(tickets: Iterable[_Ticket], s: _Scope) -> list[_Ticket]:
    return [t for t in tickets if t.status in DONE and s.in_w(t.solved)]


def _backlog(tickets: Iterable[_Ticket], s: _Scope) -> list[_Ticket]:
    return [t for t in tickets if t.created < s.at and _unsolved_at(t, s)]


def _unsolved_at(t: _Ticket, s: _Scope) -> bool:
    if s.live:
        return t.status in UNSOLVED
    if t.status in DONE and t.solved is not None and t.solved < s.at:
        return False  # solved_at is the latest solve: it has stayed solved since
    if t.first_solved is None and t.solved is None:
        return True  # never solved
    known = [(at, status) for at, status in s.history.get(t.id, ()) if at <= s.at]
    if known:
        latest = max(at for at, _ in known)
        statuses = {status for at, status in known if at == latest}
        return not statuses & set(DONE)  # a solve or close in the same second wins
    solved = t.first_solved if t.first_solved is not None else t.solved
    return solved is None or solved >= s.at


# --- entries -----------------------------------------------------------------------------


def _null(unit: str, reason: str) -> Entry:
    return {"value": None, "reason": reason, "unit": unit}


def _count(value: Any) -> Entry:
    return {"value": value, "unit": "count"}


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    if lo >= len(ordered) - 1:
        return float(ordered[-1])
    return ordered[lo] + (h - lo) * (ordered[lo + 1] - ordered[lo])


def _duration(values: Iterable[float], reason: str = "no tickets in the population") -> Entry:
    ordered = sorted(values)
    if not ordered:
        return _null("s", reason)
    median = percentile(ordered, 0.5)
    return {
        "value": median,
        "median": median,
        "p90": percentile(ordered, 0.9),
        "mean": sum(ordered) / len(ordered),
        "n": len(ordered),
        "unit": "s",
    }


def _rate(numerator: int, denominator: int, reason: str = "no tickets in the population") -> Entry:
    if denominator == 0:
        return _null("%", reason)
    return {
        "value": 100 * numerator / denominator,
        "numerator": numerator,
        "denominator": denominator,
        "unit": "%",
    }


# --- business time, computed from the calendar's own settings ----------------------------


def _day_intervals(cal: Any, day: date, closed: set[date]) -> list[tuple[int, int]]:
    if day in closed:
        return []
    midnight = datetime.combine(day, time())
    return [
        (
            int((midnight + start).replace(tzinfo=cal.tz).timestamp()),
            int((midnight + end).replace(tzinfo=cal.tz).timestamp()),
        )
        for start, end in cal.week[day.weekday()]
    ]


def _closed_days(cal: Any, first: date, last: date) -> set[date]:
    closed = set(cal.holidays)
    if cal.country is not None:
        years = range(first.year, last.year + 1)
        closed |= set(holiday_calendars.country_holidays(cal.country, years=years))
    return closed


def business_seconds(cal: Any, a: int, b: int) -> int:
    """Open seconds of [a, b) (negative when b < a: durations are not clamped)."""
    if b < a:
        return -business_seconds(cal, b, a)
    first = datetime.fromtimestamp(a, cal.tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(b, cal.tz).date() + timedelta(days=1)
    closed = _closed_days(cal, first, last)
    intervals: list[tuple[int, int]] = []
    day = first
    while day <= last:
        intervals += _day_intervals(cal, day, closed)
        day += timedelta(days=1)
    total, covered = 0, a  # count overlapping wall-clock intervals once
    for lo, hi in sorted(intervals):
        lo, hi = max(lo, covered, a), min(hi, b)
        if hi > lo:
            total += hi - lo
            covered = hi
    return total


# --- ticket KPIs -------------------------------------------------------------------------


def _counts(tickets: list[_Ticket], s: _Scope) -> dict[str, Entry]:
    created, solved, backlog = _created(tickets, s), _solved(tickets, s), _backlog(tickets, s)
    ages = dict.fromkeys(AGE_BUCKETS, 0)
    for t in backlog:
        age = s.at - t.created
        bucket = 0 if age < DAY else 1 if age < 3 * DAY else 2 if age < 7 * DAY else 3
        ages[AGE_BUCKETS[bucket]] += 1
    grid = [[0] * 24 for _ in range(7)]
    for t in created:
        local = datetime.fromtimestamp(t.created, s.ctx.timezone)
        grid[local.weekday()][local.hour] += 1
    return {
        "tickets_created": _count(len(created)),
        "tickets_solved": _count(len(solved)),
        "backlog": _count(len(backlog)),
        "backlog_change": _count(len(created) - len(solved)),
        "backlog_age": _count(ages),
        "submissions_by_hour": _count(grid),
    }


def _durations(tickets: list[_Ticket], s: _Scope) -> dict[str, Entry]:
    replied = [t for t in _created(tickets, s) if t.first_reply is not None]
    solved = _solved(tickets, s)
    first = [(t.created, t.first_reply) for t in replied if t.first_reply is not None]
    resolution = [(t.created, t.solved) for t in solved if t.solved is not None]
    out = {
        "first_response_time": _duration(b - a for a, b in first),
        "resolution_time": _duration(b - a for a, b in resolution),
    }
    cal = s.ctx.business
    for key, pairs in (
        ("first_response_time_business", first),
        ("resolution_time_business", resolution),
    ):
        if cal is None:
            out[key] = _null("s", "no [business_hours] configured")
        else:
            out[key] = _duration(business_seconds(cal, a, b) for a, b in pairs)
    return out


def _response_time(
    tickets: list[_Ticket], messages: Mapping[str, list[_Message]], s: _Scope
) -> Entry:
    waits: list[int] = []
    seen_any = False
    for t in _created(tickets, s):
        thread = messages.get(t.id, [])
        seen_any = seen_any or bool(thread)
        replies = [m.at for m in thread if m.role == "agent" and m.public]
        for m in thread:
            if m.role == "customer" and m.public:
                after = [r for r in replies if r >= m.at]
                if after:
                    waits.append(min(after) - m.at)
    if not seen_any:
        return _null("s", "no message events")
    return _duration(waits, "no customer message answered by an agent")


def _solved_rates(tickets: list[_Ticket], s: _Scope) -> dict[str, Entry]:
    solved = _solved(tickets, s)
    replied = [t for t in solved if t.agent_replies >= 1]
    escalation_tags = set(s.ctx.escalation_tags)
    replies = sum(t.agent_replies for t in solved)
    return {
        "fcr_rate": _rate(
            sum(t.agent_replies == 1 and t.reopens == 0 for t in replied), len(replied)
        ),
        "reopen_rate": _rate(sum(t.reopens >= 1 for t in solved), len(solved)),
        "escalation_rate": _rate(
            sum(t.group_changes >= 1 or bool(escalation_tags & set(t.tags)) for t in solved),
            len(solved),
        ),
        "agent_replies_per_solved": (
            {
                "value": replies / len(solved),
                "numerator": replies,
                "denominator": len(solved),
                "unit": "ratio",
            }
            if solved
            else _null("ratio", "no tickets solved")
        ),
    }


def _elapsed(s: _Scope, a: int, b: float) -> float:
    # The config refuses `[sla] business_hours = true` without a `[business_hours]` table.
    if s.ctx.sla.business_hours and s.ctx.business is not None:
        return business_seconds(s.ctx.business, a, int(b))
    return b - a


def _sla(tickets: list[_Ticket], s: _Scope) -> dict[str, Entry]:
    if s.ctx.sla is None:
        reason = "no [sla] configured"
        return {"sla_first_response": _null("%", reason), "sla_resolution": _null("%", reason)}
    first = [0, 0]  # met, counted
    resolution = [0, 0]
    for t in _created(tickets, s):
        _sla_one(s, s.ctx.sla.first_response.target(t.priority), t.created, t.first_reply, first)
        solved = t.solved if t.status in DONE else None
        _sla_one(s, s.ctx.sla.resolution.target(t.priority), t.created, solved, resolution)
    reason = "no ticket with a target"
    return {
        "sla_first_response": _rate(first[0], first[1], reason),
        "sla_resolution": _rate(resolution[0], resolution[1], reason),
    }


def _sla_one(
    s: _Scope, target: timedelta | None, created: int, done: int | None, tally: list[int]
) -> None:
    if target is None:
        return
    limit = target.total_seconds()
    if done is not None and done <= s.now:
        tally[0] += _elapsed(s, created, done) <= limit
        tally[1] += 1
    elif _elapsed(s, created, s.now) > limit:  # still waiting at now, known or not since
        tally[1] += 1


# --- ratings -----------------------------------------------------------------------------


def is_positive(score: float, scale_min: float, scale_max: float) -> bool:
    """Top two boxes on scales of 4 points or more; the top box on 2- and 3-point scales."""
    points = scale_max - scale_min + 1
    return score >= scale_max - 1 if points >= 4 else score >= scale_max


def _answered(r: _Rating, s: _Scope) -> bool:
    """Counted by the KPIs over ratings: a score given in W, on a scale with a span."""
    return r.score is not None and s.in_w(r.at) and r.scale_max > r.scale_min


def _offered(r: _Rating, s: _Scope) -> bool:
    """A csat survey offered in W (answered at or after its offer, so never before W)."""
    return r.kind == "csat" and s.in_w(r.offered) and r.at >= s.start and r.scale_max > r.scale_min


def _response_rate(ratings: list[_Rating], s: _Scope) -> Entry:
    offered = [r for r in ratings if _offered(r, s)]
    done = [r for r in offered if r.score is not None and r.at <= s.now]
    return _rate(len(done), len(offered), "no csat survey offered in the window is recorded")


def _handle_time(tickets: list[_Ticket], s: _Scope) -> Entry:
    handled = [t.handling for t in _solved(tickets, s) if t.handling is not None]
    return _duration(handled, "no vendor handling time")


def _ratings(ratings: list[_Rating], s: _Scope) -> dict[str, Entry]:
    # A scale without a span (scale_min >= scale_max) is no scale: such ratings count nowhere.
    rated = [r for r in ratings if _answered(r, s)]
    csat = [r for r in rated if r.kind == "csat"]
    nps = [r.score for r in rated if r.kind == "nps" and r.score is not None]
    ces = [r for r in rated if r.kind == "ces"]
    out = {
        "csat": _null("%", "no csat ratings"),
        "nps": _null("score", "no nps ratings"),
        "ces": _null("score", "no ces ratings"),
    }
    if csat:
        good = sum(is_positive(r.score, r.scale_min, r.scale_max) for r in csat)
        norm = [(r.score - r.scale_min) / (r.scale_max - r.scale_min) for r in csat]
        out["csat"] = {
            "value": 100 * good / len(csat),
            "numerator": good,
            "n": len(csat),
            "mean": sum(norm) / len(norm),
            "unit": "%",
        }
    if nps:
        promoters = sum(x >= 9 for x in nps)
        detractors = sum(x <= 6 for x in nps)
        out["nps"] = {
            "value": 100 * (promoters - detractors) / len(nps),
            "n": len(nps),
            "promoters": promoters,
            "passives": len(nps) - promoters - detractors,
            "detractors": detractors,
            "unit": "score",
        }
    if ces:
        good = sum(is_positive(r.score, r.scale_min, r.scale_max) for r in ces)
        out["ces"] = {
            "value": sum(r.score for r in ces) / len(ces),
            "n": len(ces),
            "top2": 100 * good / len(ces),
            "unit": "score",
        }
    return out


# --- money and accounts ------------------------------------------------------------------


def _month_share(s: _Scope) -> float:
    """Σ over local calendar months M touching W of seconds(W ∩ M) / seconds(M)."""
    tz = s.ctx.timezone
    first = datetime.fromtimestamp(s.start, tz)
    year, month = first.year, first.month
    share = 0.0
    while True:
        lo = datetime(year, month, 1, tzinfo=tz).timestamp()
        if lo >= s.end:
            return share
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        hi = datetime(year, month, 1, tzinfo=tz).timestamp()
        share += max(0.0, min(s.end, hi) - max(s.start, lo)) / (hi - lo)


def _active(orgs: list[_Org], s: _Scope) -> list[_Org]:
    return [
        o
        for o in orgs
        if (o.mrr or 0) > 0
        and (o.created is None or o.created < s.start)
        and (o.churned is None or o.churned >= s.start)
    ]


def _money(tickets_solved: int, orgs: list[_Org], s: _Scope) -> dict[str, Entry]:
    costs = s.ctx.costs
    currency = costs.currency if costs is not None else "USD"
    active = _active(orgs, s)
    if s.split_by is not None:
        reason = f"not split by {s.split_by}"
        return {
            "cost_per_ticket": _null(currency, reason),
            "cost_revenue_ratio": _null("%", reason),
            "churn_rate": _null("%", reason),
        }
    out = {
        "churn_rate": _rate(
            sum(s.in_w(o.churned) for o in active),
            len(active),
            "no paying organizations at the start",
        )
    }
    if costs is None:
        out["cost_per_ticket"] = _null(currency, "no [costs] configured")
        out["cost_revenue_ratio"] = _null("%", "no [costs] configured")
        return out
    share = _month_share(s)
    cost = costs.monthly_support_cost * share
    out["cost_per_ticket"] = (
        {
            "value": cost / tickets_solved,
            "cost": cost,
            "tickets_solved": tickets_solved,
            "unit": currency,
        }
        if tickets_solved
        else _null(currency, "no tickets solved")
    )
    monthly = costs.monthly_revenue
    if monthly is None:
        monthly = sum(o.mrr or 0 for o in active)
    revenue = monthly * share
    out["cost_revenue_ratio"] = (
        {"value": 100 * cost / revenue, "cost": cost, "revenue": revenue, "unit": "%"}
        if revenue
        else _null("%", "no revenue")
    )
    return out


# --- SPEC §6: the working views ------------------------------------------------------------

STATUS_ORDER = ("new", "open", "pending", "on_hold", "solved", "closed")  # later wins a second
HOUR = 3600


def _split(
    values: Iterable[float], edges: Sequence[tuple[str, float]], rest: str
) -> dict[str, int]:
    """Counts per half-open bucket: the first label whose upper edge is above the value."""
    out = dict.fromkeys([label for label, _ in edges] + [rest], 0)
    for v in values:
        out[next((label for label, upper in edges if v < upper), rest)] += 1
    return out


def _parts(parts: Mapping[str, list[float]], reason: str) -> Entry:
    entries = {name: _duration(values) for name, values in parts.items()}
    n = len(next(iter(parts.values())))
    if n == 0:
        return _null("s", reason)
    return {
        "value": {name: e["median"] for name, e in entries.items()},
        "median": {name: e["median"] for name, e in entries.items()},
        "p90": {name: e["p90"] for name, e in entries.items()},
        "mean": {name: e["mean"] for name, e in entries.items()},
        "n": n,
        "unit": "s",
    }


def _solved_views(tickets: list[_Ticket], s: _Scope) -> dict[str, Entry]:
    solved = _solved(tickets, s)
    stamped = [t for t in solved if t.first_solved is not None]
    pairs = [(t.created, t.first_solved) for t in stamped if t.first_solved is not None]
    out = {"first_resolution_time": _duration(b - a for a, b in pairs)}
    cal = s.ctx.business
    out["first_resolution_time_business"] = (
        _null("s", "no [business_hours] configured")
        if cal is None
        else _duration(business_seconds(cal, a, b) for a, b in pairs)
    )
    both = [t for t in solved if t.first_reply is not None and t.first_solved is not None]
    stages = _parts(
        {
            "to_first_reply": [t.first_reply - t.created for t in both],  # type: ignore[operator]
            "to_first_solve": [max(0, t.first_solved - t.first_reply) for t in both],  # type: ignore[operator]
            "after_reopen": [t.solved - t.first_solved for t in both],  # type: ignore[operator]
        },
        "no stages",
    )
    if stages["value"] is not None:
        stages["unreplied"] = sum(t.first_reply is None for t in solved)
    out["resolution_stages"] = stages
    out["time_in_status"] = _time_in_status(solved, s)
    reassigned = _rate(sum(t.assignee_changes >= 1 for t in solved), len(solved))
    if solved:
        reassigned["mean_assignees"] = 1 + sum(t.assignee_changes for t in solved) / len(solved)
    out["reassignment_rate"] = reassigned
    touches = {"0": 0, "1": 0, "2": 0, "3+": 0}
    for t in solved:
        touches[str(t.agent_replies) if t.agent_replies < 3 else "3+"] += 1
    out["touches"] = _count(touches)
    out["resolution_distribution"] = _count(
        _split(
            (t.solved - t.created for t in solved if t.solved is not None),
            [("<4h", 4 * HOUR), ("4-24h", DAY), ("1-3d", 3 * DAY), ("3-7d", 7 * DAY)],
            ">7d",
        )
    )
    out["repeat_contact_rate"] = _repeat_contacts(solved, s)
    return out


def _time_in_status(solved: list[_Ticket], s: _Scope) -> Entry:
    spent: dict[str, list[float]] = {name: [] for name in UNSOLVED}
    for t in solved:
        changes = s.history.get(t.id)
        if not changes or t.solved is None:
            continue
        totals = dict.fromkeys(UNSOLVED, 0.0)
        status, since = "new", -math.inf
        ordered = sorted(changes, key=lambda c: (c[0], STATUS_ORDER.index(c[1])))
        for moment, after in [*ordered, (math.inf, "")]:
            lo, hi = max(since, t.created), min(moment, t.solved)
            if status in totals and hi > lo:
                totals[status] += hi - lo
            status, since = after, moment
        for name in UNSOLVED:
            spent[name].append(totals[name])
    return _parts(spent, "no ticket with status history")


def _email(person_id: str | None, s: _Scope) -> str:
    address = s.emails.get(person_id or "")
    return address.strip().lower() if address else ""


def _repeat_contacts(solved: list[_Ticket], s: _Scope) -> Entry:
    window = s.ctx.repeat_window.total_seconds()
    judged = repeats = cross = pending = 0
    for t in solved:
        email = _email(t.requester_id, s)
        if not email or t.solved is None:
            continue
        if t.solved + window > s.now:
            pending += 1
            continue
        judged += 1
        later = [
            u
            for u in s.everyone
            if u.id != t.id
            and _email(u.requester_id, s) == email
            and t.solved < u.created <= t.solved + window
        ]
        repeats += bool(later)
        cross += any(u.connector != t.connector or u.channel != t.channel for u in later)
    entry = _rate(repeats, judged)
    if judged:
        entry |= {"cross_channel": cross, "pending": pending}
    return entry


def _created_views(tickets: list[_Ticket], s: _Scope) -> dict[str, Entry]:
    created = _created(tickets, s)
    answered = [t.first_reply - t.created for t in created
                if t.first_reply is not None and t.first_reply <= s.now]  # fmt: skip
    first = _split(
        answered, [("<1h", HOUR), ("1-4h", 4 * HOUR), ("4-8h", 8 * HOUR), ("8-24h", DAY)], ">24h"
    )
    first["unanswered"] = len(created) - len(answered)
    return {
        "first_response_distribution": _count(first),
        "unique_customers": _count(len({t.requester_id for t in created if t.requester_id})),
    }


def _activity(messages: Iterable[_Message], s: _Scope) -> dict[str, Entry]:
    mine = [m for m in messages if m.role == "agent" and s.in_w(m.at)]
    public = [m for m in mine if m.public]
    return {
        "public_replies": _count(len(public)),
        "internal_notes": _count(len(mine) - len(public)),
        "tickets_touched": _count(len({m.ticket_id for m in mine})),
        "active_agents": _count(len({m.author_id for m in public if m.author_id is not None})),
    }


def _awaiting(tickets: list[_Ticket], messages: Mapping[str, list[_Message]], s: _Scope) -> Entry:
    edges = [("<1h", HOUR), ("1-4h", 4 * HOUR), ("4-24h", DAY), ("1-3d", 3 * DAY)]
    waits: dict[str, list[float]] = {"agent": [], "customer": []}
    for t in _backlog(tickets, s):
        thread = [m for m in messages.get(t.id, [])
                  if m.public and m.role in ("customer", "agent") and m.at < s.at]  # fmt: skip
        agent = max((m.at for m in thread if m.role == "agent"), default=None)
        customer = max((m.at for m in thread if m.role == "customer"), default=None)
        awaited = (
            "agent" if agent is None or (customer is not None and customer > agent) else "customer"
        )
        waits[awaited].append(s.at - (agent if agent is not None else t.created))
    counts: dict[str, int] = {}
    for who, values in waits.items():
        counts |= {f"{who}.{k}": n for k, n in _split(values, edges, ">3d").items()}
    return _count(counts)


def _time_to_clear(tickets: list[_Ticket], backlog: int, s: _Scope) -> Entry:
    tz = s.ctx.timezone
    last_day = datetime.fromtimestamp(s.end, tz).date()
    first = datetime.combine(last_day - timedelta(days=14), time(), tz).timestamp()
    last = datetime.combine(last_day, time(), tz).timestamp()
    made = sum(first <= t.created < last for t in tickets)
    done = sum(t.status in DONE and t.solved is not None and first <= t.solved < last
               for t in tickets)  # fmt: skip
    net = (done - made) / 14
    if net <= 0:
        return _null("days", "backlog growing")
    return {"value": backlog / net, "backlog": backlog, "net_per_day": net, "unit": "days"}


def _esat(ratings: list[_Rating], s: _Scope) -> Entry:
    rated = [r for r in ratings if r.kind == "esat" and _answered(r, s)]
    if not rated:
        return _null("score", "no esat ratings")
    scores = [(r.score, r) for r in rated if r.score is not None]
    good = sum(is_positive(score, r.scale_min, r.scale_max) for score, r in scores)
    return {
        "value": sum(score for score, _ in scores) / len(rated),
        "n": len(rated),
        "top2": 100 * good / len(rated),
        "unit": "score",
    }


# --- the report --------------------------------------------------------------------------


def _kpis(
    tickets: list[_Ticket],
    messages: Mapping[str, list[_Message]],
    ratings: list[_Rating],
    orgs: list[_Org],
    s: _Scope,
    activity: Iterable[_Message] | None = None,
) -> dict[str, Entry]:
    """Every KPI over these tickets and ratings; ``activity``: the messages the activity KPIs
    count (default every message of ``tickets``)."""
    out = _counts(tickets, s)
    out |= _durations(tickets, s)
    out["response_time"] = _response_time(tickets, messages, s)
    out |= _solved_rates(tickets, s)
    out |= _sla(tickets, s)
    out |= _ratings(ratings, s)
    out |= _money(out["tickets_solved"]["value"], orgs, s)
    out |= _solved_views(tickets, s)
    out |= _created_views(tickets, s)
    out["esat"] = _esat(ratings, s)
    if activity is None:
        activity = [m for t in tickets for m in messages.get(t.id, [])]
    out |= _activity(activity, s)
    out["awaiting_reply"] = _awaiting(tickets, messages, s)
    out["backlog_time_to_clear"] = _time_to_clear(tickets, out["backlog"]["value"], s)
    out["handle_time"] = _handle_time(tickets, s)
    out["csat_response_rate"] = _response_rate(ratings, s)
    return out


def _ticket_keys(t: _Ticket, dimension: str) -> list[str | None]:
    if dimension == "tag":
        return list(dict.fromkeys(t.tags)) or [None]
    values = {
        "agent": t.assignee_id,
        "group": t.group_id,
        "channel": t.channel,
        "type": t.type,
        "priority": t.priority,
        "organization": t.organization_id,
        "connector": t.connector,
    }
    return [values[dimension]]


def _rating_keys(r: _Rating, dimension: str, by_id: Mapping[str, _Ticket]) -> list[str | None]:
    if dimension == "agent":
        return [r.agent_id]
    if dimension == "connector":
        return [r.connector]
    ticket = by_id.get(r.ticket_id) if r.ticket_id is not None else None
    return [None] if ticket is None else _ticket_keys(ticket, dimension)


@dataclass
class _Data:
    tickets: list[_Ticket] = field(default_factory=list)
    messages: dict[str, list[_Message]] = field(default_factory=dict)
    ratings: list[_Rating] = field(default_factory=list)
    orgs: list[_Org] = field(default_factory=list)
    # every stored ticket: a rating kept by --where (its rated agent) is grouped by its
    # ticket even when --where leaves that ticket out
    every_ticket: dict[str, _Ticket] = field(default_factory=dict)


def _groups(data: _Data, s: _Scope, dimension: str, labels: Mapping[str, str]) -> list[Entry]:
    by_id = data.every_ticket or {t.id: t for t in data.tickets}
    ticket_keys = {t.id: _ticket_keys(t, dimension) for t in data.tickets}
    rating_keys = [_rating_keys(r, dimension, by_id) for r in data.ratings]
    messages = [m for thread in data.messages.values() for m in thread]

    def message_keys(m: _Message) -> list[str | None]:
        """SPEC §6: by agent, a message is its author's; otherwise its ticket's."""
        return [m.author_id] if dimension == "agent" else ticket_keys[m.ticket_id]

    keys: set[str | None] = set()
    for t in _created(data.tickets, s) + _solved(data.tickets, s) + _backlog(data.tickets, s):
        keys.update(ticket_keys[t.id])
    for r, rk in zip(data.ratings, rating_keys, strict=True):
        if r.kind in RATED_KINDS and (
            (s.in_w(r.at) and r.scale_max > r.scale_min) or _offered(r, s)
        ):
            keys.update(rk)
    for m in messages:
        if m.role == "agent" and s.in_w(m.at):
            keys.update(message_keys(m))
    inner = replace(s, split_by=dimension)
    groups = []
    for key in sorted(keys, key=lambda k: (k is None, k or "")):
        tickets = [t for t in data.tickets if key in ticket_keys[t.id]]
        ratings = [r for r, rk in zip(data.ratings, rating_keys, strict=True) if key in rk]
        activity = [m for m in messages if key in message_keys(m)]
        none = "(unassigned)" if dimension == "agent" else NONE_LABEL
        label = none if key is None else labels.get(key) or key
        kpis = _kpis(tickets, data.messages, ratings, data.orgs, inner, activity)
        groups.append({"key": key, "label": label, "kpis": kpis})
    if dimension == "organization":  # SPEC §6: accounts by mrr, highest first
        mrr = {o.id: o.mrr or 0 for o in data.orgs}
        groups.sort(key=lambda g: (-mrr.get(g["key"], 0), g["key"] is None,
                                   str(g["label"]).casefold(), g["key"] or ""))  # fmt: skip
    return groups


def _load(
    tickets: PerConnector,
    messages: PerConnector,
    ratings: PerConnector,
    organizations: PerConnector,
    connectors: Sequence[str],
    metrics: PerConnector | None = None,
) -> _Data:
    data = _Data()
    handling = {  # the latest set of a ticket wins
        f"{c}:{m.ticket_id}": dict(m.metrics).get("handling_time")
        for c, records in (metrics or {}).items() for m in records
    }  # fmt: skip
    for c, records in tickets.items():
        if _wanted(c, connectors):
            data.tickets += [
                replace(t, handling=handling.get(t.id))
                for t in (_store_ticket(c, r) for r in records) if not t.deleted
            ]  # fmt: skip
    kept = {t.id for t in data.tickets}
    for c, records in messages.items():
        for m in (_store_message(c, r) for r in records):
            if m.ticket_id in kept:
                data.messages.setdefault(m.ticket_id, []).append(m)
    deleted = {
        f"{c}:{t.external_id}" for c, records in tickets.items() for t in records if t.deleted
    }
    for c, records in ratings.items():
        if _wanted(c, connectors):
            data.ratings += [
                r for r in (_store_rating(c, x) for x in records) if r.ticket_id not in deleted
            ]
    for c, accounts in organizations.items():
        if _wanted(c, connectors):
            data.orgs += [
                _Org(c, a.mrr, _epoch(a.created_at), _epoch(a.churned_at), f"{c}:{a.external_id}")
                for a in accounts
            ]
    return data


Where = Mapping[str, Sequence[str | None]]


def _ticket_has(t: _Ticket, dimension: str, value: str | None) -> bool:
    if dimension == "tag":
        return value in t.tags if value is not None else not t.tags
    if dimension == "status":
        return t.status == value
    return _ticket_keys(t, dimension)[0] == value


def _ticket_kept(t: _Ticket, where: Where) -> bool:
    return all(any(_ticket_has(t, d, v) for v in vs) for d, vs in where.items())


def _rating_kept(r: _Rating, where: Where, by_id: Mapping[str, _Ticket]) -> bool:
    """Agent: the rated agent; connector: the rating's; the rest through its ticket."""
    own = {"agent": r.agent_id, "connector": r.connector}
    if any(own[d] not in vs for d, vs in where.items() if d in own):
        return False
    rest = {d: vs for d, vs in where.items() if d not in own}
    ticket = by_id.get(r.ticket_id) if r.ticket_id is not None else None
    return not rest or (ticket is not None and _ticket_kept(ticket, rest))


def _filtered(data: _Data, where: Where) -> _Data:
    """``data`` as ``--where`` leaves it (SPEC §6 Filters)."""
    if not where:
        return data
    by_id = {t.id: t for t in data.tickets}
    kept = [t for t in data.tickets if _ticket_kept(t, where)]
    ids = {t.id for t in kept}
    own = {"organization": lambda o: o.id, "connector": lambda o: o.connector}
    orgs = [o for o in data.orgs
            if all(own[d](o) in vs for d, vs in where.items() if d in own)]  # fmt: skip
    return _Data(
        kept,
        {k: v for k, v in data.messages.items() if k in ids},
        [r for r in data.ratings if _rating_kept(r, where, by_id)],
        orgs,
        by_id,
    )


def _history(changes: PerConnector) -> dict[str, list[tuple[int, str]]]:
    """Each ticket's status changes as stored: one per ticket, instant and status."""
    out: dict[str, set[tuple[int, str]]] = {}
    for c, records in changes.items():
        for change in records:
            at = _epoch(change.at)
            assert at is not None
            out.setdefault(f"{c}:{change.ticket_id}", set()).add((at, change.status))
    return {ticket: sorted(pairs) for ticket, pairs in out.items()}


def _labels(
    dimension: str, people: PerConnector, groups: PerConnector, organizations: PerConnector
) -> dict[str, str]:
    source = {"agent": people, "group": groups, "organization": organizations}.get(dimension, {})
    return {
        f"{c}:{record.external_id}": record.name
        for c, records in source.items()
        for record in records
        if record.name
    }


def reference_kpis(
    tickets: PerConnector,
    messages: PerConnector,
    ratings: PerConnector,
    organizations: PerConnector,
    window: Window,
    ctx: Any,
    connectors: Sequence[str] = (),
    by: str | None = None,
    *,
    people: PerConnector | None = None,
    groups: PerConnector | None = None,
    changes: PerConnector | None = None,
    wall: datetime | None = None,
    metrics: PerConnector | None = None,
    where: Where | None = None,
) -> Report:
    """The report for ``window`` as docs/kpis.md defines it, with the wall clock at ``wall``
    (default now).

    Records are given per connector name (``{"zd": [Ticket, ...]}``), with their source
    ids unprefixed, exactly as they would be passed to ``upsert_records``; organizations as
    :class:`Account`; ``changes`` as ``StatusChange``. ``people`` and ``groups`` only provide
    labels for ``by``. ``where``: dimension -> stored values kept (None: no value).
    """
    data = _filtered(
        _load(tickets, messages, ratings, organizations, connectors, metrics), where or {}
    )
    everyone = [t for c, records in tickets.items() for t in (_store_ticket(c, r) for r in records)
                if not t.deleted]  # fmt: skip
    emails = {f"{c}:{p.external_id}": p.email
              for c, records in (people or {}).items() for p in records if p.email}  # fmt: skip
    s = _Scope(
        window.start.timestamp(), window.end.timestamp(), window.now.timestamp(), ctx,
        (wall or datetime.now(UTC)).timestamp(), _history(changes or {}),
        everyone=everyone, emails=emails,
        split_by="--where" if set(where or {}) - {"connector"} else None,
    )  # fmt: skip
    report: Report = {"kpis": _kpis(data.tickets, data.messages, data.ratings, data.orgs, s)}
    report["by"] = None
    if by is not None:
        labels = _labels(by, people or {}, groups or {}, organizations)
        report["by"] = {"dimension": by, "groups": _groups(data, s, by, labels)}
    return report


# --- datasets: one definition for both the store and the reference -----------------------


@dataclass
class Dataset:
    """Records per connector name, as a sync would hand them to ``upsert_records``."""

    tickets: dict[str, list[base.Ticket]] = field(default_factory=dict)
    messages: dict[str, list[base.Message]] = field(default_factory=dict)
    ratings: dict[str, list[base.Rating]] = field(default_factory=dict)
    organizations: dict[str, list[Account]] = field(default_factory=dict)
    people: dict[str, list[base.Person]] = field(default_factory=dict)
    groups: dict[str, list[base.Group]] = field(default_factory=dict)
    changes: dict[str, list[base.StatusChange]] = field(default_factory=dict)
    metrics: dict[str, list[base.VendorMetrics]] = field(default_factory=dict)

    def reference(
        self,
        window: Window,
        ctx: Any,
        connectors: Sequence[str] = (),
        by: str | None = None,
        wall: datetime | None = None,
        where: Where | None = None,
    ) -> Report:
        return reference_kpis(
            self.tickets,
            self.messages,
            self.ratings,
            self.organizations,
            window,
            ctx,
            connectors,
            by,
            people=self.people,
            groups=self.groups,
            changes=self.changes,
            wall=wall,
            metrics=self.metrics,
            where=where,
        )

    def store(self, engine: Engine) -> None:
        """Write every record with ``upsert_records``; mrr and dates as an import would."""
        with write_transaction(engine) as conn:
            for c, records in self._records().items():
                upsert_records(conn, c, records)
            update = text(
                "UPDATE organization SET mrr = :mrr, created_at = :created, "
                "churned_at = :churned WHERE id = :id"
            )
            for c, accounts in self.organizations.items():
                for a in accounts:
                    conn.execute(
                        update,
                        {
                            "mrr": a.mrr,
                            "created": _epoch(a.created_at),
                            "churned": _epoch(a.churned_at),
                            "id": f"{c}:{a.external_id}",
                        },
                    )

    def _records(self) -> dict[str, list[base.Record]]:
        out: dict[str, list[base.Record]] = {}
        kinds = (self.people, self.groups, self.tickets, self.messages, self.ratings, self.changes,
                 self.metrics)  # fmt: skip
        for kind in kinds:
            for c, records in kind.items():
                out.setdefault(c, []).extend(records)
        for c, accounts in self.organizations.items():
            out.setdefault(c, []).extend(
                base.Organization(a.external_id, a.name, a.created_at) for a in accounts
            )
        return out


# --- comparing reports -------------------------------------------------------------------


def report_as_data(report: Any) -> Report:
    """The engine's report object as the plain data ``reference_kpis`` returns."""
    by = report.by
    return {
        "kpis": report.kpis,
        "by": None
        if by is None
        else {
            "dimension": by.dimension,
            "groups": [{"key": g.key, "label": g.label, "kpis": g.kpis} for g in by.groups],
        },
    }


def differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where ``actual`` departs from ``expected``: numbers within 1e-9 (relative or
    absolute), the wording of a null entry's ``reason`` ignored (it must be a non-empty
    string)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _dict_differences(actual, expected, path)
    if isinstance(expected, list) and isinstance(actual, list):
        if len(actual) != len(expected):
            return [f"{path}: {len(actual)} items, expected {len(expected)}"]
        return [
            d
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for d in differences(a, e, f"{path}[{i}]")
        ]
    if _number(expected) and _number(actual):
        if actual == pytest.approx(expected, rel=1e-9, abs=1e-9):
            return []
    elif actual == expected and type(actual) is type(expected):
        return []
    return [f"{path}: {actual!r}, expected {expected!r}"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dict_differences(actual: dict[str, Any], expected: dict[str, Any], path: str) -> list[str]:
    if set(actual) != set(expected):
        return [f"{path}: keys {sorted(actual)}, expected {sorted(expected)}"]
    out = []
    for key, want in expected.items():
        got = actual[key]
        if key == "reason" and expected.get("value", 0) is None:
            if not (isinstance(got, str) and got):
                out.append(f"{path}.reason: {got!r}, expected a non-empty string")
            continue
        out += differences(got, want, f"{path}.{key}" if path else key)
    return out
