"""What the end-to-end connector tests (``test_*_e2e.py``) share: a database file per test,
a sync as the scheduler would run it, and plain-SQL dumps of what was stored."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine

from cskpi.connectors.base import Connector
from cskpi.core.clock import Clock
from cskpi.core.store.engine import open_engine
from cskpi.core.store.sync_state import all_states
from cskpi.core.sync import Source, SyncReport, run_sync

TABLES = ("ticket", "message", "rating", "person", "grp", "organization", "status_change")
Row = tuple[object, ...]
Content = dict[str, list[Row]]


class PacedConnector(Connector, Protocol):
    """A connector instance as the HTTP connectors build it: named, pacing on a clock."""

    name: str
    clock: Clock


def database(folder: Path, name: str = "sync.db") -> Engine:
    return open_engine(f"sqlite:///{folder / name}")


def sync(engine: Engine, connector: PacedConnector) -> SyncReport:
    report = run_sync(engine, [Source(connector.name, connector)])
    connector.clock.sleep(15 * 60)  # the next scheduled run comes a quarter of an hour later
    return report


def rows(engine: Engine, sql: str) -> list[Row]:
    path = engine.url.database
    assert path is not None
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def content(engine: Engine) -> Content:
    return {t: rows(engine, f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in TABLES}


def by_id(table: list[Row]) -> dict[str, Row]:
    return {str(row[0]): row for row in table}


def cursors(engine: Engine) -> dict[str, str | None]:
    return {s.stream: s.cursor for s in all_states(engine)}


def positions(engine: Engine) -> dict[str, tuple[str | None, datetime | None]]:
    """Each stream's stored (cursor, position)."""
    return {s.stream: (s.cursor, s.position) for s in all_states(engine)}
