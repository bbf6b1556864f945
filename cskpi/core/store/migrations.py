"""Schema migrations: named functions, each applied once and recorded in ``_migrations``.

A migration is frozen once released: it describes the schema as it was, so a database made
by any older version upgrades in place by running the ones it lacks, in order. Never edit a
released migration; add the next one. ``tests/core/test_migrations.py`` checks that the
migrated schema equals the tables declared in ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    inspect,
    text,
)
from sqlalchemy.types import TypeEngine

from cskpi.core.store.dialect import sql_for

Migration = Callable[[Connection], None]


def _req(name: str, kind: type[TypeEngine[Any]] | TypeEngine[Any]) -> Column[Any]:
    return Column(name, kind, nullable=False)


def _opt(name: str, kind: type[TypeEngine[Any]] | TypeEngine[Any] = String) -> Column[Any]:
    return Column(name, kind, nullable=True)


def _pk(name: str, kind: type[TypeEngine[Any]] | TypeEngine[Any] = String) -> Column[Any]:
    return Column(name, kind, primary_key=True)


def _entity(md: MetaData, name: str, *extra: Column[Any]) -> Table:
    return Table(
        name, md, _pk("id"), _req("connector", String), _req("external_id", String),
        _opt("name"), *extra,
    )  # fmt: skip


def m001_tables(conn: Connection) -> None:
    md = MetaData()
    Table(
        "ticket", md, _pk("id"), _req("connector", String), _req("external_id", String),
        _opt("subject"), _req("status", String), _opt("raw_status"), _opt("priority"),
        _opt("channel"), _opt("type"), _req("tags", JSON), _opt("requester_id"),
        _opt("organization_id"), _opt("assignee_id"), _opt("group_id"),
        _req("created_at", BigInteger), _req("updated_at", BigInteger),
        _opt("first_reply_at", BigInteger), _opt("first_solved_at", BigInteger),
        _opt("solved_at", BigInteger), _opt("closed_at", BigInteger),
        _req("agent_replies", Integer), _req("reopens", Integer),
        _req("group_changes", Integer), _req("assignee_changes", Integer),
        _req("deleted", Boolean),
    )  # fmt: skip
    Table(
        "message", md, _pk("id"), _req("ticket_id", String), _opt("author_id"),
        _req("author_role", String), _req("public", Boolean), _req("created_at", BigInteger),
    )  # fmt: skip
    Table(
        "rating", md, _pk("id"), _opt("ticket_id"), _req("connector", String),
        _req("kind", String), _req("score", Float), _req("scale_min", Float),
        _req("scale_max", Float), _opt("comment"), _opt("agent_id"),
        _req("rated_at", BigInteger),
    )  # fmt: skip
    _entity(md, "person", _opt("email"), _req("role", String))
    _entity(md, "grp")
    _entity(
        md, "organization", _opt("mrr", Float), _opt("created_at", BigInteger),
        _opt("churned_at", BigInteger),
    )  # fmt: skip
    Table(
        "sync_state", md, _pk("connector"), _pk("stream"), _opt("cursor"),
        _opt("position", BigInteger), _opt("last_success_at", BigInteger),
        _opt("last_error"), _req("rows", BigInteger),
    )  # fmt: skip
    Table(
        "sync_run", md, _pk("id", Integer), _req("connector", String),
        _req("started_at", BigInteger), _opt("finished_at", BigInteger),
        _req("status", String), _req("rows", Integer), _req("skipped", Integer), _opt("error"),
    )  # fmt: skip
    Table(
        "digest_run", md, _pk("digest"), _pk("window_from", BigInteger),
        _pk("window_to", BigInteger), _pk("target"), _opt("sent_at", BigInteger),
        _req("status", String), _opt("error"),
    )  # fmt: skip
    md.create_all(conn)


def m002_indexes(conn: Connection) -> None:
    """Indexes for the KPI windows and a ticket's messages; no more, each one slows writes."""
    md = MetaData()
    md.reflect(conn)
    wanted = {
        "ticket": ["created_at", "solved_at"],
        "message": ["ticket_id"],
        "rating": ["rated_at"],
    }
    for table, columns in wanted.items():
        for column in columns:
            Index(f"ix_{table}_{column}", md.tables[table].c[column]).create(conn)


def m003_backlog_index(conn: Connection) -> None:
    """The backlog is read by status; without this it scans every ticket ever stored."""
    conn.execute(text("CREATE INDEX ix_ticket_status_created_at ON ticket (status, created_at)"))


def m004_daemon(conn: Connection) -> None:
    """Who runs `cskpi run` on this database, and its heartbeat (see store/lease.py)."""
    md = MetaData()
    Table(
        "daemon", md, _pk("id", Integer), _req("pid", Integer), _req("host", String),
        _req("started_at", BigInteger), _req("heartbeat_at", BigInteger), _req("jobs", String),
    )  # fmt: skip
    md.create_all(conn)


def m005_deleted_tickets_index(conn: Connection) -> None:
    """The deleted tickets alone, so a report drops their ratings without reading the ticket
    of every rating (a partial index: SQLite and PostgreSQL both have them)."""
    conn.execute(text("CREATE INDEX ix_ticket_deleted ON ticket (id) WHERE deleted = TRUE"))


def m006_ids_in_byte_order(conn: Connection) -> None:
    """On PostgreSQL the ids, and the references joined to them, take the "C" collation
    (see schema.ID); the indexes on them are rebuilt, the rows stay as they are. SQLite
    compares text byte by byte already."""
    if conn.dialect.name != "postgresql":
        return
    columns = {
        "ticket": ["id"], "message": ["id", "ticket_id"], "rating": ["id", "ticket_id"],
        "person": ["id"], "grp": ["id"], "organization": ["id"],
    }  # fmt: skip
    for table, names in columns.items():
        changes = ", ".join(f'ALTER COLUMN {n} TYPE VARCHAR COLLATE "C"' for n in names)
        conn.execute(text(f"ALTER TABLE {table} {changes}"))
    # ALTER COLUMN TYPE drops the columns' statistics ("since it's now wrong type"), and
    # without them the planner took a hash join over every message for a report's 30-day
    # window (docs/performance.md). Autovacuum gathers them again only after
    # enough rows change.
    # https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/commands/tablecmds.c
    # (ATExecAlterColumnType, RemoveStatistics)
    conn.execute(text(f"ANALYZE {', '.join(columns)}"))


def m007_status_change(conn: Connection) -> None:
    """Every status change a source records (SPEC §3): the backlog at a past instant and
    the time in each status are read from it. A store synced before fills it as its
    connectors sync again, where the source keeps the history."""
    md = MetaData()
    Table(
        "status_change", md, _pk("ticket_id"), _pk("at", BigInteger), _pk("status"),
        _req("connector", String), sqlite_with_rowid=False,
    )  # fmt: skip
    md.create_all(conn)
    if conn.dialect.name == "postgresql":  # ids compare byte by byte (see m006)
        conn.execute(
            text('ALTER TABLE status_change ALTER COLUMN ticket_id TYPE VARCHAR COLLATE "C"')
        )


def m008_sync_run_owner(conn: Connection) -> None:
    """Which process runs a sync, so a run left ``running`` by a dead process can be told."""
    conn.execute(text("ALTER TABLE sync_run ADD COLUMN pid INTEGER"))
    conn.execute(text("ALTER TABLE sync_run ADD COLUMN host VARCHAR"))


def m009_vendor_metric(conn: Connection) -> None:
    """The vendors' own durations (SPEC §7 ``vendor_metric``), and surveys offered but not
    answered: a rating may have no score, and says when it was offered. SQLite cannot drop a
    NOT NULL, so there the rating table is copied into a new one (rows and index kept)."""
    md = MetaData()
    Table(
        "vendor_metric", md, _pk("ticket_id"), _pk("name"), _req("seconds", BigInteger),
        _req("connector", String), sqlite_with_rowid=False,
    )  # fmt: skip
    md.create_all(conn)
    if conn.dialect.name == "postgresql":
        conn.execute(
            text('ALTER TABLE vendor_metric ALTER COLUMN ticket_id TYPE VARCHAR COLLATE "C"')
        )
        conn.execute(text("ALTER TABLE rating ALTER COLUMN score DROP NOT NULL"))
        conn.execute(text("ALTER TABLE rating ADD COLUMN offered_at BIGINT"))
        return
    _rebuild_sqlite_rating(conn)


def _rebuild_sqlite_rating(conn: Connection) -> None:
    """rating with a nullable score and ``offered_at``: https://www.sqlite.org/lang_altertable.html
    (section 7, "making other kinds of table schema changes")."""
    md = MetaData()
    columns = (
        "id", "ticket_id", "connector", "kind", "score", "scale_min", "scale_max", "comment",
        "agent_id", "rated_at",
    )  # fmt: skip
    Table(
        "rating_m009", md, _pk("id"), _opt("ticket_id"), _req("connector", String),
        _req("kind", String), _opt("score", Float), _req("scale_min", Float),
        _req("scale_max", Float), _opt("comment"), _opt("agent_id"),
        _req("rated_at", BigInteger), _opt("offered_at", BigInteger),
    )  # fmt: skip
    md.create_all(conn)
    names = ", ".join(columns)
    conn.execute(text(f"INSERT INTO rating_m009 ({names}) SELECT {names} FROM rating"))  # noqa: S608
    conn.execute(text("DROP TABLE rating"))
    conn.execute(text("ALTER TABLE rating_m009 RENAME TO rating"))
    conn.execute(text("CREATE INDEX ix_rating_rated_at ON rating (rated_at)"))


def m010_alert_run(conn: Connection) -> None:
    """Each alert fires once per key, bucket and target (SPEC §8), as ``digest_run`` does
    for digests; the value and the usual value are kept for the report of alerts fired."""
    md = MetaData()
    Table(
        "alert_run", md, _pk("alert"), _pk("key"), _pk("bucket_from", BigInteger),
        _pk("target"), _req("bucket_to", BigInteger), _opt("value", Float),
        _opt("usual", Float), _opt("sent_at", BigInteger), _req("status", String),
        _opt("error"),
    )  # fmt: skip
    md.create_all(conn)


def m011_message_created_at_index(conn: Connection) -> None:
    """The activity KPIs (public replies, internal notes, tickets touched, active agents) read
    the messages written in a window; without this they read every message ever stored."""
    conn.execute(text("CREATE INDEX ix_message_created_at ON message (created_at)"))


MIGRATIONS: tuple[Migration, ...] = (
    m001_tables,
    m002_indexes,
    m003_backlog_index,
    m004_daemon,
    m005_deleted_tickets_index,
    m006_ids_in_byte_order,
    m007_status_change,
    m008_sync_run_owner,
    m009_vendor_metric,
    m010_alert_run,
    m011_message_created_at_index,
)

_LEDGER = "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at BIGINT)"


# Two processes starting on a new PostgreSQL database at once would both create the ledger
# and run m001; an advisory lock makes the second wait and then find the work done.
# (SQLite writers already queue: the migrations run in BEGIN IMMEDIATE transactions.)
_LOCK = "cskpi.migrations"


def applied(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        # Asked first: a role without the CREATE privilege may use an up-to-date store.
        exists = inspect(conn).has_table("_migrations")
    if not exists:
        with engine.connect().execution_options(cskpi_write=True) as conn, conn.begin():
            sql_for(conn).lock(conn, _LOCK)
            conn.execute(text(_LEDGER))
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT name FROM _migrations ORDER BY name")).scalars())


def migrate(engine: Engine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply the migrations this database lacks, each in its own transaction."""
    done = set(applied(engine))
    ran: list[str] = []
    for migration in migrations:
        if migration.__name__ in done:
            continue
        with engine.connect().execution_options(cskpi_write=True) as conn, conn.begin():
            # Re-check under the write lock: another process may have migrated meanwhile.
            sql_for(conn).lock(conn, _LOCK)
            again = conn.execute(
                text("SELECT 1 FROM _migrations WHERE name = :n"), {"n": migration.__name__}
            ).first()
            if again is None:
                migration(conn)
                conn.execute(
                    text("INSERT INTO _migrations (name, applied_at) VALUES (:n, :t)"),
                    {"n": migration.__name__, "t": int(datetime.now(UTC).timestamp())},
                )
                ran.append(migration.__name__)
    return ran
