from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import cskpi.core.schema  # noqa: F401  (registers the tables)
from cskpi.core.db import make_engine
from cskpi.core.migrations import MIGRATIONS, applied, m001_tables, migrate


def shape(engine):
    insp = inspect(engine)
    tables = {}
    for name in insp.get_table_names():
        if name == "_migrations":
            continue
        cols = {
            c["name"]: (c["nullable"], type(c["type"]).__name__) for c in insp.get_columns(name)
        }
        pk = tuple(insp.get_pk_constraint(name)["constrained_columns"])
        idx = sorted(i["name"] for i in insp.get_indexes(name))
        tables[name] = (cols, pk, idx)
    return tables


def test_migrations_build_exactly_the_declared_schema(tmp_path):
    migrated = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(migrated)
    declared = create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    SQLModel.metadata.create_all(declared)
    assert shape(migrated) == shape(declared)


def test_an_older_database_upgrades_in_place(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrate(engine, (m001_tables,)) == ["m001_tables"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ticket (id, connector, external_id, status, tags, created_at, "
                "updated_at, agent_replies, reopens, group_changes, assignee_changes, deleted) "
                "VALUES ('zd:1', 'zd', '1', 'open', '[]', 1, 2, 0, 0, 0, 0, 0)"
            )
        )
    assert migrate(engine) == [m.__name__ for m in MIGRATIONS[1:]]
    assert applied(engine) == [m.__name__ for m in MIGRATIONS]
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM ticket")).scalar_one() == "zd:1"
    assert "ix_ticket_created_at" in {i["name"] for i in inspect(engine).get_indexes("ticket")}


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
