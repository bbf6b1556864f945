"""Loading the KPI populations of a window as numpy columns.

Each population is read with one indexed range query that returns only the columns its KPIs
need (never whole tickets), into numpy arrays; the formulas in ``formulas.py`` are then
array operations. With ``--by``, each row carries its group key (a ticket with several tags comes
once per tag).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine

from cskpi.core.config.periods import Window, midnight
from cskpi.core.kpis.backlog import conditions, is_present, unindexed
from cskpi.core.kpis.derived import repeat_contacts, status_code_sql, status_seconds
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.store.dialect import SQLITE, Sql, sql_for
from cskpi.core.store.reads.arrow import Columns
from cskpi.core.store.reads.columns import read, read_each, row_key_for
from cskpi.core.store.schema import to_epoch

UTC_ZONE = ZoneInfo("UTC")
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Obj = NDArray[np.object_]

# Group key of a ticket row (alias t) and of a rating row (alias r) for each dimension.
TICKET_KEY = {
    "agent": "t.assignee_id",
    "group": "t.group_id",
    "channel": "t.channel",
    "type": "t.type",
    "priority": "t.priority",
    "organization": "t.organization_id",
    "connector": "t.connector",
    "tag": "CAST(t.tags AS TEXT)",  # the stored JSON list: one row per tag made by _by_tag
}
RATING_KEY = {**TICKET_KEY, "agent": "r.agent_id", "connector": "r.connector"}


@dataclass(frozen=True)
class Frame:
    """Columns of one population; ``key`` is None when not grouping."""

    cols: dict[str, NDArray[Any]]
    key: Obj | None

    def __len__(self) -> int:
        return len(next(iter(self.cols.values()))) if self.cols else 0

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.cols[name]

    def where(self, mask: NDArray[np.bool_]) -> Frame:
        return Frame({k: v[mask] for k, v in self.cols.items()}, None)

    def take(self, rows: NDArray[np.intp]) -> Frame:
        return Frame({k: v[rows] for k, v in self.cols.items()}, None)


@dataclass(frozen=True)
class Populations:
    created: Frame  # tickets created in W
    solved: Frame  # tickets solved in W, with their time in each status and repeat contact
    backlog: Frame  # tickets in the backlog at ``at`` (backlog.py)
    ratings: Frame  # ratings given in W
    replies: Frame  # per answered customer message of a ticket created in W: ticket, seconds
    has_messages: bool  # whether the tickets created in W have any message at all
    organizations: Frame  # mrr, created_at, churned_at (no key: never grouped)
    # SPEC §6. Agent messages created in W (rowid, ticket, public, author); keyed by author
    # with --by agent, else by their ticket's key.
    activity: Frame
    # Public customer and agent messages before ``at`` of the backlog tickets (ticket, at,
    # agent): who is awaited (no key: restricted through the backlog's rowids).
    threads: Frame
    # Tickets created (rowid, created_at) and solved (rowid, solved_at) in the 14 local days
    # before ``to``'s date, for backlog_time_to_clear; they make no group of their own.
    days_created: Frame
    days_solved: Frame


def local_seconds(stamps: F64, tz: ZoneInfo) -> I64:
    """Epoch seconds shifted by the zone's offset at each instant. Offsets change at most
    every quarter hour, so each distinct quarter hour is converted once, not each row."""
    seconds = stamps.astype(np.int64)
    if len(seconds) == 0:
        return seconds
    quarters, index = np.unique(seconds // 900, return_inverse=True)
    offsets = np.array(
        [datetime.fromtimestamp(int(q) * 900, tz).utcoffset() or timedelta() for q in quarters],
        dtype="timedelta64[s]",
    ).astype(np.int64)
    shifted: I64 = seconds + offsets[index]
    return shifted


def hour_of_week(created_at: F64, tz: ZoneInfo) -> I64:
    """Local weekday x 24 + hour (0 = Monday 00:00)."""
    local = local_seconds(created_at, tz)
    weekday = (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday
    hours: I64 = weekday * 24 + local % 86400 // 3600
    return hours


def totals(p: Populations) -> Populations:
    """The window's populations without the grouping: with tags, a ticket (or a rating of a
    ticket) that came once per tag is counted once."""

    def once(frame: Frame) -> Frame:
        _, first = np.unique(frame["rowid"], return_index=True)
        return frame.take(np.sort(first))

    return Populations(
        once(p.created), once(p.solved), once(p.backlog), once(p.ratings),
        p.replies, p.has_messages, p.organizations, once(p.activity), p.threads,
        once(p.days_created), once(p.days_solved),
    )  # fmt: skip


def escalated(escalation_tags: Sequence[str], dialect: Sql) -> str:
    """SQL true when the ticket ``t`` is escalated: it changed groups, or one of its tags is
    one of ``escalation_tags`` (bound as ``escalation_params`` names them). The one rule,
    which the KPI engine's solved tickets and an alert's read alike."""
    return f"(t.group_changes > 0 OR {_escalation_tag(escalation_tags, dialect)})"


def escalation_params(escalation_tags: Sequence[str]) -> dict[str, str]:
    return {f"x{i}": tag for i, tag in enumerate(escalation_tags)}


def _escalation_tag(escalation_tags: Sequence[str], dialect: Sql) -> str:
    """SQL true when the ticket ``t`` has an escalation tag. Without any configured it is a
    constant: the tags of every solved ticket would be parsed to find none."""
    if not escalation_tags:
        return "FALSE"
    marks = ", ".join(f":x{i}" for i in range(len(escalation_tags)))
    elements = dialect.tag_table("t.tags", "x")
    exact = f"EXISTS (SELECT 1 FROM {elements} WHERE x.value IN ({marks}))"  # noqa: S608
    if not all(_plain(tag) for tag in escalation_tags):
        return exact
    # Parsing every solved ticket's tags is a noticeable share of a report (see
    # docs/performance.md); a plain tag (ASCII, nothing JSON escapes) stands in the stored
    # JSON text as it is, so a substring search rules out most tickets first.
    found = " OR ".join(dialect.contains("t.tags", f":x{i}") for i in range(len(escalation_tags)))
    return f"(({found}) AND {exact})"


def _plain(tag: str) -> bool:
    return tag.isascii() and tag.isprintable() and '"' not in tag and "\\" not in tag


@dataclass(frozen=True)
class _Query:
    window: Window
    connectors: Sequence[str]
    dimension: str | None
    escalation_tags: Sequence[str]
    dialect: Sql = SQLITE
    row_key: Callable[[str], str] = SQLITE.row_key  # as the reader wants it: row_key_for
    where: Where = EVERYTHING  # --where (filters.py)
    repeat_window: timedelta = timedelta(days=7)
    tz: ZoneInfo | None = None  # local days of backlog_time_to_clear (default the window's)
    days_from: datetime | None = None  # a series: the first bucket's end (series.py)

    @property
    def params(self) -> dict[str, Any]:
        w = self.window
        days = clearing_days(w.end, self.tz or w.tz)
        first = clearing_days(self.days_from or w.end, self.tz or w.tz)[0]
        params: dict[str, Any] = {"s": to_epoch(w.start), "e": to_epoch(w.end), "a": to_epoch(w.at),
                                  "rh": to_epoch(w.end + self.repeat_window),
                                  "ds": to_epoch(first), "de": to_epoch(days[1])}  # fmt: skip
        params.update({f"c{i}": name for i, name in enumerate(self.connectors)})
        params.update(escalation_params(self.escalation_tags))
        params.update(self.where.params())
        return params

    def connector_filter(self, alias: str) -> str:
        """`` AND …`` keeping the rows of ``alias`` (a ticket; ``r`` a rating, ``o`` an
        organization) that ``--connector`` and ``--where`` keep: every population query
        calls it, so every population is filtered alike (filters.py)."""
        where = self.where.sql(alias, self.dialect)
        if not self.connectors:
            return where
        names = ", ".join(f":c{i}" for i in range(len(self.connectors)))
        return f" AND {alias}.connector IN ({names}){where}"

    def ticket_key(self) -> str:
        """The select expression for a ticket row's group key."""
        return "NULL" if self.dimension is None else TICKET_KEY[self.dimension]

    def render(self, sql: str) -> str:
        """Fill in the dialect's spelling of the fragments named in braces."""
        return unindexed(
            sql.replace("{escalated}", escalated(self.escalation_tags, self.dialect))
            .replace("{t.rowid}", self.row_key("t"))
            .replace("{r.rowid}", self.row_key("r"))
            .replace("{m.rowid}", self.row_key("m")),
            self.dialect,
        )


def load(
    engine: Engine,
    window: Window,
    connectors: Sequence[str],
    dimension: str | None,
    escalation_tags: Sequence[str] = (),
    tz: ZoneInfo | None = None,
    *,
    prefer_arrow: bool = True,
    wall: datetime | None = None,
    repeat_window: timedelta = timedelta(days=7),
    native: bool = False,
    where: Where = EVERYTHING,
    days_from: datetime | None = None,
) -> Populations:
    """The window's populations, read in one snapshot; ``tz`` (default the window's) places
    submissions by hour and the local days of backlog_time_to_clear; ``wall`` is the wall
    clock that tells whether the backlog's instant is the real present (default now);
    ``repeat_window`` is ``[kpis] repeat_window``; ``where`` is --where; ``days_from``: the
    days of backlog_time_to_clear are read from the 14 before this instant's date on (a
    series). ``prefer_arrow=False`` reads through the DB-API driver. The created and solved
    tickets carry their vendor metrics as columns ``native.<name>`` (NaN where none):
    ``handling_time`` always, and with ``native`` every twin ``native.py`` compares, with
    ``first_agent`` (see ``VENDOR_COLUMNS``)."""
    tz = tz or window.tz
    row_key = row_key_for(engine, prefer_arrow=prefer_arrow)
    q = _Query(window, connectors, dimension, escalation_tags, sql_for(engine), row_key,
               where, repeat_window, tz, days_from)  # fmt: skip
    keyed: Keyed = "tag" if dimension == "tag" else dimension is not None
    live = is_present(window.at, wall)
    # What _derive reads comes first: cskpi derives from it while the SQLite reader reads
    # the rest (``read_each``); then the longest first (PostgreSQL's two connections).
    queries = [
        _solved(q),
        _history(q),
        _contacts(),
        _activity(q),
        _replies(q),
        _tickets(q, _CREATED_IN_W, _CREATED),
        _ratings(q),
        _backlog(q, live),
        _threads(q, live),
        _tickets(q, "t.created_at >= :ds AND t.created_at < :de", _t("rowid", "created_at")),
        _tickets(q, _SOLVED_IN_DAYS, _t("rowid", "solved_at")),
        _has_messages(q), _organizations(q), _vendor(q, native),
    ]  # fmt: skip
    sqls = [q.render(sql) for sql in queries]
    with closing(read_each(engine, sqls, q.params, prefer_arrow=prefer_arrow)) as results:
        solved, history, contacts = next(results), next(results), next(results)
        solved_frame = _frame(solved, _SOLVED, keyed)
        _derive(solved_frame, _frame(history, _HISTORY_COLS, False),
                _frame(contacts, _CONTACT_COLS, False), q)  # fmt: skip
        del history, contacts
        (activity, replies, created, ratings, backlog, threads, days_created, days_solved,
         messages, organizations, vendor) = results  # fmt: skip
    frame = _frame(created, _CREATED, keyed)
    frame.cols["hour_of_week"] = hour_of_week(frame["created_at"], tz)
    return Populations(
        created=with_vendor(frame, vendor),
        solved=with_vendor(solved_frame, vendor),
        backlog=_frame(backlog, _BACKLOG, keyed),
        ratings=_frame(ratings, _RATING_COLS, keyed),
        replies=_answers(replies),
        has_messages=bool(messages[0][0]),
        organizations=_frame(organizations, _ORGANIZATION_COLS, False),
        activity=_frame(activity, _ACTIVITY_COLS, keyed),
        threads=_frame(threads, _THREAD_COLS, False),
        days_created=_frame(days_created, _t("rowid", "created_at"), keyed),
        days_solved=_frame(days_solved, _t("rowid", "solved_at"), keyed),
    )


def clearing_days(end: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The 14 local calendar days before ``end``'s local date, as [from, to): the days whose
    net solving backlog_time_to_clear averages (``end``'s own day, whole or part, is not one
    of them; docs/kpis.md)."""
    last: date = end.astimezone(tz).date()
    return midnight(last - timedelta(days=14), tz), midnight(last, tz)


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    text: bool = False


_TEXT = ("priority", "status", "requester_id", "connector", "channel")


def _t(*names: str) -> tuple[Column, ...]:
    return tuple(
        Column(n, "{t.rowid}" if n == "rowid" else f"t.{n}", text=n in _TEXT) for n in names
    )


_CREATED_IN_W = "t.created_at >= :s AND t.created_at < :e"
_CREATED = _t("rowid", "created_at", "first_reply_at", "priority", "status", "solved_at",
              "requester_id")  # fmt: skip
_SOLVED = (
    *_t("rowid", "created_at", "solved_at", "agent_replies", "reopens", "group_changes"),
    Column("escalated", "{escalated}"),
    *_t("first_solved_at", "first_reply_at", "assignee_changes", "connector", "channel"),
    Column("email", "p.email", text=True),  # the requester's, for repeat contacts
)  # fmt: skip
_BACKLOG = _t("rowid", "created_at")
_REQUESTER = " LEFT JOIN person p ON p.id = t.requester_id"  # the solved tickets' ``email``
# SQLite is kept off the (status, created_at) backlog index, which would walk every
# solved ticket ever stored instead of the window's range of solved_at.
_SOLVED_IN_W = "{+t.status} IN ('solved', 'closed') AND t.solved_at >= :s AND t.solved_at < :e"
_SOLVED_IN_DAYS = "{+t.status} IN ('solved', 'closed') AND t.solved_at >= :ds AND t.solved_at < :de"


Keyed = bool | Literal["tag"]  # whether rows come with a group key; "tag": a list of them


def _frame(values: Columns, columns: Sequence[Column], keyed: Keyed) -> Frame:
    """Columns (the group key last) as the KPIs read them: numbers as float64 with NaN for
    NULL (epoch seconds and counts are exact in a double), text as objects."""
    cols = {
        c.name: _text(v) if c.text else np.asarray(v, dtype=np.float64)
        for c, v in zip(columns, values, strict=False)
    }
    if not keyed:
        return Frame(cols, None)
    frame = Frame(cols, _text(values[-1]))
    return by_tag(frame) if keyed == "tag" else frame


def by_tag(frame: Frame) -> Frame:
    """The rows once per tag of their ticket, the tag as the key, in the order stored; once
    with the key None for a ticket without tags (or a rating without a ticket).

    The key read is the stored JSON list. A store's tickets share a few hundred distinct
    lists, each parsed once here; joining each ticket to its parsed tags in SQL
    (json_array_elements_text, json_each) calls a set-returning function per ticket
    (docs/performance.md)."""
    assert frame.key is not None
    parsed: dict[str, list[str | None]] = {}
    lists = [
        [None] if text is None else parsed.get(text) or parsed.setdefault(text, _tags(text))
        for text in frame.key
    ]
    counts = np.fromiter((len(tags) for tags in lists), dtype=np.intp, count=len(lists))
    rows = np.repeat(np.arange(len(lists)), counts)
    keys = np.empty(len(rows), dtype=object)
    keys[:] = [tag for tags in lists for tag in tags]
    return Frame({name: column[rows] for name, column in frame.cols.items()}, keys)


def _tags(text: str) -> list[str | None]:
    """A stored tag list's tags as SQL's JSON functions give them as text; [None] for []."""
    tags = [t if t is None or isinstance(t, str) else json.dumps(t) for t in json.loads(text)]
    return tags or [None]


def _text(values: NDArray[Any]) -> Obj:
    """A text column as objects. A column with no text in it at all, only NULLs, comes from
    the reader as numbers (NaN): SQLite has no column types to say otherwise."""
    if values.dtype == object:
        return values
    return np.array([None if v != v else str(v) for v in values.tolist()], dtype=object)


def _tickets(q: _Query, condition: str, columns: Sequence[Column], joins: str = "") -> str:
    cols = ", ".join(c.sql for c in columns)
    sql = (
        f"SELECT {cols}, {q.ticket_key()} FROM ticket t{joins} "  # noqa: S608 (constants only)
        f"WHERE t.deleted = FALSE AND {condition}{q.connector_filter('t')}"
    )
    return sql


def _solved(q: _Query) -> str:
    """The tickets solved in W, with their requester's email (repeat_contact_rate)."""
    return _tickets(q, _SOLVED_IN_W, _SOLVED, _REQUESTER)


def _backlog(q: _Query, live: bool) -> str:
    return " UNION ALL ".join(_tickets(q, c, _BACKLOG) for c in conditions(live))


_RATING_COLS = (Column("rowid", "{r.rowid}"), Column("kind", "r.kind", text=True),
                Column("score", "r.score"),
                Column("scale_min", "r.scale_min"), Column("scale_max", "r.scale_max"),
                Column("rated_at", "r.rated_at"), Column("offered_at", "r.offered_at"))  # fmt: skip


def _ratings(q: _Query) -> str:
    key = "NULL" if q.dimension is None else RATING_KEY[q.dimension]
    if key.startswith("r."):
        # Only a deleted ticket can drop a rating, and the partial index ix_ticket_deleted
        # holds just those: probing it is cheaper than reading every rating's ticket
        # (docs/performance.md).
        source = "rating r"
        alive = _not_deleted(q, "r.ticket_id")
    else:  # the group key is the ticket's
        source = "rating r LEFT JOIN ticket t ON t.id = r.ticket_id"
        alive = "COALESCE(t.deleted, FALSE) = FALSE"
    # The answers given in W, and the csat surveys offered in W however answered (for
    # csat_response_rate): a survey is answered at or after its offer, so both lie at or
    # after the window's start on the rated_at index. A KPI over answers takes the rows
    # rated in W with a score (``answered`` in formulas.py).
    sql = (
        f"SELECT {{r.rowid}}, r.kind, r.score, r.scale_min, r.scale_max, "  # noqa: S608
        f"r.rated_at, r.offered_at, {key} FROM {source} WHERE r.rated_at >= :s "
        "AND (r.rated_at < :e OR (r.offered_at >= :s AND r.offered_at < :e AND "
        f"r.kind = 'csat')) AND {alive} "
        # a scale without a span is no scale
        "AND r.kind IN ('csat', 'nps', 'ces', 'esat') AND r.scale_max > r.scale_min"
        f"{q.connector_filter('r')}"
    )
    return sql


# What the vendor-metrics read gives per (ticket, metric): the ticket's row key, the
# metric's name and seconds, the ticket's reopens, and 1 when its first message (bot and
# system ones aside) is an agent's: the §7 reasons native.py gives a divergence.
VENDOR_COLUMNS = ("rowid", "name", "seconds", "reopens", "first_agent", "first_solved_at", "id")
ALWAYS_READ = ("handling_time",)  # handle_time is a KPI of every report
# With --native: the vendor metrics native.TWINS compares (a test keeps the two equal).
NATIVE_READ = (
    "reply_time", "reply_time_business", "first_resolution_time",
    "first_resolution_time_business", "full_resolution_time", "full_resolution_time_business",
    "handling_time",
)  # fmt: skip
_FIRST_AGENT = (
    "(SELECT m.author_role FROM message m WHERE m.ticket_id = t.id AND m.author_role IN "
    "('customer', 'agent') ORDER BY m.created_at, m.id LIMIT 1) = 'agent'"
)


def _vendor(q: _Query, native: bool) -> str:
    """The vendor metrics of the tickets created or solved in W: ``handling_time`` only,
    or with ``native`` every twin's (and the first-message flag, a probe per row)."""
    wanted = NATIVE_READ if native else ALWAYS_READ
    names = f" AND v.name IN ({', '.join(repr(n) for n in wanted)})"
    extra = f"{_FIRST_AGENT}, t.first_solved_at, t.id" if native else "NULL, NULL, NULL"
    return (
        f"SELECT {{t.rowid}}, v.name, v.seconds, t.reopens, {extra} "  # noqa: S608
        # CROSS JOIN: SQLite keeps ticket (the window's ranges) as the outer loop and probes
        # vendor_metric's key; PostgreSQL plans it as the join it is.
        "FROM ticket t CROSS JOIN vendor_metric v WHERE v.ticket_id = t.id AND t.deleted = FALSE "
        "AND "
        f"((t.created_at >= :s AND t.created_at < :e) OR ({_SOLVED_IN_W})){names}"
        f"{q.connector_filter('t')}"
    )


def with_vendor(frame: Frame, vendor: Columns) -> Frame:
    """``frame`` with a column ``native.<name>`` per vendor metric read (seconds, NaN where
    the ticket has none) and, when read, ``reopens``, ``first_agent`` (0/1),
    ``first_solved_at`` and the ticket's ``id`` (None where it has no vendor metric)."""
    rowid, name, seconds, reopens, first, first_solved, ident = vendor
    names = _text(np.asarray(name, dtype=object))
    cols = dict(frame.cols)
    keys = frame["rowid"].astype(np.int64)
    for metric in sorted({str(n) for n in names}):
        mine = names == metric
        cols[f"native.{metric}"] = _aligned(keys, rowid[mine], seconds[mine])
    first_flags = np.asarray(first, dtype=np.float64)
    if len(first_flags) and not np.isnan(first_flags).all():
        cols.setdefault("reopens", _aligned(keys, rowid, reopens))
        cols.setdefault("first_solved_at", _aligned(keys, rowid, first_solved))
        cols["first_agent"] = _aligned(keys, rowid, first_flags)
        cols["id"] = _aligned_text(keys, rowid, _text(np.asarray(ident, dtype=object)))
    return Frame(cols, frame.key)


def _aligned_text(keys: I64, rowid: NDArray[Any], values: Obj) -> Obj:
    """Like ``_aligned`` for a text column (None where a key has none)."""
    position = _aligned(keys, rowid, np.arange(len(values), dtype=np.float64))
    found = np.full(len(keys), None, dtype=object)
    hit = ~np.isnan(position)
    found[hit] = values[position[hit].astype(np.intp)]
    return found


def _aligned(keys: I64, rowid: NDArray[Any], values: NDArray[Any]) -> F64:
    """``values`` (given per ``rowid``) at each of ``keys``; NaN where a key has none."""
    ids = np.asarray(rowid, dtype=np.int64)
    found = np.full(len(keys), np.nan)
    if len(ids) == 0:
        return found
    order = np.argsort(ids, kind="stable")
    ids, picked = ids[order], np.asarray(values, dtype=np.float64)[order]
    at = np.clip(np.searchsorted(ids, keys), 0, len(ids) - 1)
    hit = ids[at] == keys
    found[hit] = picked[at[hit]]
    return found


def _replies(q: _Query) -> str:
    """Public customer and agent messages of the tickets created in W (see ``_answers``)."""
    return (
        "SELECT {t.rowid}, m.created_at, m.author_role = 'agent' "  # noqa: S608
        "FROM ticket t JOIN message m ON m.ticket_id = t.id "
        "WHERE t.deleted = FALSE AND t.created_at >= :s AND t.created_at < :e AND m.public = TRUE "
        f"AND m.author_role IN ('customer', 'agent'){q.connector_filter('t')}"
    )


def _answers(columns: Columns) -> Frame:
    """Seconds from each public customer message to the next public agent message at or
    after it in the same ticket, for the tickets created in W (one sorted pass)."""
    ticket, at, agent = (np.asarray(c, dtype=np.int64) for c in columns)
    if len(ticket) == 0:
        return Frame({"ticket": ticket, "seconds": at}, None)
    return Frame(answered(ticket, at, agent.astype(bool)), None)


def answered(ticket: I64, at: I64, agent: NDArray[np.bool_]) -> dict[str, I64]:
    """Per customer message, seconds to the first agent message at or after it."""
    order = np.lexsort((agent, at, ticket))  # by ticket, time; customer before agent on ties
    ticket, at, agent = ticket[order], at[order], agent[order]
    ordinal = np.cumsum(np.r_[True, ticket[1:] != ticket[:-1]]).astype(np.int64)
    # Encode (ticket, time) in one number so a reversed running minimum never crosses tickets.
    span = np.int64(1) << 40
    coded = np.where(agent, ordinal * span + (at - at.min()), np.iinfo(np.int64).max)
    after = np.minimum.accumulate(coded[::-1])[::-1]
    hit = ~agent & (after // span == ordinal)
    reply_at = after[hit] % span + at.min()
    return {"ticket": ticket[hit], "seconds": reply_at - at[hit]}


def _has_messages(q: _Query) -> str:
    return (
        "SELECT EXISTS (SELECT 1 FROM ticket t JOIN message m ON m.ticket_id = t.id "  # noqa: S608
        "WHERE t.deleted = FALSE AND t.created_at >= :s AND t.created_at < :e"
        f"{q.connector_filter('t')})"
    )


def _organizations(q: _Query) -> str:
    return (
        "SELECT o.mrr, o.created_at, o.churned_at, NULL FROM organization o "  # noqa: S608
        f"WHERE o.mrr > 0{q.connector_filter('o')}"
    )


_ORGANIZATION_COLS = (Column("mrr", "o.mrr"), Column("created_at", "o.created_at"),
                      Column("churned_at", "o.churned_at"))  # fmt: skip


# --- SPEC §6 ------------------------------------------------------------------------------

_ACTIVITY_COLS = (
    Column("rowid", "{m.rowid}"), Column("ticket", "m.ticket_id", text=True),
    Column("public", "m.public"),
    Column("author", "m.author_id", text=True), Column("created_at", "m.created_at"),
)  # fmt: skip


def _activity(q: _Query) -> str:
    """Agent messages created in W (bots and system messages are not agents), keyed by their
    author with --by agent, else by their ticket's key; a range of ix_message_created_at.
    The ticket is read only where its key or a filter needs it (a lookup per message)."""
    key = "m.author_id" if q.dimension == "agent" else q.ticket_key()
    kept = q.connector_filter("t")
    select = f"SELECT {{m.rowid}}, m.ticket_id, m.public, m.author_id, m.created_at, {key} "
    in_w = "m.created_at >= :s AND m.created_at < :e AND m.author_role = 'agent'"
    if "t." in key or kept:
        return (
            f"{select}FROM message m JOIN ticket t ON t.id = m.ticket_id "
            f"WHERE {in_w} AND t.deleted = FALSE{kept}"
        )
    return f"{select}FROM message m WHERE {in_w} AND {_not_deleted(q, 'm.ticket_id')}"


def _not_deleted(q: _Query, ticket_id: str) -> str:
    """SQL true unless the ticket ``ticket_id`` names is deleted. Only a deleted ticket drops
    a row, and the partial index ix_ticket_deleted holds just those: probing it is cheaper
    than reading every row's ticket (docs/performance.md)."""
    deleted = q.dialect.indexed_by("ticket d", "ix_ticket_deleted")
    return f"NOT EXISTS (SELECT 1 FROM {deleted} WHERE d.deleted = TRUE AND d.id = {ticket_id})"  # noqa: S608


_THREAD_COLS = (Column("ticket", "{t.rowid}"), Column("at", "m.created_at"),
                Column("agent", "m.author_role = 'agent'"))  # fmt: skip


def _threads(q: _Query, live: bool) -> str:
    """The public customer and agent messages before ``at`` of the backlog tickets (one
    query per disjoint backlog condition, joined by UNION ALL, as ``_backlog``). CROSS JOIN
    keeps SQLite's planner on the tickets first (for a past ``at`` it chose to scan every
    message instead); PostgreSQL plans it as the inner join it is."""
    return " UNION ALL ".join(
        "SELECT {t.rowid}, m.created_at, m.author_role = 'agent' "  # noqa: S608
        "FROM ticket t CROSS JOIN message m "
        f"WHERE m.ticket_id = t.id AND t.deleted = FALSE AND {c} AND m.public = TRUE "
        f"AND m.author_role IN ('customer', 'agent') AND m.created_at < :a{q.connector_filter('t')}"
        for c in conditions(live)
    )


def _history(q: _Query) -> str:
    """The status changes of the tickets solved in W (time_in_status)."""
    return (
        f"SELECT {{t.rowid}}, s.at, {status_code_sql('s.status')} "  # noqa: S608
        "FROM ticket t JOIN status_change s ON s.ticket_id = t.id "
        f"WHERE t.deleted = FALSE AND {_SOLVED_IN_W}{q.connector_filter('t')}"
    )


_HISTORY_COLS = (Column("ticket", ""), Column("at", ""), Column("status", ""))
_CONTACT_COLS = (Column("created_at", ""), Column("connector", "", text=True),
                 Column("channel", "", text=True), Column("email", "", text=True))  # fmt: skip


def _derive(solved: Frame, history: Frame, contacts: Frame, q: _Query) -> None:
    """Add each solved ticket's time in each status and its repeat contact (derived.py)."""
    solved.cols.update(status_seconds(
        solved["rowid"], solved["created_at"], solved["solved_at"],
        history["ticket"], history["at"], history["status"],
    ))  # fmt: skip
    mine = (solved["created_at"], solved["solved_at"], solved["connector"], solved["channel"],
            solved["email"])  # fmt: skip
    theirs = (contacts["created_at"], contacts["connector"], contacts["channel"],
              contacts["email"])  # fmt: skip
    now = float(to_epoch(q.window.now) or 0)
    solved.cols.update(repeat_contacts(mine, theirs, q.repeat_window.total_seconds(), now))


def _contacts() -> str:
    """Every ticket created from W's start to its end plus the repeat window whose requester
    has an email: the later contacts a solve in W may have had. SPEC §6 looks them up in the
    whole store, so neither the connector filter (nor --where, nor --by) applies here."""
    return (
        "SELECT t.created_at, t.connector, t.channel, p.email "
        "FROM ticket t JOIN person p ON p.id = t.requester_id "
        "WHERE t.deleted = FALSE AND t.created_at >= :s AND t.created_at < :rh "
        "AND p.email IS NOT NULL"
    )


# --- one population with more columns: the drill-down (drill.py) -------------------------

TICKET_COLUMNS = {"created": _CREATED, "solved": _SOLVED, "backlog": _BACKLOG}


def rows_of(
    engine: Engine,
    window: Window,
    population: str,
    extra: Sequence[Column],
    joins: str = "",
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
    escalation_tags: Sequence[str] = (),
    wall: datetime | None = None,
) -> Frame:
    """The rows of one ticket population (``created``, ``solved`` or ``backlog``) with the
    columns its KPIs read and ``extra`` ones (which may name tables ``joins`` adds), selected
    by the same conditions and filters as ``load``'s, so a drill-down lists the KPI's rows."""
    q = _Query(window, connectors, None, escalation_tags, sql_for(engine),
               row_key_for(engine), where)  # fmt: skip
    own = TICKET_COLUMNS[population]
    joins = (_REQUESTER if population == "solved" else "") + joins
    columns = [*own, *(c for c in extra if c.name not in {o.name for o in own})]
    if population == "backlog":
        live = is_present(window.at, wall)
        sql = " UNION ALL ".join(_tickets(q, c, columns, joins) for c in conditions(live))
    else:
        sql = _tickets(q, _SOLVED_IN_W if population == "solved" else _CREATED_IN_W, columns, joins)
    (values,) = read(engine, [q.render(sql)], q.params)
    return _frame(values, columns, False)


def ratings_of(
    engine: Engine,
    window: Window,
    columns: Sequence[Column],
    joins: str = "",
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> Frame:
    """The ratings given in W of the kinds with a KPI, with ``columns`` (of ``r``, its ticket
    ``t`` and the tables ``joins`` adds), filtered as ``load``'s ratings are."""
    q = _Query(window, connectors, None, (), sql_for(engine), row_key_for(engine), where)
    sql = (
        f"SELECT {', '.join(c.sql for c in columns)} "  # noqa: S608 (constants only)
        f"FROM rating r LEFT JOIN ticket t ON t.id = r.ticket_id{joins} "
        "WHERE r.rated_at >= :s AND r.rated_at < :e AND COALESCE(t.deleted, FALSE) = FALSE "
        # answered surveys only, as every KPI over ratings counts them (SPEC §7)
        "AND r.score IS NOT NULL AND r.kind IN ('csat', 'nps', 'ces') AND r.scale_max > r.scale_min"
        f"{q.connector_filter('r')}"
    )
    (values,) = read(engine, [q.render(sql)], q.params)
    return _frame(values, columns, False)


# --- the backlog at many instants: the series (series.py) --------------------------------

_CANDIDATE_COLS = (
    *_t("rowid", "created_at", "status", "first_solved_at", "solved_at"),
)  # fmt: skip
# A ticket that can be in the backlog at some instant in [:s, :e]: created before the last,
# and not solved for good (solved now, its latest solve) before the first.
# A ticket that can be in the backlog at some instant in [:s, :e]: created before the last,
# and not solved for good (solved now, its latest solve) before the first. Three disjoint
# parts, each a range of an index (solved_at; status and created_at), so no query reads
# every ticket ever stored: solved since the first instant; unsolved now and not solved
# since; solved now without a stamp.
_CANDIDATE_PARTS = (
    "t.solved_at >= :s AND {+t.created_at} < :e",
    "t.status IN ('new', 'open', 'pending', 'on_hold') AND t.created_at < :e "
    "AND (t.solved_at IS NULL OR t.solved_at < :s)",
    "t.status IN ('solved', 'closed') AND t.created_at < :e AND t.solved_at IS NULL",
)
# Only a ticket with a solve stamp is judged by its history (backlog.py).
_CANDIDATE_HISTORY = (
    "SELECT {t.rowid}, s.at, s.status IN ('solved', 'closed') "
    "FROM ticket t JOIN status_change s ON s.ticket_id = t.id "
    "WHERE t.deleted = FALSE AND s.at <= :e "
    "AND (t.first_solved_at IS NOT NULL OR t.solved_at IS NOT NULL) AND "
)


# Their public customer and agent messages up to the last instant: who is awaited at each
# bucket's end (awaiting_reply reads only those before its instant).
_CANDIDATE_THREADS = (  # CROSS JOIN and +: the tickets lead, not the message index
    "SELECT {t.rowid}, m.created_at, m.author_role = 'agent' "
    "FROM ticket t CROSS JOIN message m WHERE m.ticket_id = t.id AND "
    "t.deleted = FALSE AND m.public = TRUE AND m.author_role IN ('customer', 'agent') "
    "AND +m.created_at < :e AND "  # off ix_message_created_at: the tickets lead
)


def backlog_candidates(
    engine: Engine,
    first: datetime,
    last: datetime,
    dimension: str | None,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> tuple[Frame, I64, I64, NDArray[np.bool_], Frame]:
    """The tickets that can be in the backlog at some instant from ``first`` to ``last``,
    once each (with ``tag``: the stored JSON list as the key, for ``by_tag``), and their
    status history up to ``last``: each change's ticket row key, instant, and whether it
    is a solve or close; and their public customer and agent messages before ``last``
    (``threads``). Three queries, in one snapshot, whatever the number of instants."""
    window = Window(first, last, UTC_ZONE, last)
    q = _Query(window, connectors, dimension, (), sql_for(engine), row_key_for(engine), where)
    tickets = " UNION ALL ".join(_tickets(q, c, _CANDIDATE_COLS) for c in _CANDIDATE_PARTS)
    history, threads = (
        " UNION ALL ".join(head + c + q.connector_filter("t") for c in _CANDIDATE_PARTS)
        for head in (_CANDIDATE_HISTORY, _CANDIDATE_THREADS)
    )
    sqls = [q.render(threads), q.render(history), q.render(tickets)]  # the longest first
    said, changes, found = read(engine, sqls, q.params)
    frame = _frame(found, _CANDIDATE_COLS, dimension is not None)
    ticket, at, done = (np.asarray(c, dtype=np.int64) for c in changes)
    return frame, ticket, at, done.astype(bool), _frame(said, _THREAD_COLS, False)


def messages_by_bucket(
    engine: Engine,
    edges: Sequence[datetime],
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> NDArray[np.bool_]:
    """Per bucket between consecutive ``edges``: whether its created tickets have any
    message (``Populations.has_messages`` of each bucket), in one query."""
    window = Window(edges[0], edges[-1], UTC_ZONE, edges[-1])
    q = _Query(window, connectors, None, (), sql_for(engine), row_key_for(engine), where)
    probes = " UNION ALL ".join(
        f"SELECT {i}, EXISTS (SELECT 1 FROM ticket t JOIN message m ON m.ticket_id = t.id "  # noqa: S608
        f"WHERE t.deleted = FALSE AND t.created_at >= :b{i} AND t.created_at < :b{i + 1}"
        f"{q.connector_filter('t')})"
        for i in range(len(edges) - 1)
    )
    params = {**q.params, **{f"b{i}": to_epoch(e) for i, e in enumerate(edges)}}
    (index, found) = read(engine, [q.render(probes)], params)[0]
    flags = np.zeros(len(edges) - 1, dtype=bool)
    flags[np.asarray(index, dtype=np.int64)] = np.asarray(found, dtype=np.float64) > 0
    return flags


def created_by_organization(
    engine: Engine, window: Window, *, connectors: Sequence[str] = (), where: Where = EVERYTHING
) -> dict[str, int]:
    """Tickets created in ``window`` per organization id, in one query (the accounts'
    ticket_surge compares each with the window before)."""
    q = _Query(window, connectors, "organization", (), sql_for(engine), row_key_for(engine), where)
    sql = _tickets(q, _CREATED_IN_W, (Column("rowid", "{t.rowid}"),))
    (_, key) = read(engine, [q.render(sql)], q.params)[0]
    return dict(Counter(str(k) for k in _text(key).tolist() if k is not None))
