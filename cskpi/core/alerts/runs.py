"""Evaluating an alert and posting each finding that fires exactly once per (alert, key,
bucket, target), recorded in ``alert_run`` the way ``digest_run`` records digests
through the same code (``core/digest/delivery.py``): a row is claimed (``sending``) in one
write transaction before the post and marked ``sent`` or ``failed`` after it, so a second
run, a restarted daemon or a manual `cskpi alerts` beside the daemon finds the claim and
posts nothing. A failed post is tried again by the next run; a claim left ``sending`` by a
dead process is taken over after :data:`~cskpi.core.digest.delivery.STALE_CLAIM`.

Nothing is evaluated while a configured connector has not synced since the bucket ended
(``digest.runs.unsynced``): a bucket read before its tickets arrived would look quiet, and
the one after it would then look like a spike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import Engine

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
from cskpi.core.config.file import AlertSettings, Config, EmailTarget
from cskpi.core.config.periods import Window
from cskpi.core.digest.delivery import Claims, Status, Target, engine_of
from cskpi.core.digest.delivery import targets_of as targets_of  # commands/planning.py uses it
from cskpi.core.digest.runs import unsynced

log = logging.getLogger("cskpi.alerts")


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
    with engine_of(config, engine) as eng:
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
    runs: _Runs, name: str, alarm: Alarm, t: str, target: Target,
    clock: Clock | None,
) -> Delivery:  # fmt: skip
    key, row = alarm.finding.key, runs.row(alarm.finding, t)
    if not runs.claim(row, runs.values(alarm.finding)):
        return Delivery(key, t, "skipped")
    where = f"alert {name}, {t}"
    status, detail = runs.deliver(row, where, partial(_send, where, name, alarm, target, clock),
                                  log)  # fmt: skip
    if status == "sent":
        log.info("%s: sent for %s %s", where, key or "all", alarm.finding.bucket.start.isoformat())
    return Delivery(key, t, status, detail)


def _send(where: str, name: str, alarm: Alarm, target: Target, clock: Clock | None) -> str | None:
    from cskpi.core.digest import notify  # slack_sdk and smtplib load only when sending

    if isinstance(target, EmailTarget):
        msg = notify.email_message(target, f"[cskpi] {name}: {alarm.title}", plain(alarm, name),
                                   lambda _src: html(alarm, name), None)  # fmt: skip
        return notify.send_email(where, target, msg)
    if target.webhook_url is not None:
        notify.post_webhook(where, target, slack_message(alarm, name), clock)
        return None
    return notify.post_api(where, target, slack_message(alarm, name), None, clock)


class _Runs(Claims):
    """The ``alert_run`` rows of one alert and bucket."""

    def __init__(self, engine: Engine, name: str, bucket: Bucket, clock: Clock | None) -> None:
        super().__init__(engine, "alert_run", ("alert", "key", "bucket_from", "target"), clock)
        self.name, self.bucket = name, bucket

    def row(self, finding: Finding, target: str) -> dict[str, str | int]:
        return {"alert": self.name, "key": finding.key,
                "bucket_from": int(self.bucket.start.timestamp()), "target": target}  # fmt: skip

    def values(self, finding: Finding) -> dict[str, int | float | None]:
        return {"bucket_to": int(self.bucket.end.timestamp()), "value": finding.value,
                "usual": finding.usual}  # fmt: skip
