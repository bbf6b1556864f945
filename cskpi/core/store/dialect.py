"""Everything that differs between SQLite and PostgreSQL, in one place.

The rest of the store writes one SQL text for both: timestamps are integer Unix seconds
(no time zone arithmetic in SQL: local time is placed in numpy), percentiles are computed
in numpy (no ``percentile_cont``), booleans are compared with ``TRUE``/``FALSE`` (SQLite
≥ 3.23 reads them as 1/0) and upserts use ``INSERT … ON CONFLICT … DO UPDATE``, which both
accept. What remains is below: engine setup, bind placeholders of the bulk upsert, the
integer row key the KPI engine groups by, iterating a ticket's JSON tags, planner hints,
read snapshots and the lock that serialises migrations.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeEngine

from cskpi.core.clock import SystemClock

Row = tuple[Any, ...]


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3, the driver the extra installs
    (SQLAlchemy would otherwise look for psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def connector_condition(
    connectors: Sequence[str], alias: str | None = None
) -> tuple[str, dict[str, Any]]:
    """`` AND …connector IN (…)`` keeping the rows of ``connectors`` (of table ``alias``),
    with its parameters; nothing when every connector counts."""
    if not connectors:
        return "", {}
    marks = ", ".join(f":c{n}" for n in range(len(connectors)))
    column = f"{alias}.connector" if alias else "connector"
    return f" AND {column} IN ({marks})", {f"c{n}": c for n, c in enumerate(connectors)}


def make_engine(url: str) -> Engine:
    """An engine set up for its dialect: SQLite for one writer and many readers (WAL, busy
    timeout, writers take the lock at BEGIN); PostgreSQL as it comes (row locks suffice)."""
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "postgresql":
        try:
            return create_engine(url, connect_args={"application_name": "cskpi"})
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"{exc}: a PostgreSQL store needs psycopg 3: pip install 'cskpi[postgres]'"
            ) from exc
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
    cur.execute("PRAGMA busy_timeout=30000")
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash in WAL mode
    # The indexes' upper levels stay in memory as a store grows past SQLite's default 2 MB
    # cache; a sync's inserts land all over its id and ticket indexes.
    cur.execute("PRAGMA cache_size=-16384")
    cur.close()


def _wal(cur: Any) -> None:
    """Switch a new database file to WAL. The switch needs an exclusive lock and SQLite
    answers "database is locked" at once, without its busy handler, when another process
    opening the same new file is switching too: wait for that one instead of failing."""
    clock = SystemClock()
    for attempt in range(200):  # 10 s
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            clock.sleep(0.05)


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock up front: a deferred transaction that reads and then writes can
    # fail with SQLITE_BUSY at once when another writer holds it, without waiting.
    immediate = conn.get_execution_options().get("cskpi_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass(frozen=True)
class Sql:
    """SQLite's spelling of the fragments that differ; ``Postgres`` overrides them."""

    name: str = "sqlite"

    def row_source(self, table: str, types: Sequence[str]) -> tuple[list[str], str]:
        """For the bulk upsert into ``table`` of rows with these column types: the SQL naming
        each value (the first value twice: it is the external id and the id's source) and
        the clause that supplies them, ``{}`` standing for the values.

        SQLite: one ``VALUES`` per row, ``executemany``; ``?1`` lets a value be used twice.
        """
        return ["?1"] + [f"?{i + 1}" for i in range(len(types))], "VALUES ({})"

    def write_rows(
        self, conn: Connection, sql: str, rows: list[Row], table: str, types: Sequence[str]
    ) -> int:
        """Run the upsert ``sql`` (made with ``row_source``) for ``rows``; returns how many
        rows it inserted or changed (an upsert whose WHERE skips a row does not count)."""
        # sqlite3's executemany rowcount is the sum of sqlite3_changes() over the rows.
        return max(conn.exec_driver_sql(sql, rows).rowcount, 0)

    def insert_rows(self, conn: Connection, table: Table, rows: list[Row]) -> None:
        """Plain bulk INSERT of whole rows, in the table's column order (a store copy)."""
        names = ", ".join(c.name for c in table.columns)
        marks = ", ".join("?" for _ in table.columns)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)  # noqa: S608

    def row_key(self, alias: str) -> str:
        """An integer naming a row, stable for the length of one read snapshot."""
        return f"{alias}.rowid"

    def tag_table(self, column: str, alias: str) -> str:
        """The elements of a JSON list as a table ``alias`` with one text column ``value``."""
        return f"json_each({column}) AS {alias}"

    def contains(self, text_sql: str, part_sql: str) -> str:
        """SQL true when the text (or JSON) ``text_sql`` contains ``part_sql`` as is."""
        return f"instr({text_sql}, {part_sql}) > 0"

    def differs(self, stored: Sequence[str], new: Sequence[str]) -> str:
        """SQL true when the values ``new`` differ from ``stored``, NULL equal to NULL."""
        # https://www.sqlite.org/rowvalue.html (row values compare with IS NOT)
        return f"({', '.join(stored)}) IS NOT ({', '.join(new)})"

    def unindexed(self, expression: str) -> str:
        # SQLite's documented way to keep the planner off an index on this column.
        # https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_
        return f"+{expression}"

    def indexed_by(self, table: str, index: str) -> str:
        """``table`` (with its alias) read through ``index``. SQLite's planner took the
        primary key over a smaller partial index that holds every row the query wants;
        ``INDEXED BY`` is its documented way to name the index (it fails if it is gone).
        https://www.sqlite.org/lang_indexedby.html"""
        return f"{table} INDEXED BY {index}"

    def begin_snapshot(self, conn: Connection) -> None:
        """Make the reads that follow see one snapshot."""
        for statement in self.snapshot_sql():
            conn.exec_driver_sql(statement)

    def snapshot_sql(self) -> tuple[str, ...]:
        """What a new transaction runs first to read one snapshot. SQLite needs nothing: the
        first statement opens a read transaction, and WAL readers see a fixed snapshot."""
        return ()

    def lock(self, conn: Connection, name: str) -> None:
        """Serialise writers of ``name`` until the transaction ends. SQLite writers run
        one at a time anyway (``BEGIN IMMEDIATE``)."""

    def continue_sequences(self, conn: Connection, table: Table) -> None:
        """After rows were inserted with their own integer ids (a store copy), make the
        next generated id follow them. SQLite takes the largest rowid plus one anyway."""


@dataclass(frozen=True)
class Postgres(Sql):
    name: str = "postgresql"

    def row_source(self, table: str, types: Sequence[str]) -> tuple[list[str], str]:
        # One statement per page and table, from a temporary table the page's rows were
        # copied into (`write_rows`): COPY takes them faster than any bound statement.
        # In id order, the order two writers of one store take their row locks in.
        names = [f"u.c{i}" for i in range(len(types))]
        return [names[0], *names], f"SELECT {{}} FROM {_stage(table)} AS u ORDER BY u.c0"  # noqa: S608

    def write_rows(
        self, conn: Connection, sql: str, rows: list[Row], table: str, types: Sequence[str]
    ) -> int:
        # The stage lives as long as the connection and is emptied at each commit; made
        # anew if a rolled-back transaction took it along.
        # https://www.postgresql.org/docs/15/sql-createtable.html (TEMPORARY, ON COMMIT)
        columns = ", ".join(f"c{i} {kind}" for i, kind in enumerate(types))
        stage = _stage(table)
        import psycopg

        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection), raw  # the driver make_engine picks
        cursor = raw.cursor()
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({columns}) ON COMMIT DELETE ROWS")
        # One statement cannot update a row twice ("ON CONFLICT DO UPDATE command cannot
        # affect row a second time"), so a page that repeats an id is written in layers:
        # every id's first row, then every second row, … which is the same as row by row.
        changed = 0
        for layer in layers(rows):
            with cursor.copy(f"COPY {stage} FROM STDIN") as copy:
                for row in layer:
                    copy.write_row(row)
            cursor.execute(sql)
            changed += max(cursor.rowcount, 0)  # INSERT 0 n: rows inserted or updated
            # Emptied at once: the same transaction may stage this table again (another
            # layer, another connector's records).
            cursor.execute(f"DELETE FROM {stage}")  # noqa: S608 (a constant name)
        return changed

    def insert_rows(self, conn: Connection, table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        names = ", ".join(c.name for c in table.columns)
        arrays = ", ".join(f"%b::{pg_type(c.type)}[]" for c in table.columns)
        sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608
        conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*rows, strict=True)))

    def row_key(self, alias: str) -> str:
        # PostgreSQL tables have no integer rowid; the tuple id (block, offset) is unique
        # and fixed within one snapshot, which `begin_snapshot` provides. Offsets < 2**16.
        # https://www.postgresql.org/docs/15/ddl-system-columns.html
        point = f"({alias}.ctid::text::point)"
        return f"({point}[0]::bigint * 65536 + {point}[1]::bigint)"

    def tag_table(self, column: str, alias: str) -> str:
        # https://www.postgresql.org/docs/15/functions-json.html (json_array_elements_text)
        return f"json_array_elements_text({column}) AS {alias}(value)"

    def contains(self, text_sql: str, part_sql: str) -> str:
        # json (not jsonb) keeps the text it was given. strpos is an exact, case-sensitive
        # search. https://www.postgresql.org/docs/15/functions-string.html
        return f"strpos({text_sql}::text, {part_sql}) > 0"

    def differs(self, stored: Sequence[str], new: Sequence[str]) -> str:
        # https://www.postgresql.org/docs/15/functions-comparisons.html#ROW-WISE-COMPARISON
        return f"({', '.join(stored)}) IS DISTINCT FROM ({', '.join(new)})"

    def unindexed(self, expression: str) -> str:
        return expression  # the cost-based planner picks the solved_at range itself

    def indexed_by(self, table: str, index: str) -> str:
        return table  # the cost-based planner picks the partial index itself

    def snapshot_sql(self) -> tuple[str, ...]:
        # The KPI populations are several queries; one REPEATABLE READ snapshot keeps them
        # consistent (and ctid row keys comparable) while a sync commits pages meanwhile.
        # https://www.postgresql.org/docs/15/transaction-iso.html#XACT-REPEATABLE-READ
        return (
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
            # The reads fetch a window's rows by index (a ticket's messages by ticket_id); with
            # the default random_page_cost of 4 (spinning disks) the planner scans every message
            # instead, twice as slow. For this transaction only, the value
            # the docs suggest when the data is mostly cached or on SSD.
            # https://www.postgresql.org/docs/15/runtime-config-query.html#GUC-RANDOM-PAGE-COST
            "SET LOCAL random_page_cost = 1.1",
            # The planner's cost estimate for a window's read passes jit_above_cost, but these
            # reads are too short to repay compiling them.
            # https://www.postgresql.org/docs/15/jit-decision.html
            "SET LOCAL jit = off",
        )

    def lock(self, conn: Connection, name: str) -> None:
        # A transaction-scoped advisory lock: released at COMMIT/ROLLBACK, even on a crash.
        # https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})

    def continue_sequences(self, conn: Connection, table: Table) -> None:
        # A SERIAL column's sequence does not see explicit ids: sync_run would collide.
        # https://www.postgresql.org/docs/15/functions-sequence.html
        column = table.autoincrement_column
        if column is None:
            return
        sql = (
            "SELECT setval(pg_get_serial_sequence(:t, :c), "  # noqa: S608 (schema names)
            f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
        )
        conn.execute(text(sql), {"t": table.name, "c": column.name})


def pg_type(kind: TypeEngine[Any]) -> str:
    """The PostgreSQL name of a column type (the bulk paths cast their arrays to it), without
    its collation (a column's collation applies to what is stored in it)."""
    name = str(kind.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    return name.split(" COLLATE ")[0]


def _stage(table: str) -> str:
    return f"cskpi_stage_{table}"


def layers(rows: list[Row]) -> list[list[Row]]:
    """Rows split so that no layer holds an id (first value) twice, order kept within ids."""
    if len(set(map(itemgetter(0), rows))) == len(rows):  # the common case, at C speed
        return [rows]
    layers: list[list[Row]] = []
    seen: dict[Any, int] = {}
    for row in rows:
        depth = seen.get(row[0], -1) + 1
        seen[row[0]] = depth
        if depth == len(layers):
            layers.append([])
        layers[depth].append(row)
    return layers


def lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for a name, in cskpi's own key space."""
    return (0x63736B70 << 32) | zlib.crc32(name.encode())  # 'cskp' + CRC-32: < 2**63


SQLITE = Sql()
POSTGRES = Postgres()


def sql_for(bind: Connection | Engine) -> Sql:
    return POSTGRES if bind.dialect.name == "postgresql" else SQLITE
