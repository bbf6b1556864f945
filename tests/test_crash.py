"""kill -9 in the middle of a sync, then sync again: the database equals a clean run's."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIG = """\
database = "sqlite:///cskpi.db"
[connectors.shop]
type = "demo"
tickets = 8000
days = 60
seed = 5
page_size = 500
end = 2026-11-01T00:00:00Z
"""

TOTAL = 8000  # the config's tickets: enough pages (500 each) for a kill to land mid-sync
TABLES = ("ticket", "message", "rating", "person", "grp", "organization", "status_change")


def sync(folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cskpi", "sync", "-c", str(folder / "cskpi.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def content(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall() for t in TABLES}


def stored_tickets(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM ticket").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_9_mid_sync_then_resume_equals_a_clean_run(tmp_path: Path) -> None:
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for folder in (killed, clean):
        folder.mkdir()
        (folder / "cskpi.toml").write_text(CONFIG)

    victim = sync(killed)
    deadline = time.monotonic() + 60
    while stored_tickets(killed / "cskpi.db") < 1500 and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.wait(timeout=0.02)  # polls the subprocess's progress
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    partial = stored_tickets(killed / "cskpi.db")
    assert 1500 <= partial < TOTAL, "the kill must land mid-sync"

    assert runs(killed / "cskpi.db") == ["running"]  # what kill -9 leaves behind
    status = subprocess.run(
        [sys.executable, "-m", "cskpi", "status", "-c", str(killed / "cskpi.toml")],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert "interrupted" in status.stdout
    assert runs(killed / "cskpi.db") == ["interrupted"]

    assert sync(killed).wait() == 0
    assert sync(clean).wait() == 0
    assert content(killed / "cskpi.db") == content(clean / "cskpi.db")
    assert stored_tickets(killed / "cskpi.db") == TOTAL
    assert runs(killed / "cskpi.db") == ["interrupted", "ok"]


def runs(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM sync_run ORDER BY id")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_sync_stops_after_the_page_and_records_the_run_interrupted(
    tmp_path: Path, sig: signal.Signals
) -> None:
    stopped, clean = tmp_path / "stopped", tmp_path / "clean"
    for folder in (stopped, clean):
        folder.mkdir()
        (folder / "cskpi.toml").write_text(CONFIG)
    victim = subprocess.Popen(
        [sys.executable, "-m", "cskpi", "sync", "-c", str(stopped / "cskpi.toml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while stored_tickets(stopped / "cskpi.db") < 1500 and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.wait(timeout=0.02)
    victim.send_signal(sig)
    _, err = victim.communicate(timeout=30)
    assert victim.returncode == 1, err
    assert b"stopping after the page being stored" in err
    assert b"Traceback" not in err
    partial = stored_tickets(stopped / "cskpi.db")
    assert 1500 <= partial < TOTAL, "the signal must land mid-sync"
    assert runs(stopped / "cskpi.db") == ["interrupted"]
    with sqlite3.connect(stopped / "cskpi.db") as conn:
        cursor = conn.execute("SELECT cursor FROM sync_state WHERE stream = 'tickets'").fetchone()
    assert int(cursor[0]) == partial  # the cursor stands at the last page stored
    assert sync(stopped).wait() == 0
    assert sync(clean).wait() == 0
    assert content(stopped / "cskpi.db") == content(clean / "cskpi.db")


def test_kill_9_mid_sync_on_postgresql_then_resume_equals_a_clean_run(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The same on PostgreSQL, where the pages are written by the worker process: pages it
    was handed before the kill may still commit (each with its cursor), and the resumed
    sync carries on from whatever cursor did."""
    from sqlalchemy import text

    from cskpi.core.store.engine import open_engine
    from tests.core.store.test_upserts import dump as stored
    from tests.postgres import new_store

    killed, clean = tmp_path / "killed", tmp_path / "clean"
    urls = {}
    for folder in (killed, clean):
        folder.mkdir()
        urls[folder] = new_store(request, "postgresql", tmp_path)
        config = CONFIG.replace('"sqlite:///cskpi.db"', f'"{urls[folder]}"')
        (folder / "cskpi.toml").write_text(config)

    def tickets(url: str) -> int:
        engine = open_engine(url)
        with engine.connect() as conn:
            n = int(conn.execute(text("SELECT COUNT(*) FROM ticket")).scalar_one())
        engine.dispose()
        return n

    def dump(url: str) -> dict[str, list[tuple[object, ...]]]:
        engine = open_engine(url)
        found = stored(engine)
        engine.dispose()
        return found

    victim = sync(killed)
    deadline = time.monotonic() + 60
    while tickets(urls[killed]) < 1500 and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.wait(timeout=0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert 1500 <= tickets(urls[killed]) < TOTAL, "the kill must land mid-sync"

    assert sync(killed).wait() == 0
    assert sync(clean).wait() == 0
    assert dump(urls[killed]) == dump(urls[clean])
    assert tickets(urls[killed]) == TOTAL
