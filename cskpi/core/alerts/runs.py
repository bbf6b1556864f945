"""Evaluating an alert and posting each finding that fires exactly once per (alert, key,
bucket, target), recorded in ``alert_run`` the way ``digest_run`` records digests
(``core/digest/runs.py``): a row is claimed (``sending``) in one write transaction before
the post and marked ``sent`` or ``failed`` after it, so a second run, a restarted daemon or
a manual `cskpi alerts` beside the daemon finds the claim and posts nothing. A failed post is
tried again by the next run; a claim left ``sending`` by a dead process is taken over after
:data:`~cskpi.core.digest.runs.STALE_CLAIM`.

Nothing is evaluated while a configured connector has not synced since the bucket ended
(``digest.runs.unsynced``): a bucket read before its tickets arrived would look quiet, and
the one after it would then look like a spike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, text

from cskpi.core.alerts.evaluate import Bucket, Finding, evaluate, last_bucket
from cskpi.core.alerts.message import (
    Alarm,
    html,
    label_of,
    newest_tickets,
    plain,
    slack_message,
)
from cskpi.core.clock import Clock
from cskpi.core.config.file import AlertSettings, Config, EmailTarget, SlackTarget
from cskpi.core.config.periods import Window
from cskpi.core.config.secrets import redact
from cskpi.core.digest.errors import DeliveryError
from cskpi.core.digest.runs import STALE_CLAIM, unsynced
from cskpi.core.store.engine import open_engine, write_transaction

log = logging.getLogger("cskpi.alerts")
Status = Literal["sent", "skipped", "failed"]


class UnknownAlertError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Delivery:
    key: str
    target: str
    status: Status
    error: str | None = None


@dataclass(frozen=True)
class AlertResult:
    alert: str
    bucket: Bucket
    findings: list[Finding] = field(default_factory=list)  # every key judged
    alarms: list[Alarm] = field(default_factory=list)  # the findings that fired, with tickets
    deliveries: list[Delivery] = field(default_factory=list)
    unsynced: str | None = None

    @property
    def ok(self) -> bool:
        return self.unsynced is None and all(d.status != "failed" for d in self.deliveries)


def settings_of(config: Config, name: str) -> AlertSettings:
    if name not in config.alerts:
        configured = ", ".join(config.alerts) or "none"
        raise UnknownAlertError(f"no alert named {name!r} in {config.path.name}; "
                                f"configured: {configured}")  # fmt: skip
    return config.alerts[name]


def targets_of(settings: AlertSettings) -> list[tuple[str, SlackTarget | EmailTarget]]:
    pairs = [("slack", settings.slack), ("email", settings.email)]
    return [(t, target) for t, target in pairs if target is not None]


@contextmanager
def _engine(config: Config, engine: Engine | None) -> Iterator[Engine]:
    if engine is not None:
        yield engine
        return
    own = open_engine(config.database)
    try:
        yield own
    finally:
        own.dispose()


def run_alert(
    config: Config,
    name: str,
    now: datetime,
    *,
    dry_run: bool = False,
    clock: Clock | None = None,
    engine: Engine | None = None,
) -> AlertResult:
    """Evaluate alert ``name`` for the bucket that ended last before ``now`` and post what
    fires to each target not yet posted to (nothing with ``dry_run``)."""
    settings = settings_of(config, name)
    bucket = last_bucket(settings.interval, config.timezone, now)
    window = Window(bucket.start.astimezone(UTC), bucket.end.astimezone(UTC), config.timezone, now)
    with _engine(config, engine) as eng:
        waiting = unsynced(eng, config, window)
        if waiting and not dry_run:
            return AlertResult(name, bucket, unsynced=waiting)
        findings = evaluate(eng, config, name, now, bucket)
        alarms = [
            Alarm(
                replace(f, label=label_of(eng, f.dimension, f.key)), newest_tickets(eng, config, f)
            )
            for f in findings
            if f.fired
        ]
        if dry_run:
            return AlertResult(name, bucket, findings, alarms, unsynced=waiting)
        runs = _Runs(eng, name, bucket, clock)
        deliveries = [
            _deliver(runs, name, alarm, t, target, clock)
            for alarm in alarms
            for t, target in targets_of(settings)
        ]
    return AlertResult(name, bucket, findings, alarms, deliveries)


def _deliver(
    runs: _Runs, name: str, alarm: Alarm, t: str, target: SlackTarget | EmailTarget,
    clock: Clock | None,
) -> Delivery:  # fmt: skip
    key = alarm.finding.key
    if not runs.claim(alarm.finding, t):
        return Delivery(key, t, "skipped")
    where = f"alert {name}, {t}"
    try:
        warning = _send(where, name, alarm, target, clock)
    except Exception as exc:  # one target failing must not stop the other
        shown = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        error = redact(shown.removeprefix(f"{where}: "))
        log.error("%s: %s", where, error)
        runs.finish(alarm.finding, t, "failed", error)
        return Delivery(key, t, "failed", error)
    runs.finish(alarm.finding, t, "sent", warning)
    log.info("%s: sent for %s %s", where, key or "all", alarm.finding.bucket.start.isoformat())
    return Delivery(key, t, "sent", warning)


def _send(
    where: str, name: str, alarm: Alarm, target: SlackTarget | EmailTarget, clock: Clock | None
) -> str | None:
    from cskpi.core.digest import notify  # slack_sdk and smtplib load only when sending

    if isinstance(target, EmailTarget):
        msg = notify.email_message(target, f"[cskpi] {name}: {alarm.title}", plain(alarm, name),
                                   lambda _src: html(alarm, name), None)  # fmt: skip
        return notify.send_email(where, target, msg)
    if target.webhook_url is not None:
        notify.post_webhook(where, target, slack_message(alarm, name), clock)
        return None
    return notify.post_api(where, target, slack_message(alarm, name), None, clock)


class _Runs:
    """The ``alert_run`` rows of one alert and bucket."""

    def __init__(self, engine: Engine, name: str, bucket: Bucket, clock: Clock | None) -> None:
        self.engine, self.clock = engine, clock
        self.key = {"a": name, "f": int(bucket.start.timestamp()), "t": int(bucket.end.timestamp())}

    def _now(self) -> int:
        return int(self.clock.wall() if self.clock else datetime.now(UTC).timestamp())

    def claim(self, finding: Finding, target: str) -> bool:
        """Take the row; False when it is sent, or being sent right now."""
        now = self._now()
        sql = (
            "INSERT INTO alert_run (alert, key, bucket_from, target, bucket_to, value, usual, "
            "sent_at, status, error) VALUES (:a, :k, :f, :target, :t, :v, :u, :now, "
            "'sending', NULL) ON CONFLICT (alert, key, bucket_from, target) DO UPDATE SET "
            "status = 'sending', sent_at = :now, error = NULL WHERE alert_run.status = 'failed' "
            "OR (alert_run.status = 'sending' AND alert_run.sent_at < :stale)"
        )
        params = {**self.key, "k": finding.key, "target": target, "v": finding.value,
                  "u": finding.usual, "now": now,
                  "stale": now - int(STALE_CLAIM.total_seconds())}  # fmt: skip
        with write_transaction(self.engine) as conn:
            return conn.execute(text(sql), params).rowcount == 1

    def finish(self, finding: Finding, target: str, status: str, error: str | None) -> None:
        sql = ("UPDATE alert_run SET status = :status, sent_at = :at, error = :error WHERE "
               "alert = :a AND key = :k AND bucket_from = :f AND target = :target")  # fmt: skip
        at = self._now() if status == "sent" else None
        params = {**self.key, "k": finding.key, "target": target, "status": status, "at": at,
                  "error": error}  # fmt: skip
        with write_transaction(self.engine) as conn:
            conn.execute(text(sql), params)
