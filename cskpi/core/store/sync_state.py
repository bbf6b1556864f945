"""Sync bookkeeping: per-stream cursors (``sync_state``) and per-run records (``sync_run``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

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
    sql, params = progress(connector, stream, rows, checkpoint)
    conn.execute(text(sql), params)


def progress(
    connector: str, stream: str, rows: int, checkpoint: tuple[str, datetime | None] | None
) -> tuple[str, dict[str, Any]]:
    """``save_progress``'s statement and its ``:name`` binds, for a caller that runs it in
    its own transaction (``pages``)."""
    params: dict[str, Any] = {"c": connector, "s": stream, "rows": rows}
    if checkpoint is None:
        return _ADD_ROWS, params
    cursor, position = checkpoint
    return _UPSERT_STATE, {**params, "cursor": cursor, "position": to_epoch(position)}


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


def start_run(conn: Connection, connector: str) -> int:
    run_id = conn.execute(
        text(
            "INSERT INTO sync_run (connector, started_at, status, rows, skipped) "
            "VALUES (:c, :t, 'running', 0, 0) RETURNING id"
        ),
        {"c": connector, "t": to_epoch(now())},
    ).scalar_one()
    return int(run_id)


def finish_run(conn: Connection, run_id: int, rows: int, skipped: int, error: str | None) -> None:
    conn.execute(
        text(
            "UPDATE sync_run SET finished_at = :t, status = :st, rows = :r, skipped = :k, "
            "error = :e WHERE id = :id"
        ),
        {
            "t": to_epoch(now()),
            "st": "failed" if error else "ok",
            "r": rows,
            "k": skipped,
            "e": error,
            "id": run_id,
        },
    )
