"""The daemon in-process: its lease, stopping between pages, catch-up and reload, on an
injected clock and a recording digest sender (no waiting on real schedules)."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, text

from cskpi.commands.console import LogProgress
from cskpi.connectors.registry import installed
from cskpi.core.config.file import Config, load_config
from cskpi.core.store import lease as daemon
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, StreamResult, run_sync
from cskpi.scheduler.service import Daemon
from tests.fakes import FakeConnector, FakeStream, ticket

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)  # a Monday; 11:30 in Berlin


@pytest.fixture(autouse=True)
def logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI test earlier in the session may have pointed the cskpi logger at its stderr."""
    root = logging.getLogger("cskpi")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "propagate", True)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'cskpi.db'}")


def test_a_second_daemon_is_refused_naming_the_first(engine: Engine) -> None:
    first, second = daemon.Me(4242, "box-a"), daemon.Me(777, "box-b")
    daemon.claim(engine, first, NOW)
    with pytest.raises(daemon.DaemonRunningError, match=r"pid 4242 on box-a, running since 2026"):
        daemon.claim(engine, second, NOW + timedelta(seconds=30))
    daemon.release(engine, second)  # not its lease: nothing happens
    assert daemon.load(engine) is not None


def test_a_stale_lease_is_taken_over_and_the_old_daemon_notices(engine: Engine) -> None:
    first, second = daemon.Me(4242, "box-a"), daemon.Me(777, "box-b")
    daemon.claim(engine, first, NOW)
    later = NOW + daemon.STALE_AFTER
    daemon.claim(engine, second, later)
    info = daemon.load(engine)
    assert info is not None
    assert (info.pid, info.host, info.started_at) == (777, "box-b", later)
    assert daemon.beat(engine, first, later, {}) is False
    assert daemon.beat(engine, second, later, {"sync:a": NOW}) is True
    info = daemon.load(engine)
    assert info is not None
    assert info.jobs == {"sync:a": NOW}


def test_a_dead_pid_on_this_host_is_taken_over_at_once(engine: Engine) -> None:
    here = daemon.Me()
    dead = daemon.Me(2**22 + 12345, here.host)  # above pid_max: never a live process
    daemon.claim(engine, dead, NOW)
    daemon.claim(engine, here, NOW)
    info = daemon.load(engine)
    assert info is not None
    assert info.pid == here.pid
    daemon.release(engine, here)
    assert daemon.load(engine) is None


def test_stop_ends_a_sync_after_the_page_it_stored(tmp_path: Path, engine: Engine) -> None:
    ten = [ticket(i) for i in range(10)]
    told = threading.Event()

    class StopAfterTwoPages(LogProgress):
        def page_stored(self, result: StreamResult) -> None:
            if result.pages == 2:
                told.set()  # SIGTERM arrives while the second page is being stored

    source = Source("zd", FakeConnector(FakeStream(ten)))  # type: ignore[arg-type]
    run_sync(engine, [source], observer=StopAfterTwoPages(), stop=told.is_set)
    # The second page and its cursor are stored; the page read ahead behind it is not.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM ticket")).scalar() == 4
        assert conn.execute(text("SELECT cursor FROM sync_state")).scalar() == "4"
    resumed = FakeStream(ten)
    run_sync(engine, [Source("zd", FakeConnector(resumed))])  # type: ignore[arg-type]
    assert resumed.calls == [("4", None)]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM ticket")).scalar() == 10


def write_config(tmp_path: Path, digests: str = "") -> Config:
    path = tmp_path / "cskpi.toml"
    path.write_text(
        'timezone = "Europe/Berlin"\ndatabase = "sqlite:///cskpi.db"\n'
        '[connectors.demo]\ntype = "demo"\ntickets = 300\ndays = 10\nend = 2026-11-23\n'
        'every = "5m"\n' + digests
    )
    return load_config(path, installed())


DIGESTS = """
[digests.morning]
schedule = "0 9 * * mon-fri"
grace = "6h"
[digests.evening]
schedule = "0 18 * * *"
"""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, datetime]] = []

    def __call__(self, config: Config, name: str, at: datetime) -> Any:
        self.sent.append((name, at))
        return None


def test_catch_up_sends_only_the_digests_still_within_grace(tmp_path: Path) -> None:
    recorder = Recorder()
    d = Daemon(
        write_config(tmp_path, DIGESTS), installed(), clock=lambda: NOW, send_digest=recorder
    )
    d.run_job("sync:demo")
    assert d.catch_up() == [("morning", datetime(2026, 11, 23, 8, 0, tzinfo=UTC))]
    assert recorder.sent == [("morning", datetime(2026, 11, 23, 8, 0, tzinfo=UTC))]
    d.engine.dispose()


def test_a_digest_on_an_unsynced_store_waits_for_the_sync_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    d = Daemon(
        write_config(tmp_path, DIGESTS), installed(), clock=lambda: NOW, send_digest=recorder
    )
    caplog.set_level("INFO", logger="cskpi.run")
    d.catch_up()  # started 10:30 on an empty store: the 09:00 digest is owed, not sendable
    assert recorder.sent == []
    assert (
        "digest:morning due 2026-11-23T09:00:00+01:00 waits: the store is not synced since "
        "the window ended (2026-11-22 23:00Z): demo (last success: never)" in caplog.text
    )
    d.send_waiting()  # still within grace: it keeps waiting, and says so once
    assert caplog.text.count("waits") == 1
    assert d.run_job("sync:demo") is True  # the first sync brings the store past the window
    assert recorder.sent == [("morning", datetime(2026, 11, 23, 8, 0, tzinfo=UTC))]
    d.run_job("sync:demo")
    assert len(recorder.sent) == 1
    d.engine.dispose()


def test_a_waiting_digest_is_dropped_when_its_grace_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    now = [NOW]
    d = Daemon(write_config(tmp_path, DIGESTS), installed(), clock=lambda: now[0],
               send_digest=recorder)  # fmt: skip
    d.catch_up()
    now[0] = NOW + timedelta(hours=5)  # 09:00 Berlin + 6 h grace ended at 14:00 UTC
    d.send_waiting()  # as each heartbeat does
    assert "digest:morning due 2026-11-23T09:00:00+01:00 not sent: its grace passed" in caplog.text
    d.run_job("sync:demo")
    assert recorder.sent == []
    d.engine.dispose()


def test_every_connector_syncs_at_start_and_a_new_one_on_reload(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path, DIGESTS), installed(), clock=lambda: NOW)
    d.schedule()
    d.scheduler.start(paused=True)
    try:
        jobs = {job.id: job.next_run_time for job in d.scheduler.get_jobs()}
        assert jobs["sync:demo"] == NOW  # not 5 minutes (its `every`) later
        assert jobs["digest:morning"] > NOW
        old = d.config
        d.config = write_config(
            tmp_path,
            DIGESTS.replace(
                "[digests.morning]",
                ('[connectors.more]\ntype = "demo"\nevery = "1h"\n[digests.morning]'),
            ),
        )
        d.schedule(old)
        jobs = {job.id: job.next_run_time for job in d.scheduler.get_jobs()}
        assert jobs["sync:more"] == NOW
        assert jobs["sync:demo"] > NOW  # known before the reload: its own interval
    finally:
        d.scheduler.shutdown(wait=False)
        d.engine.dispose()


def test_jobs_never_overlap_and_coalesce(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path, DIGESTS), installed(), clock=lambda: NOW)
    assert sorted(d.schedule()) == ["digest:evening", "digest:morning", "heartbeat", "sync:demo"]
    jobs = {job.id: job for job in d.scheduler.get_jobs()}
    assert {(j.max_instances, j.coalesce) for j in jobs.values()} == {(1, True)}
    assert jobs["digest:morning"].misfire_grace_time == 6 * 3600
    assert jobs["sync:demo"].misfire_grace_time is None  # late is better than never
    d.engine.dispose()


def test_a_sync_job_stores_rows_and_a_digest_job_gets_its_scheduled_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    clock = NOW.replace(hour=8, minute=0, second=3)  # the job runs 3 s after 09:00 Berlin
    d = Daemon(write_config(tmp_path, DIGESTS), installed(), clock=lambda: clock,
               send_digest=recorder)  # fmt: skip
    caplog.set_level("INFO", logger="cskpi.run")
    assert d.run_job("sync:demo") is True
    with d.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM ticket")).scalar() == 300
    line = next(r for r in caplog.records if getattr(r, "job", None) == "sync:demo")
    assert line.status == "ok"  # type: ignore[attr-defined]
    assert line.rows >= 300  # type: ignore[attr-defined]
    assert d.run_job("digest:morning") is True
    assert recorder.sent == [("morning", datetime(2026, 11, 23, 8, 0, tzinfo=UTC))]
    d.engine.dispose()


def test_reload_keeps_the_old_jobs_when_the_new_file_is_invalid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = Daemon(write_config(tmp_path), installed(), clock=lambda: NOW)
    d.schedule()
    d.config.path.write_text(d.config.path.read_text() + "\n[digests.x]\nschedule = 'nope'\n")
    d.reload(d.config.path)
    assert "config not reloaded" in caplog.text
    assert sorted(j.id for j in d.scheduler.get_jobs()) == ["heartbeat", "sync:demo"]
    write_config(tmp_path, DIGESTS)
    d.reload(d.config.path)
    assert sorted(j.id for j in d.scheduler.get_jobs()) == [
        "digest:evening", "digest:morning", "heartbeat", "sync:demo",
    ]  # fmt: skip
    d.engine.dispose()


class Hooks(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hooks.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_restart_never_sends_a_digest_twice(tmp_path: Path, webhook: str) -> None:
    digest = (
        '[digests.morning]\nschedule = "0 9 * * mon-fri"\nperiod = "yesterday"\n'
        f'slack = {{ webhook_url = "{webhook}" }}\n'
    )
    cfg = write_config(tmp_path, digest)
    first = Daemon(cfg, installed(), clock=lambda: NOW)  # started 10:30, after 09:00
    first.run_job("sync:demo")
    assert first.catch_up() == [("morning", datetime(2026, 11, 23, 8, 0, tzinfo=UTC))]
    first.engine.dispose()
    assert len(Hooks.received) == 1
    assert "blocks" in Hooks.received[0]

    later = NOW + timedelta(hours=1)  # restarted an hour later: still within grace
    second = Daemon(cfg, installed(), clock=lambda: later)
    second.catch_up()
    assert second.run_job("digest:morning") is True  # as if the cron fired again: skipped
    second.engine.dispose()
    assert len(Hooks.received) == 1
    with sqlite3.connect(tmp_path / "cskpi.db") as conn:
        rows = conn.execute("SELECT digest, target, status, window_from FROM digest_run").fetchall()
    yesterday = int(datetime(2026, 11, 21, 23, 0, tzinfo=UTC).timestamp())  # 22 Nov, Berlin
    assert rows == [("morning", "slack", "sent", yesterday)]


REPORTS = """
[reports.weekly]
schedule = "0 6 * * mon"
period = "last-week"
out = "reports/{name}-{from}-{to}.html"
by = "agent"
"""


def test_a_report_job_writes_its_window_beside_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = NOW.replace(hour=5, minute=0, second=2)  # Monday 06:00:02 in Berlin
    d = Daemon(write_config(tmp_path, REPORTS), installed(), clock=lambda: clock)
    assert sorted(d.schedule()) == ["heartbeat", "report:weekly", "sync:demo"]
    assert {j.id: j for j in d.scheduler.get_jobs()}["report:weekly"].misfire_grace_time == 6 * 3600
    caplog.set_level("INFO", logger="cskpi.run")
    assert d.run_job("sync:demo") is True
    assert d.run_job("report:weekly") is True
    d.engine.dispose()
    written = tmp_path / "reports" / "weekly-2026-11-16-2026-11-22.html"  # last week, Mon-Sun
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [written.name]
    assert written.stat().st_mode & 0o777 == 0o600
    html = written.read_text(encoding="utf-8")
    assert "<h1>Support report · 16 Nov to 22 Nov 2026</h1>" in html
    assert "KPIs by agent, the busiest first" in html
    assert f"report:weekly written to {written}" in caplog.text


def test_an_alert_on_an_unsynced_store_waits_for_the_sync(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cskpi.core.alerts.runs import run_alert

    judged: list[bool] = []

    def send_alert(config: Config, name: str, at: datetime) -> Any:
        result = run_alert(config, name, at, engine=d.engine)
        judged.append(result.unsynced is None)
        return result

    alert = '\n[alerts.volume]\nkpi = "tickets_created"\ninterval = "hour"\n'
    d = Daemon(write_config(tmp_path, alert), installed(), clock=lambda: NOW,
               send_alert=send_alert)  # fmt: skip
    caplog.set_level("INFO", logger="cskpi.run")
    d.catch_up()  # started on an empty store: the 10:00-11:00 Berlin hour cannot be judged
    d.send_waiting()  # as each heartbeat does: it keeps waiting, and says so once
    assert judged == []
    assert caplog.text.count("alert:volume waits: the store is not synced since the window") == 1
    d.run_job("sync:demo")  # the sync brings the store past the hour: judged now
    assert judged == [True]
    d.run_job("sync:demo")  # nothing waits any more
    assert judged == [True]
    d.engine.dispose()


def test_a_report_missed_while_down_is_written_once_on_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started Monday 11:30 Berlin, after the 06:00 report (within its 6 h): the catch-up
    waits for the first sync, writes last week's file, and a restart keeps that file."""
    cfg = write_config(tmp_path, REPORTS)
    caplog.set_level("INFO", logger="cskpi.run")
    first = Daemon(cfg, installed(), clock=lambda: NOW)
    first.catch_up()  # an empty store: the report waits for the sync
    reports = tmp_path / "reports"
    assert not reports.exists()
    assert "report:weekly due 2026-11-23T06:00:00+01:00 waits: the store is not synced" in (
        caplog.text
    )
    assert first.run_job("sync:demo") is True  # brings the store past the window: written
    first.run_job("sync:demo")  # nothing waits any more
    first.engine.dispose()
    written = reports / "weekly-2026-11-16-2026-11-22.html"
    assert [p.name for p in reports.iterdir()] == [written.name]
    assert "<h1>Support report · 16 Nov to 22 Nov 2026</h1>" in written.read_text()
    assert caplog.text.count(f"report:weekly written to {written}") == 1
    written.write_text("the first start's file")  # a second write would replace this

    later = NOW + timedelta(minutes=20)  # restarted at 11:50 Berlin: still within the 6 h
    second = Daemon(cfg, installed(), clock=lambda: later)
    second.catch_up()
    second.engine.dispose()
    assert [p.name for p in reports.iterdir()] == [written.name]
    assert written.read_text() == "the first start's file"
    assert "report:weekly due 2026-11-23T06:00:00+01:00 was written before: its file is kept" in (
        caplog.text
    )


def test_a_missed_report_still_unsynced_when_its_grace_ends_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [NOW]
    d = Daemon(write_config(tmp_path, REPORTS), installed(), clock=lambda: now[0])
    d.catch_up()  # an empty store: the 06:00 Berlin report waits
    now[0] = NOW + timedelta(minutes=30)  # 12:00 Berlin: 06:00 + 6 h
    d.send_waiting()  # as each heartbeat does
    assert "report:weekly due 2026-11-23T06:00:00+01:00 not written: its grace passed" in (
        caplog.text
    )
    d.run_job("sync:demo")
    d.engine.dispose()
    assert not (tmp_path / "reports").exists()
