"""Rendering for the command line: progress, tables and logging set-up."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cskpi.core.config.secrets import RedactingFilter

if TYPE_CHECKING:  # types only: `cskpi kpis` need not import the sync's HTTP stack
    from cskpi.connectors.base import ConnectorFactory
    from cskpi.core.app import CheckResult, Status
    from cskpi.core.kpis.report import Report
    from cskpi.core.quickstart import Summary
    from cskpi.core.store.lease import DaemonInfo
    from cskpi.core.sync import StreamResult, SyncReport

# Piped or redirected output has no terminal width to fit: rich would break every line at 80
# columns, splitting a command in a hint. There text lines are never broken and tables get
# 200 columns, unless COLUMNS says otherwise.
PIPED_WIDTH = 200


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    width = os.environ.get("COLUMNS", "")
    return Console(
        stderr=stderr, soft_wrap=True, width=int(width) if width.isdigit() else PIPED_WIDTH
    )


out = _console()
err = _console(stderr=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers: time, level, logger, message, and the
    fields a job run adds (job, seconds, rows, status, error)."""

    FIELDS = ("job", "seconds", "rows", "status", "error")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_text:  # what RedactingFilter scrubbed; exc_info formatted anew is not
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


# Libraries whose own warnings reach the user (the scheduler's missed runs, a job's crash):
# through the same handler, so they are redacted and, with --log-format json, JSON too.
LIBRARY_LOGGERS = ("apscheduler",)


def setup_logging(verbose: bool = False, json_lines: bool = False) -> None:
    """Log lines on stderr, secrets redacted; INFO when no terminal shows progress."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("cskpi")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.setLevel(logging.DEBUG if verbose else logging.WARNING)
        library.propagate = False


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


class LogProgress:
    """Sync progress as log lines (cron, CI, files)."""

    log = logging.getLogger("cskpi.sync")

    def stream_started(self, connector: str, stream: str) -> None:
        self.log.info("%s/%s: started", connector, stream)

    def page_stored(self, result: StreamResult) -> None:
        self.log.debug("%s/%s: %d rows so far", result.connector, result.stream, result.rows)

    def stream_finished(self, result: StreamResult) -> None:
        state = "failed (the error is in the summary)" if result.error else "done"
        self.log.info(
            "%s/%s: %s, %d rows in %d pages, %d skipped, up to %s",
            result.connector, result.stream, state, result.rows, result.pages,
            result.skipped, when(result.position),
        )  # fmt: skip


class BarProgress:
    """Sync progress as a live rich display on a terminal."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[rows]:>10,} rows"),
            TextColumn("[dim]{task.fields[at]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> BarProgress:
        self._progress.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def stream_started(self, connector: str, stream: str) -> None:
        name = escape(f"{connector}/{stream}")  # rendered as markup
        self._task = self._progress.add_task(name, total=None, rows=0, at="")

    def page_stored(self, result: StreamResult) -> None:
        if self._task is not None:
            self._progress.update(self._task, rows=result.rows, at=when(result.position))

    def stream_finished(self, result: StreamResult) -> None:
        if self._task is None:
            return
        mark = "[red]✗" if result.error else "[green]✓"
        self._progress.update(
            self._task,
            description=f"{mark}[/] {escape(result.connector)}/{escape(result.stream)}",
            rows=result.rows,
            total=1,
            completed=1,
        )


def sync_report(report: SyncReport) -> None:
    for s in report.streams:
        if s.error:
            where, error = escape(f"{s.connector}/{s.stream}"), escape(s.error)
            rest = "; its other streams were not read" if s.rejected else ""
            # One line per failure, never wrapped: a log reader greps it whole.
            err.print(f"[red]✗ {where}[/]: {error}{rest}", highlight=False, soft_wrap=True)
    read = sum(s.rows for s in report.streams)
    skipped = sum(s.skipped for s in report.streams)
    note = f", {skipped:,} bad records skipped (see log)" if skipped else ""
    failed = sum(1 for s in report.streams if s.error)
    outcome = f"{failed} stream(s) failed" if failed else "ok"
    counts = _changes(read, sum(s.changed for s in report.streams))
    err.print(f"sync {outcome}: {counts}{note}", highlight=False)


def _changes(read: int, changed: int) -> str:
    # Rows stored already, unchanged, are read but not written (store/upserts.py).
    if changed:
        return f"{changed:,} rows new or changed of {read:,} read"
    if read:
        return f"nothing changed ({read:,} rows read, all stored already)"
    return "nothing changed (nothing new to read)"


def status_table(status: Status) -> Table:
    table = Table(
        "connector",
        "stream",
        "last success",
        "synced up to",
        "rows written",
        "cursor",
        "last error",
    )
    for s in status.streams:
        cursor = (s.cursor[:24] + "…") if s.cursor and len(s.cursor) > 25 else (s.cursor or "-")
        table.add_row(
            escape(s.connector), escape(s.stream), when(s.last_success_at), when(s.position),
            f"{s.rows:,}", escape(cursor), escape(s.last_error or ""),
        )  # fmt: skip
    return table


def runs_table(status: Status) -> Table:
    """Each connector's newest sync run: running, ok, failed or interrupted (a stop, or a
    process that ended during it)."""
    table = Table("connector", "last run", "started", "finished", "rows", "skipped", "error")
    colour = {"ok": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    for r in status.runs:
        table.add_row(
            r.connector, f"[{colour.get(r.status, 'default')}]{r.status}", when(r.started_at),
            when(r.finished_at), f"{r.rows:,}", f"{r.skipped:,}", escape(r.error or ""),
        )  # fmt: skip
    return table


def daemon_text(info: DaemonInfo | None, now: datetime) -> str:
    """Whether `cskpi run` is alive on this database, and when each of its jobs runs next."""
    if info is None:
        return "daemon: not running (start it with `cskpi run`)"
    age = int((now - info.heartbeat_at).total_seconds())
    state = "running" if info.alive(now) else "NOT RESPONDING"
    lines = [
        f"daemon: {state}, pid {info.pid} on {info.host}, since {when(info.started_at)}, "
        f"last heartbeat {age}s ago"
    ]
    lines += [
        f"  next {job}: {when(at and at.astimezone(UTC))}" for job, at in sorted(info.jobs.items())
    ]
    return "\n".join(lines)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def status_document(status: Status, now: datetime) -> dict[str, Any]:
    """`cskpi status --format json`, for monitoring: ``ok`` is false when the daemon holding
    the store stopped answering, a connector's last run failed or a stream has an error."""
    info = status.daemon
    daemon = None if info is None else {
        "state": "running" if info.alive(now) else "not_responding", "pid": info.pid,
        "host": info.host, "started_at": _iso(info.started_at),
        "heartbeat_at": _iso(info.heartbeat_at),
        "next": {job: _iso(at) for job, at in sorted(info.jobs.items())},
    }  # fmt: skip
    runs = [{"connector": r.connector, "status": r.status, "started_at": _iso(r.started_at),
             "finished_at": _iso(r.finished_at), "rows": r.rows, "skipped": r.skipped,
             "error": r.error} for r in status.runs]  # fmt: skip
    streams = [{"connector": s.connector, "stream": s.stream,
                "last_success_at": _iso(s.last_success_at), "synced_up_to": _iso(s.position),
                "rows_written": s.rows, "cursor": s.cursor, "last_error": s.last_error}
               for s in status.streams]  # fmt: skip
    ok = (
        (daemon is None or daemon["state"] == "running")
        and not any(r["status"] == "failed" for r in runs)
        and not any(s["last_error"] for s in streams)
    )
    return {"ok": ok, "checked_at": _iso(now), "daemon": daemon, "runs": runs,
            "streams": streams, "stored": dict(sorted(status.stored.items()))}  # fmt: skip


def stored_table(status: Status) -> Table:
    table = Table("connector", "tickets", "messages", "ratings", "people", "groups", "orgs")
    for connector, n in sorted(status.stored.items()):
        table.add_row(
            connector,
            *(
                f"{n[k]:,}"
                for k in ("ticket", "message", "rating", "person", "grp", "organization")
            ),
        )
    return table


def check_table(results: list[CheckResult]) -> Table:
    table = Table("connector or digest target", "", "detail")
    for r in results:
        table.add_row(escape(r.connector), "[green]✓" if r.ok else "[red]✗", escape(r.detail))
    return table


def summary_table(s: Summary) -> Table:
    table = Table(title="What the demo sync stored", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    span = f"{when(s.first_created)[:10]} → {when(s.last_created)[:10]}"
    table.add_row("tickets", f"{s.tickets:,}  (created {span})")
    table.add_row("by status", _counts(s.by_status))
    table.add_row("backlog", f"{s.backlog:,} open at the data's end, as `cskpi kpis` counts it")
    table.add_row("by channel", _counts(s.by_channel))
    table.add_row("messages", f"{s.messages:,}")
    table.add_row("ratings", _counts(s.ratings) or "0")
    table.add_row("people", f"{s.agents:,} agents in {s.groups} groups, {s.customers:,} customers")
    table.add_row("organizations", f"{s.organizations:,}")
    return table


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())


def connector_types_table(types: Mapping[str, ConnectorFactory]) -> Table:
    """Each type with the package that provides it and its config keys."""
    table = Table("type", "provided by", "config keys")
    for name, factory in types.items():
        keys = [
            f"{key}{'' if field.is_required() else '?'}"
            for key, field in factory.Settings.model_fields.items()
            if key != "type"
        ]
        table.add_row(name, factory.__module__.split(".")[0], ", ".join(keys))
    return table


def kpi_tables(report: Report) -> list[Table]:
    """The window's KPIs, then, with --by, one row per group of the headline KPIs."""
    from cskpi.core.kpis.output import detail_text, native_texts, value_text  # see _board

    w = report.window
    span = f"{w.start.astimezone(w.tz):%Y-%m-%d %H:%M} → {w.end.astimezone(w.tz):%Y-%m-%d %H:%M}"
    title = f"KPIs {span} ({w.tz}) · {', '.join(report.connectors) or 'no connectors'}"
    table = Table(title=title, title_justify="left")
    table.add_column("KPI", no_wrap=True)
    table.add_column("value", no_wrap=True)
    table.add_column("detail")
    native = any("native" in entry for entry in report.kpis.values())
    if native:  # cskpi kpis --native
        table.add_column("vendor", no_wrap=True)
        table.add_column("divergence")
    for key, entry in report.kpis.items():
        cells = [value_text(key, entry), detail_text(key, entry)]
        cells += native_texts(entry) if native else ()
        table.add_row(key, *(escape(c) for c in cells))
    tables = [table]
    if report.by is not None:
        tables.append(_board(report))
    return tables


def _board(report: Report) -> Table:
    """One row per group of the headline KPIs; each duration column in one format."""
    # Imported here: the KPI engine behind them is not for every command that prints.
    from cskpi.core.kpis.output import clipped, duration_column, value_text

    assert report.by is not None
    board = Table(report.by.dimension, *(_SHORT[k] for k in _BOARD), title_justify="left",
                  title=f"by {report.by.dimension}")  # fmt: skip
    groups = report.by.groups
    columns = [
        duration_column([g.kpis[k]["value"] for g in groups])
        if k in _DURATIONS
        else [value_text(k, g.kpis[k]) for g in groups]
        for k in _BOARD
    ]
    accounts = any(g.account is not None for g in groups)
    if accounts:  # --by organization: mrr, and a marker with the reasons (SPEC §6 Accounts)
        board.add_column("mrr")
        board.add_column("at risk")
    for g, *cells in zip(groups, *columns, strict=True):
        extra = _account_cells(g.account) if accounts else []
        board.add_row(escape(clipped(g.label)), *cells, *extra)
    return board


def _account_cells(account: dict[str, Any] | None) -> list[str]:
    if account is None:
        return ["-", ""]
    mrr = "-" if account["mrr"] is None else f"{account['mrr']:,.2f}"
    risk = "! " + ", ".join(account["reasons"]) if account["at_risk"] else ""
    return [mrr, escape(risk)]


_SHORT = {
    "tickets_created": "created", "tickets_solved": "solved", "backlog": "backlog",
    "first_response_time": "first response", "resolution_time": "resolution",
    "fcr_rate": "FCR", "csat": "CSAT",
}  # fmt: skip
_BOARD = tuple(_SHORT)
_DURATIONS = {"first_response_time", "resolution_time"}
