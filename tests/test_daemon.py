"""`cskpi run` as a real process: it syncs on schedule, refuses a second daemon, reloads on
SIGHUP, and exits 0 within 10 s of SIGTERM, leaving no lease behind."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CONFIG = """\
database = "sqlite:///cskpi.db"
[connectors.demo]
type = "demo"
tickets = 400
days = 10
every = "1s"
"""


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def count(db: Path, where: str) -> int:
    """Finished sync runs matching ``where``; 0 while the daemon is still creating tables."""
    try:
        rows = query(db, f"SELECT COUNT(*) FROM sync_run WHERE status != 'running' AND {where}")
    except sqlite3.OperationalError:
        return 0
    return int(rows[0][0])  # type: ignore[call-overload]


def wait_for(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what.__doc__}")
        time.sleep(0.1)  # noqa: TID251 - polling a real subprocess, not a rate limit


def cskpi(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "cskpi", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    (tmp_path / "cskpi.toml").write_text(CONFIG)
    proc = cskpi("run", "-c", str(tmp_path / "cskpi.toml"), "--log-format", "json", cwd=tmp_path)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_run_syncs_refuses_a_second_reloads_and_stops_cleanly(
    tmp_path: Path, daemon: subprocess.Popen[str]
) -> None:
    db = tmp_path / "cskpi.db"

    def two_syncs_recorded() -> bool:
        return count(db, "connector = 'demo'") >= 2

    wait_for(two_syncs_recorded)
    assert query(db, "SELECT COUNT(*) FROM ticket") == [(400,)]
    assert query(db, "SELECT pid FROM daemon") == [(daemon.pid,)]

    second = cskpi("run", "-c", str(tmp_path / "cskpi.toml"), cwd=tmp_path)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 1
    assert f"pid {daemon.pid} on" in err

    (tmp_path / "cskpi.toml").write_text(
        CONFIG + CONFIG.split("\n", 1)[1].replace("demo]", "more]")
    )
    daemon.send_signal(signal.SIGHUP)

    def second_connector_synced() -> bool:
        return count(db, "connector = 'more'") >= 1

    wait_for(second_connector_synced)

    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=15)
    assert daemon.returncode == 0
    assert time.monotonic() - started < 10
    assert query(db, "SELECT COUNT(*) FROM daemon") == [(0,)]
    spans = query(db, "SELECT started_at, finished_at FROM sync_run WHERE connector = 'demo' "
                      "ORDER BY id")  # fmt: skip
    assert all(f is not None for _, f in spans)  # the last run, stopped by SIGTERM, finished
    for (_, previous_end), (start, _) in itertools.pairwise(spans):
        assert start >= previous_end  # type: ignore[operator]  # a sync never overlaps itself
    lines = [json.loads(line) for line in err.splitlines()]
    runs = [line for line in lines if line.get("job") == "sync:demo"]
    assert runs
    assert {line["status"] for line in runs} == {"ok"}
    assert runs[0]["rows"] >= 400
    assert all(isinstance(line["seconds"], float) for line in runs)
    assert any(line["message"].startswith("config reloaded") for line in lines)
