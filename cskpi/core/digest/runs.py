"""Sending a digest exactly once per (digest, window, target), recorded in ``digest_run``.

``run_digest`` is what both `cskpi digest` and the scheduler call. Before a target is sent
to, its row is claimed in one write transaction (status ``sending``, ``sent_at`` = the claim
time); the send then marks it ``sent`` or ``failed``. So a second run, or a scheduler and a
manual run at once, find the claim and skip; a failed target is tried again by the next run;
one target failing does not stop the other (``delivery.py``, which alerts share). A digest is
not built at all while a configured connector has not synced successfully since its window
ended (:func:`unsynced`): an empty or stale store would report zeros.

The engine: pass one (the scheduler does), or ``run_digest`` opens ``config.database`` and
disposes of it before returning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from cskpi.core.clock import Clock
from cskpi.core.config.file import Config, DigestSettings, EmailTarget
from cskpi.core.config.periods import Window, period_window
from cskpi.core.config.secrets import redact
from cskpi.core.digest import render
from cskpi.core.digest.chart import chart_png
from cskpi.core.digest.content import Digest, build, window_label
from cskpi.core.digest.delivery import Claims, Status, Target, engine_of, targets_of
from cskpi.core.files import write_private
from cskpi.core.store.schema import to_epoch
from cskpi.core.store.sync_state import all_states

if TYPE_CHECKING:
    from cskpi.core.digest.notify import Chart  # slack_sdk and smtplib load only when sending

log = logging.getLogger("cskpi.digest")
# A window still open when the digest is made (today, this-week) cannot have a sync after its
# end; a sync this recent is fresh enough (the daemon's default sync interval).
OPEN_WINDOW_FRESH = timedelta(minutes=15)


class UnknownDigestError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class TargetResult:
    target: str  # "slack" or "email"
    status: Status
    error: str | None = None  # redacted; for "sent", a warning (a chart that did not upload)


@dataclass(frozen=True)
class DigestResult:
    digest: str
    window: Window
    targets: list[TargetResult] = field(default_factory=list)
    unsynced: str | None = None  # why nothing was sent: the store is not synced past the window

    @property
    def ok(self) -> bool:
        return self.unsynced is None and all(t.status != "failed" for t in self.targets)

    def summary(self) -> str:
        """One line per target, for the command line."""
        head = f"digest {self.digest} ({window_label(self.window)})"
        if self.unsynced:
            return f"{head}: not sent: {self.unsynced}; run `cskpi sync` first (--force sends)"
        if not self.targets:
            return f"{head}: no slack or email target configured; nothing sent (try --dry-run)"
        notes = {"skipped": "already sent for this window; --force sends it again"}
        return "\n".join(
            f"{head}: {t.target} {t.status}"
            + (f": {t.error}" if t.error else f" ({notes[t.status]})" if t.status in notes else "")
            for t in self.targets
        )


@dataclass(frozen=True)
class Rendered:
    """Everything a digest turns into, for sending or for inspection (``--out``)."""

    digest: Digest
    text: str
    png: bytes
    webhook_message: dict[str, Any]
    api_message: dict[str, Any]
    report: tuple[str, str] | None = None  # (file name, HTML) of the `attach_report` report

    def html(self, image_src: str | None) -> str:
        return render.html(self.digest, image_src)

    @property
    def chart(self) -> Chart:
        from cskpi.core.digest.notify import Chart

        name = f"cskpi-{self.digest.name}-{self.digest.window.start:%Y%m%d}.png"
        return Chart(self.png, name, f"{self.digest.title}: last 14 days")


def settings_of(config: Config, name: str) -> DigestSettings:
    if name not in config.digests:
        configured = ", ".join(config.digests) or "none"
        raise UnknownDigestError(
            f"no digest named {name!r} in {config.path.name}; configured: {configured}"
        )
    return config.digests[name]


def render_digest(engine: Engine, config: Config, name: str, at: datetime) -> Rendered:
    settings = settings_of(config, name)
    digest = build(engine, config, name, at)
    return Rendered(
        digest=digest,
        text=render.text(digest),
        png=chart_png(digest.series),
        webhook_message=render.slack_message(digest, sparkline=True),
        api_message=render.slack_message(digest, sparkline=False),
        report=attached_report(engine, config, settings.attach_report, at),
    )


def attached_report(
    engine: Engine, config: Config, report: str | None, at: datetime
) -> tuple[str, str] | None:
    """The report a digest's ``attach_report`` names, for the window its own period gives
    at the digest's time: its file name (the ``out`` pattern's last part) and HTML. One that
    cannot be made is logged and left out: the digest still goes."""
    if report is None:
        return None
    from cskpi.core.digest.report.page import scheduled

    try:
        page, path = scheduled(engine, config, report, at)
    except Exception as exc:
        log.error("report %s not attached: %s", report, redact(f"{type(exc).__name__}: {exc}"))
        return None
    return path.name, page.html


def preview(config: Config, name: str, at: datetime, engine: Engine | None = None) -> Rendered:
    """The digest as it would be sent, without sending or recording anything."""
    with engine_of(config, engine) as eng:
        return render_digest(eng, config, name, at)


def run_digest(
    config: Config,
    name: str,
    at: datetime,
    *,
    force: bool = False,
    clock: Clock | None = None,
    engine: Engine | None = None,
) -> DigestResult:
    """Send digest ``name`` for the window its period gives at ``at`` to each target not yet
    sent to for that window (every target with ``force``). Nothing is sent while a connector
    has not synced since the window ended (unless ``force``): see :func:`unsynced`."""
    settings = settings_of(config, name)
    window = period_window(settings.period, config.timezone, at, settings.schedule)
    with engine_of(config, engine) as eng:
        if not force and (waiting := unsynced(eng, config, window)):
            return DigestResult(name, window, unsynced=waiting)
        runs = _Runs(eng, name, window, clock)
        claimed = [(t, target) for t, target in targets_of(settings)
                   if runs.claim(runs.row(t), force=force)]  # fmt: skip
        skipped = [TargetResult(t, "skipped") for t, _ in targets_of(settings)
                   if t not in dict(claimed)]  # fmt: skip
        if not claimed:
            return DigestResult(name, window, skipped)
        try:
            rendered = render_digest(eng, config, name, at)
        except Exception as exc:
            error = redact(f"digest {name}: could not be built: {type(exc).__name__}: {exc}")
            for t, _ in claimed:
                runs.finish(runs.row(t), "failed", error)
            return DigestResult(name, window, [*skipped, *(TargetResult(t, "failed", error)
                                                          for t, _ in claimed)])  # fmt: skip
        sent = [_deliver(runs, name, t, target, rendered, clock) for t, target in claimed]
    return DigestResult(name, window, _in_order(settings, [*skipped, *sent]))


def unsynced(engine: Engine, config: Config, window: Window) -> str | None:
    """Why the store cannot make this window's digest yet, or ``None``: every stream of every
    configured connector must have synced successfully since the window ended (within
    :data:`OPEN_WINDOW_FRESH` of its evaluation for a window still open then)."""
    needed = window.end if window.end < window.now else window.now - OPEN_WINDOW_FRESH
    streams: dict[str, list[datetime | None]] = {name: [] for name in config.connectors}
    for state in all_states(engine):
        streams.get(state.connector, []).append(state.last_success_at)
    behind = {name: _oldest(times) for name, times in streams.items()}
    behind = {name: t for name, t in behind.items() if t is None or t < needed}
    if not behind:
        return None
    shown = ", ".join(f"{n} (last success: {_when(t) if t else 'never'})"
                      for n, t in behind.items())  # fmt: skip
    return f"not synced since the window ended ({_when(needed)}): {shown}"


def _oldest(times: list[datetime | None]) -> datetime | None:
    """When every stream had last succeeded; ``None`` if one never did (or none exists)."""
    return None if not times or None in times else min(t for t in times if t is not None)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _in_order(settings: DigestSettings, results: list[TargetResult]) -> list[TargetResult]:
    order = [t for t, _ in targets_of(settings)]
    return sorted(results, key=lambda r: order.index(r.target))


def _deliver(
    runs: _Runs, name: str, t: str, target: Target, rendered: Rendered, clock: Clock | None
) -> TargetResult:
    where = f"digest {name}, {t}"
    status, detail = runs.deliver(runs.row(t), where,
                                  partial(_send, where, target, rendered, clock), log)  # fmt: skip
    if status == "sent":
        log.info("%s: sent for %s", where, rendered.digest.window.start.isoformat())
    return TargetResult(t, status, detail)


def _send(where: str, target: Target, rendered: Rendered, clock: Clock | None) -> str | None:
    """Post or mail the digest; the warning of a send that went out (a chart that did not
    upload, a refused recipient) is logged and returned without ``where``."""
    warning = _post(where, target, rendered, clock)
    if warning:
        warning = warning.removeprefix(f"{where}: ")
        log.warning("%s: %s", where, warning)
    return warning


def _post(where: str, target: Target, rendered: Rendered, clock: Clock | None) -> str | None:
    from cskpi.core.digest import notify

    if isinstance(target, EmailTarget):
        msg = notify.email_message(
            target, render.subject(rendered.digest), rendered.text,
            partial(render.html, rendered.digest), rendered.chart, rendered.report,
        )  # fmt: skip
        return notify.send_email(where, target, msg)
    if target.webhook_url is not None:
        notify.post_webhook(where, target, rendered.webhook_message, clock)
        return None
    return notify.post_api(where, target, rendered.api_message, rendered.chart, clock)


def check_targets(config: Config) -> list[tuple[str, bool, str]]:
    """(``digest NAME: target``, ok, detail) for every digest target, and likewise for every
    ``[alerts.NAME]`` target (they share the models): one cheap authenticated call each
    (SPEC §1 `cskpi check`)."""
    from cskpi.core.digest import notify

    results = []
    tables = [("digest", n, s.slack, s.email) for n, s in config.digests.items()]
    tables += [("alert", n, s.slack, s.email) for n, s in config.alerts.items()]
    for kind, name, slack, email in tables:
        for t, target in (("slack", slack), ("email", email)):
            if target is None:
                continue
            where = f"{kind} {name}: {t}"
            try:
                if isinstance(target, EmailTarget):
                    detail = notify.check_email(where, target)
                elif target.webhook_url is not None:
                    detail = notify.check_webhook(where, target)
                else:
                    detail = notify.check_api(where, target)
            except Exception as exc:
                results.append((where, False, redact(f"{type(exc).__name__}: {exc}")))
            else:
                results.append((where, True, detail))
    return results


# --- digest_run -------------------------------------------------------------------------


class _Runs(Claims):
    """The ``digest_run`` rows of one digest and window."""

    def __init__(self, engine: Engine, name: str, window: Window, clock: Clock | None) -> None:
        super().__init__(engine, "digest_run", ("digest", "window_from", "window_to", "target"),
                         clock)  # fmt: skip
        self.window = {"digest": name, "window_from": to_epoch(window.start),
                       "window_to": to_epoch(window.end)}  # fmt: skip

    def row(self, target: str) -> dict[str, str | int | None]:
        return {**self.window, "target": target}


def write_files(rendered: Rendered, folder: Path) -> list[Path]:
    """The digest for inspection: Block Kit JSON (as posted with a token and with a webhook),
    the email's HTML (its image beside it), the PNG and the plain text."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"digest-{rendered.digest.name}"
    png = folder / f"{stem}.png"
    files = {
        folder / f"{stem}.slack.json": json.dumps(
            rendered.api_message, indent=2, ensure_ascii=False
        ),
        folder / f"{stem}.webhook.json": json.dumps(
            rendered.webhook_message, indent=2, ensure_ascii=False
        ),
        folder / f"{stem}.html": rendered.html(png.name),
        folder / f"{stem}.txt": rendered.text,
    }
    if rendered.report is not None:
        files[folder / rendered.report[0]] = rendered.report[1]
    for path, content in files.items():  # customer data: 0600 (core/files.py)
        write_private(path, content + ("" if content.endswith("\n") else "\n"))
    write_private(png, rendered.png)
    return [*files, png]
