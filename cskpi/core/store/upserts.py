"""How records are stored: one row per record, one bulk, idempotent upsert per table.

A table's rows are written with one ``INSERT … ON CONFLICT (id) DO UPDATE`` (SQLite ≥ 3.24
and PostgreSQL both take it; how the rows are bound is the dialect's, see ``dialect.py``):
building ORM objects per row would cost more than the whole sync. The row builders below
must agree with the column types in ``schema.py`` (integer Unix seconds, JSON text for tags).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlmodel import SQLModel

from cskpi.connectors import base
from cskpi.core.store.dialect import Row, Sql, pg_type, sql_for
from cskpi.core.store.schema import to_epoch


@dataclass(frozen=True)
class UpsertSpec:
    """How one record type is stored: its row (source values, ids unprefixed) and table.

    The SQL adds what every row of a page shares: the connector name in ``connector`` and as
    the ``"{connector}:"`` prefix of ``id`` (made from ``external_id``) and of ``prefixed``.
    """

    table: str
    fields: str  # names of the row built by `build`, in order, space-separated; external_id first
    build: Callable[[Any], Row]
    prefixed: frozenset[str] = frozenset()
    has_connector: bool = True  # the table has a `connector` column
    has_external_id: bool = True  # ... and an `external_id` column
    keep_newer: bool = False  # skip the update when the stored row is newer (tickets)
    sticky: tuple[str, ...] = ()  # boolean columns that never go back from true
    key: tuple[str, ...] = ("id",)  # the conflict target; a table keyed otherwise has no id
    # column, and its rows are all key (or never change): stored once, never updated

    def write(self, conn: Connection, connector: str, rows: list[Row]) -> int:
        """Upsert rows built by ``build``, sorted by id (see ``upsert_records``); returns how
        many were new or changed a stored row."""
        if not rows:
            return 0
        rows.sort(key=itemgetter(0))  # stable: a page's repeats of an id keep their order
        dialect = sql_for(conn)
        statement = _statement(self, connector, dialect)
        return dialect.write_rows(conn, statement, rows, self.table, _types(self))

    def sql(self, connector: str, dialect: Sql) -> str:
        """The statement a page's rows are sent to (row source and binds: ``dialect``)."""
        values, source = dialect.row_source(self.table, _types(self))
        targets = self._targets(connector, values)
        # Table and column names are this module's constants; the connector name is quoted.
        insert = (
            f"INSERT INTO {self.table} ({', '.join(targets)}) "
            f"{source.format(', '.join(targets.values()))} "
        )
        if self.key != ("id",):
            return insert + f"ON CONFLICT ({', '.join(self.key)}) DO NOTHING"
        news = {
            c: f"({self.table}.{c} OR excluded.{c})" if c in self.sticky else f"excluded.{c}"
            for c in targets
            if c != "id"
        }
        sets = ", ".join(f"{c} = {value}" for c, value in news.items())
        # A row sent again unchanged (a person comes with every ticket they raise, a ticket
        # with every re-read) is left alone: no new row version, index entries or WAL, and
        # it is not counted as written (``write`` returns the statement's row count).
        text = self._json_columns()
        where = dialect.differs(
            [_as_text(f"{self.table}.{c}", c in text) for c in news],
            [_as_text(value, c in text) for c, value in news.items()],
        )
        if self.keep_newer:
            where = f"excluded.updated_at >= {self.table}.updated_at AND {where}"
        return insert + f"ON CONFLICT (id) DO UPDATE SET {sets} WHERE {where}"

    def column_types(self) -> list[str]:
        """The SQL type of each field (PostgreSQL's bulk path casts its arrays to them)."""
        table = SQLModel.metadata.tables[self.table]
        return [pg_type(table.c[f].type) if f in table.c else "TEXT" for f in self.fields.split()]

    def _targets(self, connector: str, values: Sequence[str]) -> dict[str, str]:
        """Column -> SQL expression; ``values[0]`` is the id's source, then one per field."""
        name = connector.replace("'", "''")
        targets = {"id": f"'{name}:' || {values[0]}"} if self.key == ("id",) else {}
        if self.has_connector:
            targets["connector"] = f"'{name}'"
        for field_name, value in zip(self.fields.split(), values[1:], strict=True):
            if field_name == "external_id" and not self.has_external_id:
                continue
            prefix = f"'{name}:' || " if field_name in self.prefixed else ""
            targets[field_name] = prefix + value
        return targets

    def _json_columns(self) -> set[str]:
        table = SQLModel.metadata.tables[self.table]
        return {c.name for c in table.c if pg_type(c.type) == "JSON"}


@lru_cache(maxsize=16)
def _types(spec: UpsertSpec) -> list[str]:
    return spec.column_types()


@lru_cache(maxsize=256)
def _statement(spec: UpsertSpec, connector: str, dialect: Sql) -> str:
    return spec.sql(connector, dialect)


def _as_text(sql: str, json: bool) -> str:
    """PostgreSQL's json type has no equality: such a column compares as its text."""
    return f"CAST({sql} AS TEXT)" if json else sql


def tags_json(tags: Sequence[str]) -> str:
    """The stored form of a ticket's tags."""
    # A tag set: a source that repeats a tag must not count a ticket twice under it.
    return json.dumps(list(dict.fromkeys(tags))) if tags else "[]"


def _ticket_row(t: base.Ticket) -> Row:
    return (
        t.external_id, t.subject, t.status, t.raw_status, t.priority, t.channel, t.type,
        tags_json(t.tags), t.requester_id, t.organization_id, t.assignee_id, t.group_id,
        to_epoch(t.created_at), to_epoch(t.updated_at), to_epoch(t.first_reply_at),
        to_epoch(t.first_solved_at), to_epoch(t.solved_at), to_epoch(t.closed_at),
        t.agent_replies, t.reopens, t.group_changes, t.assignee_changes, t.deleted,
    )  # fmt: skip


def _message_row(m: base.Message) -> Row:
    return (m.external_id, m.ticket_id, m.author_id, m.author_role, m.public,
            to_epoch(m.created_at))  # fmt: skip


def _rating_row(r: base.Rating) -> Row:
    return (r.external_id, r.ticket_id, r.kind, r.score, r.scale_min, r.scale_max, r.comment,
            r.agent_id, to_epoch(r.rated_at), to_epoch(r.offered_at))  # fmt: skip


def _person_row(r: base.Person) -> Row:
    return (r.external_id, r.name, r.email, r.role)


def _group_row(r: base.Group) -> Row:
    return (r.external_id, r.name)


def _organization_row(r: base.Organization) -> Row:
    # mrr and churned_at belong to `cskpi import accounts`: a sync never overwrites them.
    return (r.external_id, r.name, to_epoch(r.created_at))


def _status_change_row(c: base.StatusChange) -> Row:
    return (c.ticket_id, to_epoch(c.at), c.status)


@dataclass(frozen=True, slots=True)
class _Metric:
    """One row of a :class:`~base.VendorMetrics`."""

    ticket_id: str
    name: str
    seconds: int


def _metric_row(m: _Metric) -> Row:
    return (m.ticket_id, m.name, m.seconds)


_REFS = frozenset({"ticket_id", "author_id", "agent_id", "requester_id", "organization_id",
                   "assignee_id", "group_id"})  # fmt: skip

# In the order tables are written (see ``upsert_records``).
UPSERTS: dict[type, UpsertSpec] = {
    base.Ticket: UpsertSpec(
        "ticket",
        "external_id subject status raw_status priority channel type tags requester_id "
        "organization_id assignee_id group_id created_at updated_at first_reply_at "
        "first_solved_at solved_at closed_at agent_replies reopens group_changes "
        "assignee_changes deleted",
        _ticket_row,
        _REFS,
        keep_newer=True,
        sticky=("deleted",),
    ),
    base.Message: UpsertSpec(
        "message",
        "external_id ticket_id author_id author_role public created_at",
        _message_row,
        _REFS,
        has_connector=False,
        has_external_id=False,
    ),
    base.Rating: UpsertSpec(
        "rating",
        "external_id ticket_id kind score scale_min scale_max comment agent_id rated_at offered_at",
        _rating_row,
        _REFS,
        has_external_id=False,
    ),
    base.Person: UpsertSpec("person", "external_id name email role", _person_row),
    base.Group: UpsertSpec("grp", "external_id name", _group_row),
    base.Organization: UpsertSpec("organization", "external_id name created_at", _organization_row),
    base.StatusChange: UpsertSpec(
        "status_change",
        "ticket_id at status",
        _status_change_row,
        _REFS,
        has_external_id=False,
        key=("ticket_id", "at", "status"),
    ),
    _Metric: UpsertSpec(
        "vendor_metric",
        "ticket_id name seconds",
        _metric_row,
        _REFS,
        has_external_id=False,
        key=("ticket_id", "name"),  # a changed value was deleted first: see below
    ),
}


@dataclass(frozen=True)
class Written:
    """What storing records did: ``rows`` sent to the store, ``changed`` of them new or
    different from the stored row (plus stored status changes a history dropped)."""

    rows: int = 0
    changed: int = 0

    def __add__(self, other: Written) -> Written:
        return Written(self.rows + other.rows, self.changed + other.changed)


def upsert_records(conn: Connection, connector: str, records: Sequence[base.Record]) -> Written:
    """Upsert records of any mix of types; returns how many rows were sent and changed.

    Tables are written in one fixed order and rows sorted by id, so two processes storing
    overlapping pages at once (the daemon and a backfill, on PostgreSQL) take their row
    locks in the same order and cannot deadlock.
    """
    by_type: dict[type, list[Row]] = {}
    histories = [r for r in records if isinstance(r, base.StatusHistory)]
    dropped = _drop_stale_changes(conn, connector, histories) if histories else 0
    # a ticket twice in a page: its later metrics are the latest
    latest = {r.ticket_id: r for r in records if isinstance(r, base.VendorMetrics)}
    dropped += _drop_stale_metrics(conn, connector, list(latest.values())) if latest else 0
    for record in _with_changes(r for r in records if _current(r, latest)):
        kind = type(record)
        by_type.setdefault(kind, []).append(UPSERTS[kind].build(record))
    changed = sum(
        spec.write(conn, connector, by_type.get(kind, [])) for kind, spec in UPSERTS.items()
    )
    return Written(sum(len(rows) for rows in by_type.values()), changed + dropped)


_STORED_CHANGES = text(
    "SELECT ticket_id, at, status FROM status_change WHERE ticket_id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def _drop_stale_changes(
    conn: Connection, connector: str, histories: Sequence[base.StatusHistory]
) -> int:
    """A history replaces its ticket's stored changes: delete those it no longer has (the
    ones it keeps stay, and are not counted as written again); returns how many."""
    new = {
        (f"{connector}:{h.ticket_id}", to_epoch(at), s) for h in histories for at, s in h.changes
    }
    ids = sorted({f"{connector}:{h.ticket_id}" for h in histories})
    stale = []
    for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
        rows = conn.execute(_STORED_CHANGES, {"ids": ids[start : start + 500]})
        stale += [{"t": t, "a": a, "s": s} for t, a, s in rows if (t, a, s) not in new]
    if stale:
        conn.execute(
            text("DELETE FROM status_change WHERE ticket_id = :t AND at = :a AND status = :s"),
            stale,
        )
    return len(stale)


def _current(record: base.Record, latest: dict[str, base.VendorMetrics]) -> bool:
    if isinstance(record, base.VendorMetrics):
        return latest[record.ticket_id] is record
    return True


_STORED_METRICS = text(
    "SELECT ticket_id, name, seconds FROM vendor_metric WHERE ticket_id IN :ids"
).bindparams(bindparam("ids", expanding=True))


def _drop_stale_metrics(
    conn: Connection, connector: str, metrics: Sequence[base.VendorMetrics]
) -> int:
    """A ticket's vendor metrics are the vendor's latest: delete the stored ones a new set
    no longer has or gives another value (the same ones stay, not written again)."""
    new = {(f"{connector}:{m.ticket_id}", n, s) for m in metrics for n, s in m.metrics}
    ids = sorted({f"{connector}:{m.ticket_id}" for m in metrics})
    stale = []
    for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
        rows = conn.execute(_STORED_METRICS, {"ids": ids[start : start + 500]})
        stale += [{"t": t, "n": n} for t, n, s in rows if (t, n, s) not in new]
    if stale:
        conn.execute(text("DELETE FROM vendor_metric WHERE ticket_id = :t AND name = :n"), stale)
    return len(stale)


def _with_changes(records: Iterable[base.Record]) -> Iterator[object]:
    """The records, each :class:`~base.StatusHistory` as its changes and each
    :class:`~base.VendorMetrics` as its rows."""
    for record in records:
        if isinstance(record, base.StatusHistory):
            yield from (base.StatusChange(record.ticket_id, at, s) for at, s in record.changes)
        elif isinstance(record, base.VendorMetrics):
            yield from (_Metric(record.ticket_id, n, s) for n, s in record.metrics)
        else:
            yield record
