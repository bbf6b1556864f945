"""Sync bookkeeping: per-stream cursors (``sync_state``) and per-run records (``sync_run``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text

from cskpi.core.store.lease import Me, pid_exists
from cskpi.core.store.schema import from_epoch, to_epoch


@dataclass(frozen=True)
class StreamState:
    connector: str
    stream: str
    cursor: str | None
    position: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    rows: int


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def load_state(conn: Connection, connector: str, stream: str) -> StreamState | None:
    row = conn.execute(
        text(
            "SELECT cursor, position, last_success_at, last_error, rows FROM sync_state "
            "WHERE connector = :c AND stream = :s"
        ),
        {"c": connector, "s": stream},
    ).first()
    if row is None:
        return None
    return StreamState(
        connector, stream, row[0], from_epoch(row[1]), from_epoch(row[2]), row[3], row[4]
    )


def all_states(engine: Engine) -> list[StreamState]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT connector, stream, cursor, position, last_success_at, last_error, rows "
                "FROM sync_state ORDER BY connector, stream"
            )
        ).all()
    return [
        StreamState(r[0], r[1], r[2], from_epoch(r[3]), from_epoch(r[4]), r[5], r[6]) for r in rows
    ]


# The stored cursor never moves back, even when two processes sync one stream at once (the
# daemon, and `cskpi sync --since` backfilling): a cursor is kept only when its position is
# at or past the stored one, or either is unknown (then the sync engine's own rules apply).
# The test reads the row as last committed: PostgreSQL's ON CONFLICT DO UPDATE locks the
# conflicting row and evaluates SET on its newest version, and SQLite has one writer.
# https://www.postgresql.org/docs/15/sql-insert.html#SQL-ON-CONFLICT
_FORWARD = (
    "excluded.position IS NULL OR sync_state.position IS NULL "
    "OR excluded.position >= sync_state.position"
)
_UPSERT_STATE = (
    "INSERT INTO sync_state (connector, stream, cursor, position, rows) "  # noqa: S608
    "VALUES (:c, :s, :cursor, :position, :rows) ON CONFLICT (connector, stream) DO UPDATE SET "
    f"cursor = CASE WHEN {_FORWARD} THEN excluded.cursor ELSE sync_state.cursor END, "
    f"position = CASE WHEN {_FORWARD} THEN excluded.position ELSE sync_state.position END, "
    "rows = sync_state.rows + excluded.rows"
)
_ADD_ROWS = (
    "INSERT INTO sync_state (connector, stream, rows) VALUES (:c, :s, :rows) "
    "ON CONFLICT (connector, stream) DO UPDATE SET rows = sync_state.rows + excluded.rows"
)


def save_progress(
    conn: Connection,
    connector: str,
    stream: str,
    rows: int,
    checkpoint: tuple[str, datetime | None] | None,
) -> None:
    """Count the rows of a page and, when given, move the cursor: same transaction as the rows."""
    params: dict[str, Any] = {"c": connector, "s": stream, "rows": rows}
    if checkpoint is None:
        conn.execute(text(_ADD_ROWS), params)
        return
    cursor, position = checkpoint
    conn.execute(text(_UPSERT_STATE), {**params, "cursor": cursor, "position": to_epoch(position)})


def finish_stream(conn: Connection, connector: str, stream: str, error: str | None) -> None:
    """Record the outcome of one stream: success time, or the error (success time kept)."""
    sql = (
        "INSERT INTO sync_state (connector, stream, last_success_at, last_error, rows) "
        "VALUES (:c, :s, :t, :e, 0) ON CONFLICT (connector, stream) DO UPDATE SET "
        + (
            "last_error = excluded.last_error"
            if error
            else "last_success_at = excluded.last_success_at, last_error = NULL"
        )
    )
    conn.execute(
        text(sql),
        {"c": connector, "s": stream, "t": None if error else to_epoch(now()), "e": error},
    )


RunStatus = Literal["running", "ok", "failed", "interrupted"]


def start_run(conn: Connection, connector: str) -> int:
    """Record a run of ``connector`` as running, by this process (see ``end_dead_runs``)."""
    me = Me()
    run_id = conn.execute(
        text(
            "INSERT INTO sync_run (connector, started_at, status, rows, skipped, pid, host) "
            "VALUES (:c, :t, 'running', 0, 0, :pid, :host) RETURNING id"
        ),
        {"c": connector, "t": to_epoch(now()), "pid": me.pid, "host": me.host},
    ).scalar_one()
    return int(run_id)


def finish_run(
    conn: Connection, run_id: int, rows: int, skipped: int, error: str | None, *, stopped: bool
) -> None:
    """Record how a run ended: failed (an error), interrupted (told to stop), or ok."""
    status: RunStatus = "failed" if error else "interrupted" if stopped else "ok"
    conn.execute(
        text(
            "UPDATE sync_run SET finished_at = :t, status = :st, rows = :r, skipped = :k, "
            "error = :e WHERE id = :id"
        ),
        {"t": to_epoch(now()), "st": status, "r": rows, "k": skipped, "e": error, "id": run_id},
    )


def end_dead_runs(conn: Connection) -> int:
    """Mark ``interrupted`` the runs still ``running`` whose process on this host is gone (a
    kill -9, a power cut); returns how many. Another host's runs are its own to judge."""
    me = Me()
    rows = conn.execute(
        text("SELECT id, pid FROM sync_run WHERE status = 'running' AND host = :h"),
        {"h": me.host},
    ).all()
    dead = [run_id for run_id, pid in rows if pid is not None and not pid_exists(pid)]
    for run_id in dead:
        conn.execute(
            text(
                "UPDATE sync_run SET status = 'interrupted', error = :e WHERE id = :id "
                "AND status = 'running'"
            ),
            {"id": run_id, "e": "the process ended during the run"},
        )
    return len(dead)


@dataclass(frozen=True)
class RunInfo:
    connector: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    rows: int
    skipped: int
    error: str | None


def last_runs(engine: Engine) -> list[RunInfo]:
    """Each connector's newest run."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT connector, started_at, finished_at, status, rows, skipped, error "
                "FROM sync_run WHERE id IN (SELECT MAX(id) FROM sync_run GROUP BY connector) "
                "ORDER BY connector"
            )
        ).all()
    return [
        RunInfo(r[0], from_epoch(r[1]) or now(), from_epoch(r[2]), r[3], r[4], r[5], r[6])
        for r in rows
    ]
