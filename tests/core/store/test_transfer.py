"""`cskpi migrate-store`: a SQLite store copied into PostgreSQL (and into SQLite) is the same
store: every row, the KPIs, the cursors; the next sync run gets a fresh id."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cskpi.cli import app
from cskpi.connectors.demo.connector import DemoConnector, DemoSettings
from cskpi.core.config.periods import Window
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.store import sync_state as state
from cskpi.core.store import transfer as store_copy
from cskpi.core.store.dialect import SQLITE
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.transfer import StoreCopyError, copy_store
from cskpi.core.sync import Source, run_sync
from tests.core.kpis.kpi_reference import report_as_data
from tests.postgres import DIALECTS, empty_store, new_store

END = datetime(2026, 11, 1, tzinfo=UTC)
TABLES = ("ticket", "message", "rating", "person", "grp", "organization", "sync_state",
          "status_change", "sync_run", "digest_run", "alert_run", "vendor_metric")  # fmt: skip


@pytest.fixture
def source(tmp_path: Path) -> str:
    """A SQLite store after a demo sync, an import of account data and a sent digest."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url)
    settings = DemoSettings(tickets=400, days=30, seed=5, end=END, page_size=150)
    run_sync(engine, [Source("shop", DemoConnector("shop", settings))])
    with write_transaction(engine) as conn:
        conn.execute(text("UPDATE organization SET mrr = 120.5, churned_at = 1761955200"))
        conn.execute(
            text(
                "INSERT INTO digest_run (digest, window_from, window_to, target, sent_at, "
                "status) VALUES ('daily', 1, 2, 'slack', 3, 'sent')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO alert_run (alert, key, bucket_from, target, bucket_to, value, "
                "usual, sent_at, status) VALUES ('spike', 'vip', 1, 'slack', 2, 30, 10, 3, 'sent')"
            )
        )
    engine.dispose()
    return url


def dump(engine: Engine, table: str) -> list[tuple[object, ...]]:
    """Every row in a dialect-neutral form (booleans as 0/1, JSON tags as lists)."""
    order = {
        "sync_state": "connector, stream",
        "digest_run": "digest, target",
        "alert_run": "alert, key, target",
        "status_change": "ticket_id, at, status",
        "vendor_metric": "ticket_id, name",
    }.get(table, "id")
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}")).all()
    return [tuple(_neutral(v) for v in row) for row in rows]


def _neutral(value: object) -> object:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)  # SQLite hands JSON (tags) back as text
    return value


def kpis(engine: Engine, by: str | None = None) -> object:
    ctx = KpiContext(timezone=ZoneInfo("Europe/Berlin"))
    window = Window(END - timedelta(days=14), END, ctx.timezone, END)
    return report_as_data(compute(engine, window, ctx, by=by))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_copied_store_is_the_same_store(
    request: pytest.FixtureRequest, source: str, dialect: str, tmp_path: Path
) -> None:
    target = empty_store(request, dialect, tmp_path)
    report = copy_store(source, target)
    old, new = open_engine(source), open_engine(target)
    counts = {t.table: t.rows for t in report.tables}
    assert set(counts) == set(TABLES)
    assert counts["ticket"] == 400
    assert counts["digest_run"] == 1
    assert counts["alert_run"] == 1
    for table in TABLES:
        assert dump(new, table) == dump(old, table), table
    assert kpis(new) == kpis(old)
    assert kpis(new, by="tag") == kpis(old, by="tag")
    back = f"sqlite:///{tmp_path / 'back.db'}"  # and from that dialect back to SQLite
    assert copy_store(target, back).tables == report.tables
    again = open_engine(back)
    for table in TABLES:
        assert dump(again, table) == dump(old, table), table
    again.dispose()
    with write_transaction(new) as conn:  # the next run's id follows the copied ones
        assert state.start_run(conn, "shop") == counts["sync_run"] + 1
    old.dispose()
    new.dispose()


def test_a_target_with_data_is_refused_and_left_alone(
    request: pytest.FixtureRequest, source: str, tmp_path: Path
) -> None:
    target = new_store(request, "postgresql", tmp_path)
    copy_store(source, target)
    with pytest.raises(StoreCopyError, match=r"already holds data: ticket \(400 rows\)"):
        copy_store(source, target)
    engine = open_engine(target)
    assert len(dump(engine, "ticket")) == 400
    engine.dispose()


def test_a_count_that_does_not_verify_commits_nothing(
    request: pytest.FixtureRequest,
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = new_store(request, "postgresql", tmp_path)
    real = store_copy.count

    def lying(conn: object, table: object) -> int:  # the source "grew" during the copy
        n = real(conn, table)  # type: ignore[arg-type]
        return n + 1 if n and "sqlite" in str(conn.engine.url) else n  # type: ignore[attr-defined]

    monkeypatch.setattr(store_copy, "count", lying)
    with pytest.raises(StoreCopyError, match="nothing was committed"):
        copy_store(source, target)
    monkeypatch.undo()
    engine = open_engine(target)
    assert dump(engine, "ticket") == []
    engine.dispose()


def test_the_same_database_is_refused(source: str) -> None:
    with pytest.raises(StoreCopyError, match="the same database"):
        copy_store(source, source)


def test_cli_copies_the_configured_store(
    request: pytest.FixtureRequest, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("cskpi")  # the CLI sets up logging: undone after the test
    for attribute in ("handlers", "level", "propagate"):
        monkeypatch.setattr(logger, attribute, copy.copy(getattr(logger, attribute)))
    config = tmp_path / "cskpi.toml"
    config.write_text(f'database = "{source}"\n[connectors.d]\ntype = "demo"\n', encoding="utf-8")
    target = empty_store(request, "postgresql", tmp_path)
    result = CliRunner().invoke(app, ["migrate-store", "--to", target, "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "ticket                  400 rows" in result.output
    assert "counts verified" in result.output
    again = CliRunner().invoke(app, ["migrate-store", "--to", target, "-c", str(config)])
    assert again.exit_code == 1
    assert "already holds data" in again.output


def test_rows_are_copied_in_batches(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bulk insert per BATCH rows, not per row (5M rows one by one take hours)."""
    calls: list[tuple[str, int]] = []
    real = SQLITE.insert_rows

    def counting(conn: Any, table: Any, rows: Any) -> None:
        calls.append((table.name, len(rows)))
        real(conn, table, rows)

    monkeypatch.setattr(store_copy, "BATCH", 150)
    monkeypatch.setattr(type(SQLITE), "insert_rows", lambda self, *a: counting(*a))
    copy_store(source, f"sqlite:///{tmp_path / 'copy.db'}")
    assert [n for table, n in calls if table == "ticket"] == [150, 150, 100]
