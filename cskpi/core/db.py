"""Engine, transactions and the bulk, idempotent upserts that store connector pages.

Pages are written with one ``executemany`` per table of a hand-built
``INSERT … ON CONFLICT (id) DO UPDATE`` (the same text works on SQLite ≥ 3.24 and
PostgreSQL): building ORM objects per row would cost more than the whole sync.
The row builders below are the bulk path's bind processors and must agree with the
column types in ``schema.py`` (integer Unix seconds, JSON text for tags).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from cskpi.connectors import base
from cskpi.core.migrations import migrate
from cskpi.core.schema import to_epoch

Row = tuple[Any, ...]


def make_engine(url: str) -> Engine:
    """An engine with SQLite set up for one writer and many readers (WAL, busy timeout)."""
    if not url.startswith("sqlite"):
        return create_engine(url)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        poolclass=StaticPool if memory else None,
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so DDL is transactional too.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash in WAL mode
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock up front: a deferred transaction that reads and then writes can
    # fail with SQLITE_BUSY at once when another writer holds it, without waiting.
    immediate = conn.get_execution_options().get("cskpi_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(cskpi_write=True) as conn, conn.begin():
        yield conn


# --- the bulk path ----------------------------------------------------------------------


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

    def _targets(self, connector: str, values: Sequence[str]) -> dict[str, str]:
        """Column -> SQL expression; ``values[0]`` is the id's source, then one per field."""
        name = connector.replace("'", "''")
        targets = {"id": f"'{name}:' || {values[0]}"}
        if self.has_connector:
            targets["connector"] = f"'{name}'"
        for field_name, value in zip(self.fields.split(), values[1:], strict=True):
            if field_name == "external_id" and not self.has_external_id:
                continue
            prefix = f"'{name}:' || " if field_name in self.prefixed else ""
            targets[field_name] = prefix + value
        return targets

    def sql(self, connector: str, numbered: bool) -> str:
        """The statement rows are sent to with executemany. Numbered (SQLite's ``?1``) lets
        the id reuse the external id; otherwise each row must carry it twice (`repeat_id`)."""
        if numbered:
            values = ["?1"] + [f"?{i + 1}" for i in range(len(self.fields.split()))]
        else:
            values = ["%s"] * (len(self.fields.split()) + 1)
        targets = self._targets(connector, values)
        sets = ", ".join(
            f"{c} = ({self.table}.{c} OR excluded.{c})"
            if c in self.sticky
            else f"{c} = excluded.{c}"
            for c in targets
            if c != "id"
        )
        where = f" WHERE excluded.updated_at >= {self.table}.updated_at" if self.keep_newer else ""
        # Table and column names are this module's constants; the connector name is quoted.
        return (
            f"INSERT INTO {self.table} ({', '.join(targets)}) "  # noqa: S608
            f"VALUES ({', '.join(targets.values())}) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}{where}"
        )


def _tags(tags: Sequence[str]) -> str:
    # A tag set: a source that repeats a tag must not count a ticket twice under it.
    return json.dumps(list(dict.fromkeys(tags))) if tags else "[]"


def _ticket_row(t: base.Ticket) -> Row:
    return (
        t.external_id, t.subject, t.status, t.raw_status, t.priority, t.channel, t.type,
        _tags(t.tags), t.requester_id, t.organization_id, t.assignee_id, t.group_id,
        to_epoch(t.created_at), to_epoch(t.updated_at), to_epoch(t.first_reply_at),
        to_epoch(t.first_solved_at), to_epoch(t.solved_at), to_epoch(t.closed_at),
        t.agent_replies, t.reopens, t.group_changes, t.assignee_changes, t.deleted,
    )  # fmt: skip


def _message_row(m: base.Message) -> Row:
    return (m.external_id, m.ticket_id, m.author_id, m.author_role, m.public,
            to_epoch(m.created_at))  # fmt: skip


def _rating_row(r: base.Rating) -> Row:
    return (r.external_id, r.ticket_id, r.kind, r.score, r.scale_min, r.scale_max, r.comment,
            r.agent_id, to_epoch(r.rated_at))  # fmt: skip


def _person_row(r: base.Person) -> Row:
    return (r.external_id, r.name, r.email, r.role)


def _group_row(r: base.Group) -> Row:
    return (r.external_id, r.name)


def _organization_row(r: base.Organization) -> Row:
    # mrr and churned_at belong to `cskpi import accounts`: a sync never overwrites them.
    return (r.external_id, r.name, to_epoch(r.created_at))


_REFS = frozenset({"ticket_id", "author_id", "agent_id", "requester_id", "organization_id",
                   "assignee_id", "group_id"})  # fmt: skip

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
        "external_id ticket_id kind score scale_min scale_max comment agent_id rated_at",
        _rating_row,
        _REFS,
        has_external_id=False,
    ),
    base.Person: UpsertSpec("person", "external_id name email role", _person_row),
    base.Group: UpsertSpec("grp", "external_id name", _group_row),
    base.Organization: UpsertSpec("organization", "external_id name created_at", _organization_row),
}


@lru_cache(maxsize=256)
def _statement(kind: type, connector: str, numbered: bool) -> str:
    return UPSERTS[kind].sql(connector, numbered)


def upsert_records(conn: Connection, connector: str, records: Iterable[base.Record]) -> int:
    """Upsert records of any mix of types; returns how many were written."""
    by_type: dict[type, list[Row]] = {}
    for record in records:
        kind: type = type(record)
        rows = by_type.get(kind)
        if rows is None:
            rows = by_type[kind] = []
        rows.append(UPSERTS[kind].build(record))
    numbered = conn.dialect.paramstyle == "qmark"
    for kind, rows in by_type.items():
        sql = _statement(kind, connector, numbered)
        params = rows if numbered else [(r[0], *r) for r in rows]
        conn.exec_driver_sql(sql, params)
    return sum(len(rows) for rows in by_type.values())
