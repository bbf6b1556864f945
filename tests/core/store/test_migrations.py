import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import cskpi.core.store.schema  # noqa: F401  (registers the tables)
from cskpi.connectors.base import Page
from cskpi.core.store.dialect import make_engine
from cskpi.core.store.migrations import MIGRATIONS, applied, m001_tables, migrate
from cskpi.core.store.pages import store_page
from cskpi.core.store.reads.columns import read
from cskpi.core.store.sync_state import start_run
from tests.fakes import ticket
from tests.postgres import DIALECTS, empty_store


def shape(engine):
    insp = inspect(engine)
    tables = {}
    for name in insp.get_table_names():
        if name == "_migrations":
            continue
        cols = {
            c["name"]: (
                c["nullable"],
                type(c["type"]).__name__,
                getattr(c["type"], "collation", None),  # PostgreSQL's ids: "C"
            )
            for c in insp.get_columns(name)
        }
        pk = tuple(insp.get_pk_constraint(name)["constrained_columns"])
        idx = sorted(i["name"] for i in insp.get_indexes(name))
        tables[name] = (cols, pk, idx)
    return tables


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_migrations_build_exactly_the_declared_schema(request, dialect, tmp_path):
    migrated = make_engine(empty_store(request, dialect, tmp_path))
    migrate(migrated)
    declared = create_engine(empty_store(request, dialect, tmp_path))
    SQLModel.metadata.create_all(declared)
    assert shape(migrated) == shape(declared)
    migrated.dispose()
    declared.dispose()


def test_an_older_database_upgrades_in_place(request, dialect, tmp_path):
    engine = make_engine(empty_store(request, dialect, tmp_path))
    assert migrate(engine, (m001_tables,)) == ["m001_tables"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ticket (id, connector, external_id, status, tags, created_at, "
                "updated_at, agent_replies, reopens, group_changes, assignee_changes, deleted) "
                "VALUES ('zd:1', 'zd', '1', 'open', '[]', 1, 2, 0, 0, 0, 0, FALSE)"
            )
        )
    assert migrate(engine) == [m.__name__ for m in MIGRATIONS[1:]]
    assert applied(engine) == [m.__name__ for m in MIGRATIONS]
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM ticket")).scalar_one() == "zd:1"
    assert "ix_ticket_created_at" in {i["name"] for i in inspect(engine).get_indexes("ticket")}
    engine.dispose()


def test_processes_migrating_at_once_each_find_it_done_once(request, dialect, tmp_path):
    """Two processes starting on a new database together (the daemon and a manual sync):
    every migration runs once, neither fails."""
    url = empty_store(request, dialect, tmp_path)
    engines = [make_engine(url) for _ in range(3)]
    with ThreadPoolExecutor(len(engines)) as pool:
        ran = list(pool.map(migrate, engines))
    assert sorted(name for names in ran for name in names) == sorted(m.__name__ for m in MIGRATIONS)
    assert applied(engines[0]) == [m.__name__ for m in MIGRATIONS]
    for engine in engines:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_a_role_without_create_privilege_uses_an_up_to_date_store(pg_server, tmp_path):
    """docs/postgres.md: the daemon may run as a role with only SELECT, INSERT, UPDATE and
    DELETE (and the TEMPORARY that PUBLIC has by default) once the owner has migrated."""
    role = f"app_{os.getpid()}"
    url = pg_server.fresh()
    pg_server.admin(f"DROP ROLE IF EXISTS {role}")
    pg_server.admin(f"CREATE ROLE {role} LOGIN")
    owner = make_engine(url)
    with owner.begin() as conn:
        conn.execute(text(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        )
        conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    owner.dispose()
    app = make_engine(url.replace(f"//{pg_server.user}@", f"//{role}@"))
    assert migrate(app) == []
    with app.begin() as conn:
        assert start_run(conn, "zd") == 1
    # a sync's pages: inserted when new, upserted when stored
    store_page(app, "zd", Page([ticket(1)]))
    store_page(app, "zd", Page([ticket(1, status="solved")]))
    # a report's reads: two connections sharing an exported snapshot
    (count,), (status,) = read(
        app, ["SELECT COUNT(*) FROM ticket", "SELECT status FROM ticket"], {}
    )
    assert (count.tolist(), status.tolist()) == ([1], ["solved"])
    app.dispose()
    pg_server.drop(url)
    pg_server.admin(f"DROP ROLE {role}")


def test_postgresql_ids_compare_byte_by_byte(request, tmp_path):
    """The ids and the references joined to them take the "C" collation (schema.ID),
    whatever the database's default; other text keeps the default."""
    engine = make_engine(empty_store(request, "postgresql", tmp_path))
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name || '.' || column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND collation_name = 'C' ORDER BY 1"
            )
        ).scalars()
        found = list(rows)
    engine.dispose()
    assert found == [
        "grp.id", "message.id", "message.ticket_id", "organization.id", "person.id",
        "rating.id", "rating.ticket_id", "status_change.ticket_id", "ticket.id",
        "vendor_metric.ticket_id",
    ]  # fmt: skip


def test_postgresql_ids_keep_their_statistics_through_the_collation_change(request, tmp_path):
    """ALTER COLUMN TYPE drops a column's statistics; m006 gathers them again, or the
    planner would scan every message for a report (see the migration)."""
    engine = make_engine(empty_store(request, "postgresql", tmp_path))
    migrate(engine, MIGRATIONS[:5])
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO message (id, ticket_id, author_role, public, created_at) "
                "SELECT 'zd:m' || i, 'zd:' || (i / 4), 'customer', TRUE, i "
                "FROM generate_series(1, 400) AS i"
            )
        )
        conn.execute(text("ANALYZE message"))
    stats = "SELECT COUNT(*) FROM pg_stats WHERE tablename = 'message' AND attname = 'ticket_id'"
    with engine.connect() as conn:
        before = conn.execute(text(stats)).scalar_one()
    assert migrate(engine, MIGRATIONS[:6]) == ["m006_ids_in_byte_order"]
    with engine.connect() as conn:
        after = conn.execute(text(stats)).scalar_one()
    engine.dispose()
    assert (before, after) == (1, 1)


def test_m009_keeps_the_ratings_and_lets_a_survey_go_unanswered(request, dialect, tmp_path):
    """A store made before m009 keeps its ratings (and the rated_at index); afterwards a
    rating may have no score and an offer time, and vendor_metric exists."""
    engine = make_engine(empty_store(request, dialect, tmp_path))
    before = tuple(m for m in MIGRATIONS if m.__name__ < "m009")
    migrate(engine, before)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO rating (id, ticket_id, connector, kind, score, scale_min, scale_max, "
            "comment, agent_id, rated_at) VALUES ('zd:7', 'zd:1', 'zd', 'csat', 1, 0, 1, "
            "'thanks', 'zd:361', 1700000000)"
        ))  # fmt: skip
    assert migrate(engine) == [
        "m009_vendor_metric",
        "m010_alert_run",
        "m011_message_created_at_index",
    ]
    with engine.begin() as conn:
        kept = conn.execute(text(
            "SELECT id, ticket_id, connector, kind, score, scale_min, scale_max, comment, "
            "agent_id, rated_at, offered_at FROM rating"
        )).all()  # fmt: skip
        conn.execute(text(
            "INSERT INTO rating (id, connector, kind, score, scale_min, scale_max, rated_at, "
            "offered_at) VALUES ('zd:8', 'zd', 'csat', NULL, 0, 1, 5, 5)"
        ))  # fmt: skip
        conn.execute(text(
            "INSERT INTO vendor_metric (ticket_id, name, seconds, connector) "
            "VALUES ('zd:1', 'reply_time', 120, 'zd')"
        ))  # fmt: skip
    assert [tuple(r) for r in kept] == [
        ("zd:7", "zd:1", "zd", "csat", 1.0, 0.0, 1.0, "thanks", "zd:361", 1700000000, None)
    ]
    assert "ix_rating_rated_at" in {i["name"] for i in inspect(engine).get_indexes("rating")}
    engine.dispose()
