"""Engine, transactions and the bulk, idempotent upserts that store connector pages.

Pages are written per table with one hand-built ``INSERT … ON CONFLICT (id) DO UPDATE``
(SQLite ≥ 3.24 and PostgreSQL both take it; how the rows are bound is the dialect's, see
``dialect.py``): building ORM objects per row would cost more than the whole sync.
The row builders below are the bulk path's bind processors and must agree with the
column types in ``schema.py`` (integer Unix seconds, JSON text for tags).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine
from sqlmodel import SQLModel

from cskpi.connectors import base
from cskpi.core.store.dialect import POSTGRES, SQLITE, Row, Sql, pg_type, sql_for
from cskpi.core.store.dialect import make_engine as make_engine  # re-exported: the engine alone
from cskpi.core.store.migrations import migrate
from cskpi.core.store.schema import to_epoch


def open_engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(cskpi_write=True) as conn, conn.begin():
        yield conn


# --- the bulk path ----------------------------------------------------------------------


# The Arrow type a staged column is sent as, by its SQL type (``UpsertSpec.column_types``).
_ARROW_TYPES = {
    "VARCHAR": "string", "TEXT": "string", "JSON": "string",
    "BIGINT": "int64", "INTEGER": "int64", "BOOLEAN": "bool", "FLOAT": "float64",
}  # fmt: skip


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

    def column_types(self) -> list[str]:
        """The SQL type of each field (PostgreSQL's bulk path casts its arrays to them)."""
        table = SQLModel.metadata.tables[self.table]
        return [pg_type(table.c[f].type) if f in table.c else "TEXT" for f in self.fields.split()]

    def write(self, conn: Connection, connector: str, rows: list[Row]) -> None:
        """Upsert rows built by ``build`` in the dialect's bulk way (sorted by id in place:
        see ``upsert_records``)."""
        if rows:
            rows.sort(key=_first)
            dialect = sql_for(conn)
            dialect.write_rows(conn, self.sql(connector, dialect), rows)

    def sql(self, connector: str, dialect: Sql | bool = SQLITE) -> str:
        """The statement a page's rows are sent to (row source and binds: ``dialect``).
        ``True`` is the older spelling of SQLite's numbered binds; use ``write``."""
        if isinstance(dialect, bool):
            if not dialect:
                raise ValueError("unnumbered binds are the dialect's: use UpsertSpec.write")
            dialect = SQLITE
        return self._upsert(connector, *dialect.row_source(self.column_types()), dialect)

    def staged_sql(self, connector: str, stage: str, dialect: Sql = SQLITE) -> str:
        """The statement that upserts the rows of table ``stage`` (columns ``c0``, ``c1``, …
        in ``fields`` order, as ``arrow_table`` makes them). SQLite takes them in the order
        they were added, so a page's repeats of an id are applied as they come, like
        ``write``'s; PostgreSQL's stage holds each id once (``postgres_writes``) and takes
        them in id order."""
        columns = dialect.staged_values(self.column_types())
        # `WHERE true`: SQLite would read ON CONFLICT as a join's ON after a bare FROM.
        # https://www.sqlite.org/lang_upsert.html (2.2, parsing ambiguity)
        order = dialect.stage_order()
        source = f"SELECT {{}} FROM {stage} WHERE true ORDER BY {order}"  # noqa: S608
        return self._upsert(connector, [columns[0], *columns], source, dialect)

    def arrow_table(self, rows: list[Row]) -> Any:
        """The rows as an Arrow table of columns ``c0``, ``c1``, … typed as the table's."""
        import pyarrow as pa

        kinds = [pa.type_for_alias(_ARROW_TYPES[t]) for t in _column_types(self)]
        columns = zip(*rows, strict=True) if rows else ([] for _ in kinds)
        arrays = [pa.array(column, kind) for column, kind in zip(columns, kinds, strict=True)]
        return pa.table(arrays, names=[f"c{i}" for i in range(len(kinds))])

    def stored_sql(self, stage: str, columns: Sequence[str]) -> str:
        """PostgreSQL's statement that upserts the rows of table ``stage``, which holds them
        as they are stored (``columns`` of this table: ids prefixed, the connector filled
        in), each id once; in id order, the row locks' order (see ``upsert_records``)."""
        source = f"SELECT {{}} FROM {stage} ORDER BY id"  # noqa: S608 (names are constants)
        return self._insert({c: c for c in columns}, source, POSTGRES)

    def _upsert(self, connector: str, values: Sequence[str], source: str, dialect: Sql) -> str:
        return self._insert(self._targets(connector, values), source, dialect)

    def _insert(self, targets: dict[str, str], source: str, dialect: Sql) -> str:
        """The upsert of ``targets`` (column -> its value in ``source``'s SELECT list)."""
        news = {
            c: f"({self.table}.{c} OR excluded.{c})" if c in self.sticky else f"excluded.{c}"
            for c in targets
            if c != "id"
        }
        sets = ", ".join(f"{c} = {value}" for c, value in news.items())
        if self.keep_newer:
            where = f"excluded.updated_at >= {self.table}.updated_at"
        else:
            # A row sent again unchanged (a person comes with every ticket they raise) is left
            # alone: no new row version, index entries or WAL. The demo sync sends 0.96 people
            # a ticket (a 1M-ticket store holds 413K); over 50K tickets PostgreSQL's CPU for
            # the people's upserts fell from 16.6 to 14.4 us a ticket.
            text = self._json_columns()
            where = dialect.differs(
                [_as_text(f"{self.table}.{c}", c in text) for c in news],
                [_as_text(value, c in text) for c, value in news.items()],
            )
        # Table and column names are this module's constants; the connector name is quoted.
        return (
            f"INSERT INTO {self.table} ({', '.join(targets)}) "
            f"{source.format(', '.join(targets.values()))} "
            f"ON CONFLICT (id) DO UPDATE SET {sets} WHERE {where}"
        )

    def _json_columns(self) -> set[str]:
        table = SQLModel.metadata.tables[self.table]
        return {c.name for c in table.c if pg_type(c.type) == "JSON"}


def _as_text(sql: str, json: bool) -> str:
    """PostgreSQL's json type has no equality: such a column compares as its text."""
    return f"CAST({sql} AS TEXT)" if json else sql


def tags_json(tags: Sequence[str]) -> str:
    """The stored form of a ticket's tags (``Page.rows`` sources use it too)."""
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


@lru_cache(maxsize=16)
def _column_types(spec: UpsertSpec) -> list[str]:
    return spec.column_types()


@lru_cache(maxsize=256)
def _statement(kind: type, connector: str, dialect: Sql) -> str:
    return UPSERTS[kind].sql(connector, dialect)


@lru_cache(maxsize=256)
def staged_statement(spec: UpsertSpec, connector: str, stage: str, dialect: Sql = SQLITE) -> str:
    """``spec.staged_sql``, made once: a sync asks for it with every page, and making it
    compiles each column's type through SQLAlchemy (3 us a demo ticket, 7% of the process
    that makes the pages)."""
    return spec.staged_sql(connector, stage, dialect)


def upsert_records(
    conn: Connection,
    connector: str,
    records: Iterable[base.Record],
    built: Mapping[type[base.Record], list[Row]] | None = None,
) -> int:
    """Upsert records of any mix of types, and rows already built (``Page.rows``), the
    records after the rows of their type; returns how many were written.

    Tables are written in one fixed order and rows sorted by id, so two processes storing
    overlapping pages at once (the daemon and a backfill, on PostgreSQL) take their row
    locks in the same order and cannot deadlock; a stable sort keeps a page's repeats of
    one id in their order.
    """
    by_type = rows_by_type(records, built)
    dialect = sql_for(conn)
    for kind in UPSERTS:
        rows = by_type.get(kind)
        if rows:
            rows.sort(key=_first)
            dialect.write_rows(conn, _statement(kind, connector, dialect), rows)
    return sum(len(rows) for rows in by_type.values())


def rows_by_type(
    records: Iterable[base.Record], built: Mapping[type[base.Record], list[Row]] | None = None
) -> dict[type, list[Row]]:
    """Every record's row, after the rows already built, by record type (new lists)."""
    by_type: dict[type, list[Row]] = {kind: list(rows) for kind, rows in (built or {}).items()}
    for record in records:
        kind: type = type(record)
        rows = by_type.get(kind)
        if rows is None:
            rows = by_type[kind] = []
        rows.append(UPSERTS[kind].build(record))
    return by_type


def _first(row: Row) -> Any:
    return row[0]
