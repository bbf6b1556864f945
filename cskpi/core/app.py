"""What each command does, as functions that return data; ``cli.py`` only renders it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from cskpi.connectors.base import ConnectorFactory
from cskpi.core.config import Config
from cskpi.core.db import open_engine
from cskpi.core.secrets import redact
from cskpi.core.state import StreamState, all_states
from cskpi.core.sync import Source, SyncObserver, SyncReport, run_sync


class UsageError(ValueError):
    """Bad command-line usage (exit 2)."""


def build_sources(
    config: Config, types: Mapping[str, ConnectorFactory], only: Sequence[str] = ()
) -> list[Source]:
    unknown = [name for name in only if name not in config.connectors]
    if unknown:
        raise UsageError(
            f"no connector named {unknown[0]!r} in {config.path.name}; "
            f"configured: {', '.join(config.connectors) or 'none'}"
        )
    return [
        Source(name, types[settings.type](name, settings), settings.start_date)
        for name, settings in config.connectors.items()
        if not only or name in only
    ]


def sync(
    config: Config,
    types: Mapping[str, ConnectorFactory],
    *,
    only: Sequence[str] = (),
    since: datetime | None = None,
    full: bool = False,
    observer: SyncObserver | None = None,
) -> SyncReport:
    sources = build_sources(config, types, only)
    engine = open_engine(config.database)
    try:
        return run_sync(engine, sources, since=since, full=full, observer=observer)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class CheckResult:
    connector: str
    ok: bool
    detail: str


def check(config: Config, types: Mapping[str, ConnectorFactory]) -> list[CheckResult]:
    """One cheap authenticated call per connector."""
    results = []
    for source in build_sources(config, types):
        try:
            source.connector.check()
        except Exception as exc:
            results.append(CheckResult(source.name, False, redact(f"{type(exc).__name__}: {exc}")))
        else:
            results.append(CheckResult(source.name, True, "ok"))
    return results


@dataclass(frozen=True)
class Status:
    streams: list[StreamState]
    stored: dict[str, dict[str, int]]  # connector -> table -> rows


_COUNTED = ("ticket", "message", "rating", "person", "grp", "organization")


def stored_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Rows stored per connector and table (messages counted through their ticket)."""
    counts: dict[str, dict[str, int]] = {}
    queries = {
        table: f"SELECT connector, COUNT(*) FROM {table} GROUP BY connector"  # noqa: S608
        for table in _COUNTED
        if table != "message"
    }
    queries["message"] = (
        "SELECT t.connector, COUNT(*) FROM message m JOIN ticket t ON t.id = m.ticket_id "
        "GROUP BY t.connector"
    )
    with engine.connect() as conn:
        for table in _COUNTED:
            for connector, n in conn.execute(text(queries[table])):
                counts.setdefault(connector, dict.fromkeys(_COUNTED, 0))[table] = n
    return counts


def status(config: Config) -> Status:
    engine = open_engine(config.database)
    try:
        return Status(all_states(engine), stored_counts(engine))
    finally:
        engine.dispose()
