"""``--where DIM=VALUE`` (SPEC §6 Filters): which tickets and ratings every population keeps.

A ``Where`` holds, per dimension, the stored values to keep: values OR within a dimension,
AND across dimensions. ``None`` stands for the group without a value (``(unassigned)``,
``(none)``), as ``--by`` shows it. ``sql`` turns it into one condition on a table alias that
``populations._Query.connector_filter`` appends to every population query, so a population
added later is filtered with no more code. ``resolve`` turns what a person typed (an id, a
channel, or a unique agent, group or organization name) into stored values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from cskpi.connectors.base import CHANNELS, PRIORITIES, TICKET_STATUSES
from cskpi.core.config.file import DIMENSIONS
from cskpi.core.store.dialect import Sql

WHERE_DIMENSIONS: tuple[str, ...] = (*DIMENSIONS, "status")
NONE_VALUES = ("(unassigned)", "(none)")

# The ticket column of each dimension (tags are the stored JSON list, matched by element).
_COLUMN = {
    "agent": "assignee_id", "group": "group_id", "channel": "channel", "type": "type",
    "priority": "priority", "organization": "organization_id", "connector": "connector",
    "status": "status",
}  # fmt: skip
_CLOSED = {"channel": CHANNELS, "priority": PRIORITIES, "status": TICKET_STATUSES}
_NAMED = {"agent": "person", "group": "grp", "organization": "organization"}


class FilterError(ValueError):
    """A --where that names no dimension, or a value that is unknown or ambiguous."""


@dataclass(frozen=True)
class Where:
    """Per dimension, the stored values kept (None: no value)."""

    terms: tuple[tuple[str, tuple[str | None, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.terms)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(d for d, _ in self.terms)

    def params(self) -> dict[str, Any]:
        return {_bind(i, j): v for i, (_, values) in enumerate(self.terms)
                for j, v in enumerate(values) if v is not None}  # fmt: skip

    def sql(self, alias: str, dialect: Sql) -> str:
        """`` AND …`` restricting rows of ``alias``: ``r`` a rating (agent is the rated
        agent, connector its own; the rest through its ticket), ``o`` an organization (only
        organization and connector apply), any other a ticket."""
        if not self.terms:
            return ""
        if alias == "o":
            own = {"organization": "id", "connector": "connector"}
            terms = enumerate(self.terms)
            parts = [_match(f"o.{own[d]}", i, vs) for i, (d, vs) in terms if d in own]
            return "".join(f" AND {p}" for p in parts)
        if alias == "r":
            return self._rating_sql(dialect)
        return "".join(f" AND {self._term(i, alias, dialect)}" for i in range(len(self.terms)))

    def _rating_sql(self, dialect: Sql) -> str:
        own = {"agent": "r.agent_id", "connector": "r.connector"}
        parts = [_match(own[d], i, vs) for i, (d, vs) in enumerate(self.terms) if d in own]
        through = [self._term(i, "wt", dialect) for i, (d, _) in enumerate(self.terms)
                   if d not in own]  # fmt: skip
        if through:
            parts.append(
                "EXISTS (SELECT 1 FROM ticket wt WHERE wt.id = r.ticket_id AND "  # noqa: S608
                + " AND ".join(through)
                + ")"
            )
        return "".join(f" AND {p}" for p in parts)

    def _term(self, i: int, alias: str, dialect: Sql) -> str:
        dimension, values = self.terms[i]
        if dimension != "tag":
            return _match(f"{alias}.{_COLUMN[dimension]}", i, values)
        tags = [_bind(i, j) for j, v in enumerate(values) if v is not None]
        parts = []
        if tags:
            marks = ", ".join(f":{b}" for b in tags)
            elements = dialect.tag_table(f"{alias}.tags", "wx")
            parts.append(f"EXISTS (SELECT 1 FROM {elements} WHERE wx.value IN ({marks}))")  # noqa: S608
        if None in values:
            parts.append(f"COALESCE(json_array_length({alias}.tags), 0) = 0")
        return "(" + " OR ".join(parts) + ")"


EVERYTHING = Where()  # no --where


def _bind(i: int, j: int) -> str:
    return f"w{i}_{j}"


def _match(column: str, i: int, values: Sequence[str | None]) -> str:
    marks = [f":{_bind(i, j)}" for j, v in enumerate(values) if v is not None]
    parts = [f"{column} IN ({', '.join(marks)})"] if marks else []
    if None in values:
        parts.append(f"{column} IS NULL")
    return "(" + " OR ".join(parts) + ")"


# --- what a person typed -------------------------------------------------------------------


def parse(items: Iterable[str]) -> dict[str, list[str]]:
    """``["agent=Ana", "tag=vip", "tag=b2b"]`` as ``{"agent": ["Ana"], "tag": ["vip", "b2b"]}``."""
    raw: dict[str, list[str]] = {}
    for item in items:
        dimension, sep, value = item.partition("=")
        dimension = dimension.strip().lower()
        if not sep or not value.strip():
            raise FilterError(f"--where {item!r}: write DIM=VALUE, e.g. --where agent=Ana")
        raw.setdefault(dimension, []).append(value.strip())
    return raw


def resolve(
    engine: Engine,
    raw: Mapping[str, Sequence[str]],
    connectors: Sequence[str],
    source: str = "--where",
) -> Where:
    """The stored values for what was typed; a FilterError names the first bad one, after
    ``source`` (``--where``, or a digest's ``[digests.NAME] where``)."""
    try:
        return _resolve(engine, raw, connectors)
    except FilterError as exc:
        raise FilterError(source + str(exc).removeprefix("--where")) from None


def _resolve(engine: Engine, raw: Mapping[str, Sequence[str]], connectors: Sequence[str]) -> Where:
    terms = []
    for dimension, typed in raw.items():
        if dimension not in WHERE_DIMENSIONS:
            raise FilterError(f"--where {dimension}=…: use one of {', '.join(WHERE_DIMENSIONS)}")
        values = [_value(engine, dimension, v, connectors) for v in typed]
        terms.append((dimension, tuple(dict.fromkeys(values))))
    return Where(tuple(terms))


def _value(engine: Engine, dimension: str, typed: str, connectors: Sequence[str]) -> str | None:
    if typed in NONE_VALUES:
        return None
    if dimension in _CLOSED:
        if typed.lower() not in _CLOSED[dimension]:
            known = ", ".join(_CLOSED[dimension])
            raise FilterError(f"--where {dimension}={typed}: unknown; use one of {known}")
        return typed.lower()
    if dimension == "connector" and typed not in connectors:
        raise FilterError(f"--where connector={typed}: no such connector; "
                          f"configured: {', '.join(connectors) or 'none'}")  # fmt: skip
    if dimension in _NAMED:
        return _named(engine, dimension, typed, connectors)
    return typed


def _named(engine: Engine, dimension: str, typed: str, connectors: Sequence[str]) -> str:
    """An id as stored, or the id of the one record with that name (case-insensitively)."""
    table = _NAMED[dimension]
    with engine.connect() as conn:
        if conn.execute(text(f"SELECT 1 FROM {table} WHERE id = :v"), {"v": typed}).first():  # noqa: S608
            return typed
        agents = " AND role = 'agent'" if table == "person" else ""  # customers share the table
        sql = f"SELECT id FROM {table} WHERE LOWER(name) = LOWER(:v){agents} ORDER BY id"  # noqa: S608
        ids = [str(r[0]) for r in conn.execute(text(sql), {"v": typed})]
    if len(ids) == 1:
        return ids[0]
    if len(ids) > 1:
        raise FilterError(f"--where {dimension}={typed}: {len(ids)} {dimension}s have that "
                          f"name ({', '.join(ids[:5])}); give the id instead")  # fmt: skip
    if typed.partition(":")[0] in connectors:  # an id the tickets hold but no record names
        return typed
    raise FilterError(f"--where {dimension}={typed}: no {dimension} with that id or name")
