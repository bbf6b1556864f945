"""`cskpi run`: the jobs of ``jobs.py`` on APScheduler 3, one lease per database.

* Every job has ``max_instances=1`` and ``coalesce=True``: a sync never overlaps itself,
  and runs missed while it was busy collapse into one. The pool has a thread per job, so a
  slow sync delays only its own next run.
* On start, every connector syncs at once, and digests whose time passed within their grace
  period are sent (``digest_run`` decides whether one already went out, so a restart never
  sends twice).
* Reports whose time passed within ``REPORT_GRACE`` are written on start too, once: a file
  already there for that window is kept, so a restart writes nothing twice.
* A digest (or a report owed from while the daemon was down) waits while a connector has
  not synced since its window ended (an empty store would report zeros): it is sent after
  the sync that brings the store past it, or dropped, with a log line, once its grace has
  passed.
* Each ``[alerts.NAME]`` is evaluated as each hour or day ends (and on start, for the bucket
  that ended last); like a digest it waits for a sync past the bucket, and ``alert_run``
  makes sure a finding is posted once, across restarts.
* SIGTERM/SIGINT: no new jobs start; a running sync stops after the page it is storing is
  committed; the lease is released; exit within ``STOP_TIMEOUT``.
* SIGHUP: the config file is read again; jobs are rebuilt from it. An invalid file is
  logged and the old jobs keep running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from cskpi.connectors.base import ConnectorFactory
from cskpi.core.config.file import Config, ConfigError, load_config
from cskpi.core.config.periods import Window, period_window
from cskpi.core.config.timespec import cron_trigger
from cskpi.core.store import lease as daemon
from cskpi.core.store.engine import open_engine
from cskpi.scheduler.jobs import (
    ALERT_GRACE,
    REPORT_GRACE,
    AlertSender,
    DigestSender,
    JobSpec,
    job_specs,
    latest_fire_time,
    owed_digests,
    owed_reports,
    run_alert_job,
    run_digest_job,
    run_report_job,
    run_sync_job,
)
from cskpi.scheduler.waiting import Due, Waiting, Words

log = logging.getLogger("cskpi.run")

STOP_TIMEOUT = 8.0  # seconds to let running jobs commit their page; the issue allows 10


DIGEST_WORDS = Words(
    waits="{job} due {due} waits: the store is {reason}; it goes out after that sync",
    dropped="{job} due {due} not sent: its grace passed while the store was {reason}",
)
REPORT_WORDS = Words(
    waits="{job} due {due} waits: the store is {reason}",
    dropped="{job} due {due} not written: its grace passed while the store was {reason}",
)
ALERT_WORDS = Words(
    waits="{job} waits: the store is {reason}",
    dropped="{job} for the bucket ended by {due} dropped: the store was {reason}",
)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def unsynced(engine: Engine, config: Config, window: Window) -> str | None:
    from cskpi.core.digest.runs import unsynced

    return unsynced(engine, config, window)


def _send_digest(config: Config, name: str, at: datetime) -> Any:
    from cskpi.core.digest.runs import run_digest

    return run_digest(config, name, at)


def alert_window(config: Config, name: str, at: datetime) -> Window:
    """The bucket alert ``name`` judges at ``at``, as a window for the synced-store check."""
    from cskpi.core.alerts.evaluate import last_bucket

    b = last_bucket(config.alerts[name].interval, config.timezone, at)
    return Window(b.start.astimezone(UTC), b.end.astimezone(UTC), config.timezone, at)


def _send_alert(config: Config, name: str, at: datetime) -> Any:
    from cskpi.core.alerts.runs import run_alert

    return run_alert(config, name, at)


class Daemon:
    """One `cskpi run`. ``clock`` and ``send_digest`` are injectable for tests."""

    def __init__(
        self,
        config: Config,
        types: Mapping[str, ConnectorFactory],
        *,
        clock: Callable[[], datetime] = _now,
        send_digest: DigestSender = _send_digest,
        send_alert: AlertSender = _send_alert,
        me: daemon.Me | None = None,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.config = config
        self.types = types
        self.clock = clock
        self.send_digest = send_digest
        self.send_alert = send_alert
        self.me = me or daemon.Me()
        self.stopping = threading.Event()
        self.reload_wanted = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self.waiting = Waiting(clock, lambda window: unsynced(self.engine, self.config, window))
        self.engine: Engine = open_engine(config.database)
        workers = (
            len(config.connectors)
            + len(config.digests)
            + len(config.reports)
            + len(config.alerts)
            + 2
        )
        self.scheduler = BackgroundScheduler(
            timezone=config.timezone, executors={"default": ThreadPoolExecutor(workers)}
        )

    # --- jobs -----------------------------------------------------------------------------

    def schedule(self, previous: Config | None = None) -> list[str]:
        """(Re)build the jobs from ``self.config``; returns their ids. A connector new since
        ``previous`` (every one, on start) syncs at once, not one interval later."""
        self.scheduler.remove_all_jobs()
        known = previous.connectors if previous else {}
        for spec in job_specs(self.config):
            at_once = spec.id.startswith("sync:") and spec.id.split(":", 1)[1] not in known
            self._add(spec, self.clock() if at_once else None)
        self.scheduler.add_job(
            self.heartbeat, "interval", id="heartbeat",
            seconds=daemon.HEARTBEAT_EVERY.total_seconds(), coalesce=True, max_instances=1,
        )  # fmt: skip
        return [job.id for job in self.scheduler.get_jobs()]

    def _add(self, spec: JobSpec, first: datetime | None) -> None:
        grace = spec.misfire_grace
        when = {} if first is None else {"next_run_time": first}
        self.scheduler.add_job(
            self._job, spec.trigger, args=[spec.id], id=spec.id, name=spec.id,
            max_instances=1, coalesce=True,
            misfire_grace_time=None if grace is None else int(grace.total_seconds()), **when,
        )  # fmt: skip

    def _job(self, job_id: str) -> None:
        if self.stopping.is_set():
            return
        with self._lock:
            self._busy += 1
        try:
            self.run_job(job_id)
        finally:
            with self._lock:
                self._busy -= 1

    def run_job(self, job_id: str, at: datetime | None = None) -> bool:
        kind, name = job_id.split(":", 1)
        config = self.config
        if kind == "sync":
            ok = run_sync_job(self.engine, config, self.types, name, self.stopping.is_set)
            self.send_waiting()
            return ok
        if kind == "report":
            schedule = config.reports[name].schedule
            trigger = cron_trigger(schedule, config.timezone)
            at = at or latest_fire_time(trigger, self.clock(), REPORT_GRACE) or self.clock()
            return run_report_job(self.engine, config, name, at)
        if kind == "alert":
            return self._alert(name, at or self.clock())
        settings = config.digests[name]
        if at is None:
            trigger = cron_trigger(settings.schedule, config.timezone)
            at = latest_fire_time(trigger, self.clock(), settings.grace) or self.clock()
        return self._digest(name, at)

    def _digest(self, name: str, at: datetime) -> bool:
        """Send digest ``name`` due ``at`` once the store is synced past its window."""
        config = self.config
        settings = config.digests.get(name)
        if settings is None:  # removed by a reload
            self.waiting.forget(f"digest:{name}", at)
            return False
        window = period_window(settings.period, config.timezone, at, settings.schedule)
        return self.waiting.run(
            Due(f"digest:{name}", at, window, settings.grace, DIGEST_WORDS),
            lambda: run_digest_job(self.send_digest, config, name, at),
            again=lambda: self._digest(name, at),
        )

    def _owed_report(self, name: str, at: datetime) -> bool:
        """Write report ``name`` missed at ``at`` unless its file is there, once the store is
        synced past its window (a report of an unsynced store would be kept for good)."""
        config = self.config
        settings = config.reports.get(name)
        if settings is None:  # removed by a reload
            self.waiting.forget(f"report:{name}", at)
            return False
        window = period_window(settings.period, config.timezone, at, settings.schedule)
        return self.waiting.run(
            Due(f"report:{name}", at, window, REPORT_GRACE, REPORT_WORDS),
            lambda: run_report_job(self.engine, config, name, at, replace=False),
            again=lambda: self._owed_report(name, at),
        )

    def _alert(self, name: str, at: datetime) -> bool:
        """Evaluate alert ``name`` for the bucket ended by ``at`` once the store is synced past
        it; it waits until the next bucket has ended too (its evaluation then covers the
        present)."""
        config = self.config
        settings = config.alerts.get(name)
        if settings is None:  # removed by a reload
            self.waiting.forget(f"alert:{name}", at)
            return False

        def evaluate() -> bool:
            result = run_alert_job(self.send_alert, config, name, at)
            return result is not None and bool(getattr(result, "ok", True))

        return self.waiting.run(
            Due(f"alert:{name}", at, alert_window(config, name, at),
                ALERT_GRACE[settings.interval], ALERT_WORDS),
            evaluate,
            again=lambda: self._alert(name, at),
        )  # fmt: skip

    def send_waiting(self) -> None:
        """The digests, owed reports and alerts waiting for a sync: run once the store is
        synced past their window, dropped once their grace has passed."""
        self.waiting.retry()

    def catch_up(self) -> list[tuple[str, datetime]]:
        """Send the digests owed from while the daemon was down (see ``owed_digests``), judge
        the alerts' last buckets and write the reports owed (``owed_reports``); returns the
        digests owed."""
        owed = owed_digests(self.config, self.clock())
        for name, at in owed:
            log.info("digest:%s was due at %s while the daemon was down", name, at.isoformat())
            self.run_job(f"digest:{name}", at)
        for name in self.config.alerts:  # the bucket that ended last; alert_run dedups
            self.run_job(f"alert:{name}", self.clock())
        for name, at in owed_reports(self.config, self.clock()):
            log.info("report:%s was due at %s while the daemon was down", name, at.isoformat())
            self._owed_report(name, at)
        return owed

    def heartbeat(self) -> None:
        jobs = {job.id: job.next_run_time for job in self.scheduler.get_jobs()}
        jobs.pop("heartbeat", None)
        if not daemon.beat(self.engine, self.me, self.clock(), jobs):
            log.error("another daemon took over this database; stopping")
            self.stopping.set()
        self.send_waiting()  # drops those whose grace passed

    # --- life cycle -----------------------------------------------------------------------

    def reload(self, path: Path) -> None:
        try:
            config = load_config(path, self.types)
        except ConfigError as exc:
            log.error("config not reloaded, keeping the running one: %s", "; ".join(exc.lines))
            return
        if config.database != self.config.database:
            log.error("config not reloaded: `database` changed; restart `cskpi run` for that")
            return
        previous, self.config = self.config, config
        log.info("config reloaded: %s", ", ".join(self.schedule(previous)))

    def run(self, install_signals: bool = True) -> bool:
        """Serve until SIGTERM/SIGINT; True when every running job finished in time."""
        daemon.claim(self.engine, self.me, self.clock())
        try:
            if install_signals:
                self._signals()
            log.info("cskpi run started (pid %d): %s", self.me.pid, ", ".join(self.schedule()))
            self.scheduler.start()
            self.heartbeat()
            self.catch_up()
            while not self.stopping.wait(timeout=0.2):
                if self.reload_wanted.is_set():
                    self.reload_wanted.clear()
                    self.reload(self.config.path)
            return self._stop()
        finally:
            daemon.release(self.engine, self.me)
            self.engine.dispose()

    def _stop(self) -> bool:
        log.info("stopping: letting running jobs commit their page")
        self.scheduler.shutdown(wait=False)
        deadline = threading.Event()
        waited = 0.0
        while self._busy and waited < STOP_TIMEOUT:
            deadline.wait(0.05)
            waited += 0.05
        clean = not self._busy
        log.info("stopped" if clean else "stopped with a job still running; its page rolls back")
        return clean

    def _signals(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        def hup(signum: int, frame: FrameType | None) -> None:
            self.reload_wanted.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
