"""What the daemon runs, as plain functions: one connector's sync, one digest, one report,
and the rules for when (triggers, the catch-up of digests and reports missed while down).
``service.py`` wires them to APScheduler."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from cskpi.connectors.base import ConnectorFactory
from cskpi.core.app import build_sources
from cskpi.core.config.file import Config
from cskpi.core.config.secrets import redact
from cskpi.core.config.timespec import cron_trigger, parse_duration
from cskpi.core.sync import run_sync

log = logging.getLogger("cskpi.run")

# A connector with neither `schedule` nor `every` still syncs: often enough for a daily
# digest to be fresh, rarely enough for any vendor's rate limit.
DEFAULT_EVERY = timedelta(minutes=15)
# A report due while the scheduler was busy is still written this late (as a digest's grace).
REPORT_GRACE = timedelta(hours=6)


# An alert is evaluated as each bucket ends; one that waited for a sync (or for the daemon)
# is dropped once the next bucket has ended too: that one's evaluation covers the present.
ALERT_CRON = {"hour": "0 * * * *", "day": "0 0 * * *"}
ALERT_GRACE = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


class Trigger(Protocol):
    """The part of an APScheduler trigger the daemon uses."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None: ...


class DigestSender(Protocol):
    def __call__(self, config: Config, name: str, at: datetime) -> Any: ...


class AlertSender(Protocol):
    def __call__(self, config: Config, name: str, at: datetime) -> Any: ...


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: ``id`` is ``sync:NAME``, ``digest:NAME``, ``report:NAME`` or
    ``alert:NAME``."""

    id: str
    trigger: Trigger
    misfire_grace: timedelta | None  # how late a run may start; None: any lateness


def sync_trigger(schedule: str | None, every: str | None, tz: Any) -> Trigger:
    from apscheduler.triggers.interval import IntervalTrigger

    trigger: Trigger
    if schedule is not None:
        trigger = cron_trigger(schedule, tz)
    else:
        seconds = (parse_duration(every) if every else DEFAULT_EVERY).total_seconds()
        trigger = IntervalTrigger(seconds=max(1, int(seconds)), timezone=tz)
    return trigger


def job_specs(config: Config) -> list[JobSpec]:
    """Every job the config asks for, in the config's time zone."""
    tz = config.timezone
    specs = [
        JobSpec(f"sync:{name}", sync_trigger(s.schedule, s.every, tz), None)
        for name, s in config.connectors.items()
    ]
    specs += [
        JobSpec(f"digest:{name}", cron_trigger(d.schedule, tz), d.grace)
        for name, d in config.digests.items()
    ]
    specs += [
        JobSpec(f"report:{name}", cron_trigger(r.schedule, tz), REPORT_GRACE)
        for name, r in config.reports.items()
    ]
    specs += [
        JobSpec(f"alert:{name}", cron_trigger(ALERT_CRON[a.interval], tz), ALERT_GRACE[a.interval])
        for name, a in config.alerts.items()
    ]
    return specs


def latest_fire_time(trigger: Trigger, now: datetime, grace: timedelta) -> datetime | None:
    """The last time ``trigger`` fired in ``(now - grace, now]``: the digest still owed."""
    fire = trigger.get_next_fire_time(None, now - grace + timedelta(microseconds=1))
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest


def owed_digests(config: Config, now: datetime) -> list[tuple[str, datetime]]:
    """Digests whose time passed within their grace period: sent on start (the digest_run
    record makes sending one that already went out a no-op)."""
    owed = []
    for name, settings in config.digests.items():
        at = latest_fire_time(cron_trigger(settings.schedule, config.timezone), now, settings.grace)
        if at is not None:
            owed.append((name, at))
    return owed


def owed_reports(config: Config, now: datetime) -> list[tuple[str, datetime]]:
    """Reports whose time passed within ``REPORT_GRACE``: written on start unless the file of
    that window is already there (``run_report_job`` with ``replace=False``)."""
    owed = []
    for name, settings in config.reports.items():
        at = latest_fire_time(cron_trigger(settings.schedule, config.timezone), now, REPORT_GRACE)
        if at is not None:
            owed.append((name, at))
    return owed


def run_sync_job(
    engine: Engine,
    config: Config,
    types: Mapping[str, ConnectorFactory],
    name: str,
    stop: Callable[[], bool],
) -> bool:
    """One connector's incremental sync; one log line with duration and rows."""
    started = time.monotonic()
    try:
        report = run_sync(engine, build_sources(config, types, [name]), stop=stop)
    except Exception as exc:  # the daemon carries on; the next run tries again
        _log_job(f"sync:{name}", started, 0, str(exc))
        return False
    errors = "; ".join(f"{s.stream}: {s.error}" for s in report.streams if s.error)
    _log_job(f"sync:{name}", started, sum(s.rows for s in report.streams), errors or None)
    return report.ok


def run_digest_job(send: DigestSender, config: Config, name: str, at: datetime) -> bool:
    started = time.monotonic()
    try:
        result = send(config, name, at)
    except Exception as exc:
        _log_job(f"digest:{name}", started, 0, str(exc))
        return False
    targets = getattr(result, "targets", ())
    failed = [t for t in targets if t.status == "failed"]
    detail = "; ".join(f"{t.target}: {t.error}" for t in failed) or None
    _log_job(f"digest:{name}", started, sum(t.status == "sent" for t in targets), detail)
    return not failed


def run_report_job(
    engine: Engine, config: Config, name: str, at: datetime, *, replace: bool = True
) -> bool:
    """Write report ``name`` for the window its period gives at ``at`` (its ``out`` file);
    ``replace`` False keeps a file already written for that window (the catch-up)."""
    from cskpi.core.digest.report.page import write_scheduled

    started = time.monotonic()
    try:
        path = write_scheduled(engine, config, name, at, replace=replace)
    except Exception as exc:
        _log_job(f"report:{name}", started, 0, f"{type(exc).__name__}: {exc}")
        return False
    _log_job(f"report:{name}", started, int(path is not None), None)
    if path is None:
        log.info("report:%s due %s was written before: its file is kept", name, at.isoformat())
    else:
        log.info("report:%s written to %s", name, path)
    return True


def run_alert_job(send: AlertSender, config: Config, name: str, at: datetime) -> Any:
    """One alert's evaluation; the result (``None`` when it raised) tells whether the store
    was synced enough to judge the bucket."""
    started = time.monotonic()
    try:
        result = send(config, name, at)
    except Exception as exc:
        _log_job(f"alert:{name}", started, 0, str(exc))
        return None
    if getattr(result, "unsynced", None):
        return result
    failed = [d for d in getattr(result, "deliveries", ()) if d.status == "failed"]
    detail = "; ".join(f"{d.target}: {d.error}" for d in failed) or None
    sent = sum(d.status == "sent" for d in getattr(result, "deliveries", ()))
    _log_job(f"alert:{name}", started, sent, detail)
    return result


def _log_job(job: str, started: float, rows: int, error: str | None) -> None:
    seconds = round(time.monotonic() - started, 3)
    error = None if error is None else redact(error)
    status = "failed" if error else "ok"
    fields: dict[str, object] = {"job": job, "seconds": seconds, "rows": rows, "status": status}
    if error:
        fields["error"] = error
        log.error("%s failed after %.1fs: %s", job, seconds, error, extra=fields)
    else:
        log.info("%s ok: %d rows in %.1fs", job, rows, seconds, extra=fields)
