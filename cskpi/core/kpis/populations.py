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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine

from cskpi.core.config.periods import Window
from cskpi.core.kpis.backlog import conditions, is_present, unindexed
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.store.dialect import SQLITE, Sql, sql_for
from cskpi.core.store.reads.arrow import Columns
from cskpi.core.store.reads.columns import read, row_key_for
from cskpi.core.store.schema import to_epoch

UTC_ZONE = ZoneInfo("UTC")
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Obj = NDArray[np.object_]

# Group key of a ticket row (alias t) and of a rating row (alias r) for each dimension.
_TICKET_KEY = {
    "agent": "t.assignee_id",
    "group": "t.group_id",
    "channel": "t.channel",
    "type": "t.type",
    "priority": "t.priority",
    "organization": "t.organization_id",
    "connector": "t.connector",
    "tag": "CAST(t.tags AS TEXT)",  # the stored JSON list: one row per tag made by _by_tag
}
_RATING_KEY = {**_TICKET_KEY, "agent": "r.agent_id", "connector": "r.connector"}


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
    solved: Frame  # tickets solved in W
    backlog: Frame  # tickets in the backlog at ``at`` (backlog.py)
    ratings: Frame  # ratings given in W
    replies: Frame  # per answered customer message of a ticket created in W: ticket, seconds
    has_messages: bool  # whether the tickets created in W have any message at all
    organizations: Frame  # mrr, created_at, churned_at (no key: never grouped)


def hour_of_week(created_at: F64, tz: ZoneInfo) -> I64:
    """Local weekday x 24 + hour (0 = Monday 00:00). Offsets change at most every quarter
    hour, so each distinct quarter hour is converted once instead of each ticket."""
    seconds = created_at.astype(np.int64)
    if len(seconds) == 0:
        return seconds
    quarters, index = np.unique(seconds // 900, return_inverse=True)
    offsets = np.array(
        [datetime.fromtimestamp(int(q) * 900, tz).utcoffset() or timedelta() for q in quarters],
        dtype="timedelta64[s]",
    ).astype(np.int64)
    local = seconds + offsets[index]
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
        p.replies, p.has_messages, p.organizations,
    )  # fmt: skip


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

    @property
    def params(self) -> dict[str, Any]:
        w = self.window
        params: dict[str, Any] = {"s": to_epoch(w.start), "e": to_epoch(w.end), "a": to_epoch(w.at)}
        params.update({f"c{i}": name for i, name in enumerate(self.connectors)})
        params.update({f"x{i}": tag for i, tag in enumerate(self.escalation_tags)})
        params.update(self.where.params())
        return params

    def escalation_tag(self) -> str:
        """SQL true when the ticket ``t`` has an escalation tag. Without any configured it
        is a constant: the tags of every solved ticket would be parsed to find none."""
        if not self.escalation_tags:
            return "FALSE"
        marks = ", ".join(f":x{i}" for i in range(len(self.escalation_tags)))
        exact = f"EXISTS (SELECT 1 FROM {{tags}} WHERE x.value IN ({marks}))"  # noqa: S608
        if not all(_plain(tag) for tag in self.escalation_tags):
            return exact
        # Parsing every solved ticket's tags is a noticeable share of a report (see
        # docs/performance.md); a plain tag (ASCII, nothing JSON escapes) stands in the
        # stored JSON text as it is, so a substring search rules out most tickets first.
        found = " OR ".join(
            self.dialect.contains("t.tags", f":x{i}") for i in range(len(self.escalation_tags))
        )
        return f"(({found}) AND {exact})"

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
        return "NULL" if self.dimension is None else _TICKET_KEY[self.dimension]

    def render(self, sql: str) -> str:
        """Fill in the dialect's spelling of the fragments named in braces."""
        return unindexed(
            sql.replace("{escalation_tag}", self.escalation_tag())
            .replace("{tags}", self.dialect.tag_table("t.tags", "x"))
            .replace("{t.rowid}", self.row_key("t"))
            .replace("{r.rowid}", self.row_key("r")),
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
    where: Where = EVERYTHING,
) -> Populations:
    """The window's populations, read in one snapshot; ``tz`` (default the window's) places
    submissions by hour; ``wall`` is the wall clock that tells whether the backlog's instant
    is the real present (default now); ``where`` is --where. ``prefer_arrow=False`` reads
    through the DB-API driver."""
    tz = tz or window.tz
    row_key = row_key_for(engine, prefer_arrow=prefer_arrow)
    q = _Query(window, connectors, dimension, escalation_tags, sql_for(engine), row_key, where)
    keyed: Keyed = "tag" if dimension == "tag" else dimension is not None
    queries = [  # the longest first (see ``read``)
        _replies(q),
        _tickets(q, _SOLVED_IN_W, _SOLVED),
        _tickets(q, _CREATED_IN_W, _CREATED),
        _ratings(q),
        _backlog(q, is_present(window.at, wall)),
        _has_messages(q), _organizations(q),
    ]  # fmt: skip
    results = read(engine, [q.render(sql) for sql in queries], q.params, prefer_arrow=prefer_arrow)
    replies, solved, created, ratings, backlog, messages, organizations = results
    frame = _frame(created, _CREATED, keyed)
    frame.cols["hour_of_week"] = hour_of_week(frame["created_at"], tz)
    return Populations(
        created=frame,
        solved=_frame(solved, _SOLVED, keyed),
        backlog=_frame(backlog, _BACKLOG, keyed),
        ratings=_frame(ratings, _RATING_COLS, keyed),
        replies=_answers(replies),
        has_messages=bool(messages[0][0]),
        organizations=_frame(organizations, _ORGANIZATION_COLS, False),
    )


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    text: bool = False


def _t(*names: str) -> tuple[Column, ...]:
    return tuple(
        Column(n, "{t.rowid}" if n == "rowid" else f"t.{n}", text=n in ("priority", "status"))
        for n in names
    )


_CREATED_IN_W = "t.created_at >= :s AND t.created_at < :e"
_CREATED = _t("rowid", "created_at", "first_reply_at", "priority", "status", "solved_at")
_SOLVED = (
    *_t("rowid", "created_at", "solved_at", "agent_replies", "reopens", "group_changes"),
    # 1 when a tag is one of the escalation tags (bound as :x0, :x1, …)
    Column("escalated", "t.group_changes > 0 OR {escalation_tag}"),
)  # fmt: skip
_BACKLOG = _t("rowid", "created_at")
# SQLite is kept off the (status, created_at) backlog index, which would walk every
# solved ticket ever stored instead of the window's range of solved_at.
_SOLVED_IN_W = "{+t.status} IN ('solved', 'closed') AND t.solved_at >= :s AND t.solved_at < :e"


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


def _backlog(q: _Query, live: bool) -> str:
    return " UNION ALL ".join(_tickets(q, c, _BACKLOG) for c in conditions(live))


_RATING_COLS = (Column("rowid", "{r.rowid}"), Column("kind", "r.kind", text=True),
                Column("score", "r.score"),
                Column("scale_min", "r.scale_min"), Column("scale_max", "r.scale_max"),
                Column("rated_at", "r.rated_at"))  # fmt: skip


def _ratings(q: _Query) -> str:
    key = "NULL" if q.dimension is None else _RATING_KEY[q.dimension]
    if key.startswith("r."):
        # Only a deleted ticket can drop a rating, and the partial index ix_ticket_deleted
        # holds just those: probing it is cheaper than reading every rating's ticket
        # (docs/performance.md).
        source = "rating r"
        deleted = q.dialect.indexed_by("ticket d", "ix_ticket_deleted")
        alive = (
            f"NOT EXISTS (SELECT 1 FROM {deleted} "  # noqa: S608 (constants only)
            "WHERE d.deleted = TRUE AND d.id = r.ticket_id)"
        )
    else:  # the group key is the ticket's
        source = "rating r LEFT JOIN ticket t ON t.id = r.ticket_id"
        alive = "COALESCE(t.deleted, FALSE) = FALSE"
    sql = (
        f"SELECT {{r.rowid}}, r.kind, r.score, r.scale_min, r.scale_max, r.rated_at, {key} "  # noqa: S608
        f"FROM {source} WHERE r.rated_at >= :s AND r.rated_at < :e AND {alive} "
        # esat has no KPI, so it makes no group; a scale without a span is no scale
        "AND r.kind IN ('csat', 'nps', 'ces') AND r.scale_max > r.scale_min"
        f"{q.connector_filter('r')}"
    )
    return sql


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
        "AND r.kind IN ('csat', 'nps', 'ces') AND r.scale_max > r.scale_min"
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
_CANDIDATE = (
    "t.created_at < :e AND NOT ({+t.status} IN ('solved', 'closed') "
    "AND t.solved_at IS NOT NULL AND t.solved_at < :s)"
)
# Only a ticket with a solve stamp is judged by its history (backlog.py).
_CANDIDATE_HISTORY = (
    "SELECT {t.rowid}, s.at, s.status IN ('solved', 'closed') "
    "FROM ticket t JOIN status_change s ON s.ticket_id = t.id "
    "WHERE t.deleted = FALSE AND s.at <= :e "
    "AND (t.first_solved_at IS NOT NULL OR t.solved_at IS NOT NULL) AND "
)


def backlog_candidates(
    engine: Engine,
    first: datetime,
    last: datetime,
    dimension: str | None,
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> tuple[Frame, I64, I64, NDArray[np.bool_]]:
    """The tickets that can be in the backlog at some instant from ``first`` to ``last``,
    once each (with ``tag``: the stored JSON list as the key, for ``by_tag``), and their
    status history up to ``last``: each change's ticket row key, instant, and whether it
    is a solve or close. Two queries, in one snapshot, whatever the number of instants."""
    window = Window(first, last, UTC_ZONE, last)
    q = _Query(window, connectors, dimension, (), sql_for(engine), row_key_for(engine), where)
    tickets = _tickets(q, _CANDIDATE, _CANDIDATE_COLS)
    history = _CANDIDATE_HISTORY + _CANDIDATE + q.connector_filter("t")
    found, changes = read(engine, [q.render(history), q.render(tickets)], q.params)[::-1]
    frame = _frame(found, _CANDIDATE_COLS, dimension is not None)
    ticket, at, done = (np.asarray(c, dtype=np.int64) for c in changes)
    return frame, ticket, at, done.astype(bool)


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
