"""The daemon's lease on a database: one `cskpi run` per database, and its heartbeat.

The ``daemon`` table holds at most one row. A daemon claims it on start and refreshes
``heartbeat_at`` every ``HEARTBEAT_EVERY``; it deletes the row when it stops. A second
daemon refuses to start while that row belongs to a live process: one whose heartbeat is
younger than ``STALE_AFTER``, unless it ran on this host and its pid is gone (a ``kill -9``
leaves the row behind; the next start on the same host takes over at once, another host
after ``STALE_AFTER``). The claim runs in a write transaction, so two daemons starting at
the same moment cannot both win.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from cskpi.core.store.engine import write_transaction
from cskpi.core.store.schema import from_epoch, to_epoch

HEARTBEAT_EVERY = timedelta(seconds=15)
STALE_AFTER = timedelta(seconds=60)


class DaemonRunningError(RuntimeError):
    """Another live `cskpi run` holds this database."""


@dataclass(frozen=True)
class DaemonInfo:
    pid: int
    host: str
    started_at: datetime
    heartbeat_at: datetime
    jobs: dict[str, datetime | None] = field(default_factory=dict)

    def alive(self, now: datetime) -> bool:
        if now - self.heartbeat_at >= STALE_AFTER:
            return False
        return self.host != socket.gethostname() or pid_exists(self.pid)


@dataclass(frozen=True)
class Me:
    """This process, as the daemon row names it."""

    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _load(conn: Connection) -> DaemonInfo | None:
    row = conn.execute(
        text("SELECT pid, host, started_at, heartbeat_at, jobs FROM daemon WHERE id = 1")
    ).first()
    if row is None:
        return None
    listing: dict[str, str | None] = json.loads(row[4])
    jobs = {name: datetime.fromisoformat(at) if at else None for name, at in listing.items()}
    started, beat = from_epoch(row[2]), from_epoch(row[3])
    assert started is not None
    assert beat is not None
    return DaemonInfo(row[0], row[1], started, beat, jobs)


def load(engine: Engine) -> DaemonInfo | None:
    with engine.connect() as conn:
        return _load(conn)


def claim(engine: Engine, me: Me, now: datetime) -> None:
    """Take the lease, or raise naming the daemon that holds it."""
    with write_transaction(engine) as conn:
        current = _load(conn)
        if current and (current.pid, current.host) != (me.pid, me.host) and current.alive(now):
            raise DaemonRunningError(
                f"another `cskpi run` is using this database: pid {current.pid} on "
                f"{current.host}, running since {current.started_at:%Y-%m-%d %H:%M:%SZ}; "
                "stop it first"
            )
        conn.execute(text("DELETE FROM daemon"))
        conn.execute(
            text(
                "INSERT INTO daemon (id, pid, host, started_at, heartbeat_at, jobs) "
                "VALUES (1, :pid, :host, :now, :now, '{}')"
            ),
            {"pid": me.pid, "host": me.host, "now": to_epoch(now)},
        )


def beat(engine: Engine, me: Me, now: datetime, jobs: dict[str, datetime | None]) -> bool:
    """Refresh the heartbeat and the next run times; False if the lease was taken over."""
    listing = json.dumps({n: at.isoformat() if at else None for n, at in sorted(jobs.items())})
    with write_transaction(engine) as conn:
        updated = conn.execute(
            text(
                "UPDATE daemon SET heartbeat_at = :now, jobs = :jobs "
                "WHERE id = 1 AND pid = :pid AND host = :host"
            ),
            {"now": to_epoch(now), "jobs": listing, "pid": me.pid, "host": me.host},
        )
        return bool(updated.rowcount)


def release(engine: Engine, me: Me) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            text("DELETE FROM daemon WHERE pid = :pid AND host = :host"),
            {"pid": me.pid, "host": me.host},
        )
