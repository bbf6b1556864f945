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
    table: str
    columns: tuple[str, ...]
    build: Callable[[str, Any], Row]  # (connector name, record) -> row in `columns` order
    keep_newer: bool = False  # skip the update when the stored row is newer (tickets)
    sticky: tuple[str, ...] = ()  # boolean columns that never go back from true

    def sql(self, placeholder: str) -> str:
        cols = ", ".join(self.columns)
        marks = ", ".join([placeholder] * len(self.columns))
        sets = ", ".join(
            f"{c} = ({self.table}.{c} OR excluded.{c})"
            if c in self.sticky
            else f"{c} = excluded.{c}"
            for c in self.columns
            if c != "id"
        )
        where = f" WHERE excluded.updated_at >= {self.table}.updated_at" if self.keep_newer else ""
        # Table and column names are this module's constants, never input.
        return (
            f"INSERT INTO {self.table} ({cols}) VALUES ({marks}) "  # noqa: S608
            f"ON CONFLICT (id) DO UPDATE SET {sets}{where}"
        )


def _tags(tags: Sequence[str]) -> str:
    return json.dumps(list(tags)) if tags else "[]"


def _ticket_row(c: str, t: base.Ticket) -> Row:
    p = c + ":"
    return (
        p + t.external_id, c, t.external_id, t.subject, t.status, t.raw_status, t.priority,
        t.channel, t.type, _tags(t.tags),
        None if t.requester_id is None else p + t.requester_id,
        None if t.organization_id is None else p + t.organization_id,
        None if t.assignee_id is None else p + t.assignee_id,
        None if t.group_id is None else p + t.group_id,
        to_epoch(t.created_at), to_epoch(t.updated_at), to_epoch(t.first_reply_at),
        to_epoch(t.first_solved_at), to_epoch(t.solved_at), to_epoch(t.closed_at),
        t.agent_replies, t.reopens, t.group_changes, t.assignee_changes, t.deleted,
    )  # fmt: skip


def _message_row(c: str, m: base.Message) -> Row:
    p = c + ":"
    author = None if m.author_id is None else p + m.author_id
    return (p + m.external_id, p + m.ticket_id, author, m.author_role, m.public,
            to_epoch(m.created_at))  # fmt: skip


def _rating_row(c: str, r: base.Rating) -> Row:
    p = c + ":"
    return (
        p + r.external_id, None if r.ticket_id is None else p + r.ticket_id, c, r.kind,
        r.score, r.scale_min, r.scale_max, r.comment,
        None if r.agent_id is None else p + r.agent_id, to_epoch(r.rated_at),
    )  # fmt: skip


def _person_row(c: str, r: base.Person) -> Row:
    return (f"{c}:{r.external_id}", c, r.external_id, r.name, r.email, r.role)


def _group_row(c: str, r: base.Group) -> Row:
    return (f"{c}:{r.external_id}", c, r.external_id, r.name)


def _organization_row(c: str, r: base.Organization) -> Row:
    # mrr and churned_at belong to `cskpi import accounts`: a sync never overwrites them.
    return (f"{c}:{r.external_id}", c, r.external_id, r.name, to_epoch(r.created_at))


_TICKET_COLUMNS = (
    "id", "connector", "external_id", "subject", "status", "raw_status", "priority", "channel",
    "type", "tags", "requester_id", "organization_id", "assignee_id", "group_id", "created_at",
    "updated_at", "first_reply_at", "first_solved_at", "solved_at", "closed_at", "agent_replies",
    "reopens", "group_changes", "assignee_changes", "deleted",
)  # fmt: skip

UPSERTS: dict[type, UpsertSpec] = {
    base.Ticket: UpsertSpec("ticket", _TICKET_COLUMNS, _ticket_row, True, ("deleted",)),
    base.Message: UpsertSpec(
        "message",
        ("id", "ticket_id", "author_id", "author_role", "public", "created_at"),
        _message_row,
    ),
    base.Rating: UpsertSpec(
        "rating",
        (
            "id",
            "ticket_id",
            "connector",
            "kind",
            "score",
            "scale_min",
            "scale_max",
            "comment",
            "agent_id",
            "rated_at",
        ),
        _rating_row,
    ),
    base.Person: UpsertSpec(
        "person", ("id", "connector", "external_id", "name", "email", "role"), _person_row
    ),
    base.Group: UpsertSpec("grp", ("id", "connector", "external_id", "name"), _group_row),
    base.Organization: UpsertSpec(
        "organization", ("id", "connector", "external_id", "name", "created_at"), _organization_row
    ),
}

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def upsert_records(conn: Connection, connector: str, records: Iterable[base.Record]) -> int:
    """Upsert records of any mix of types; returns how many were written."""
    by_type: dict[type, list[Row]] = {}
    for record in records:
        spec = UPSERTS[type(record)]
        by_type.setdefault(type(record), []).append(spec.build(connector, record))
    placeholder = _PLACEHOLDERS[conn.dialect.paramstyle]
    written = 0
    for kind, rows in by_type.items():
        conn.exec_driver_sql(UPSERTS[kind].sql(placeholder), rows)
        written += len(rows)
    return written
