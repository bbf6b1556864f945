"""The `cskpi` command: parse, call one core function, render. No business logic here.

These are the pipeline's commands (init, check, sync, kpis, status, digest, run, demo, ...);
the `connectors`, `secrets` and `import` groups are in ``commands/groups.py`` and the options and
helpers all commands share in ``commands/common.py``. Heavy modules (SQLAlchemy, pydantic models,
rich tables) are imported inside commands so that `cskpi --help` answers at once.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cskpi.commands.common import (
    App,
    ConfigOption,
    Verbose,
    config_everywhere,
    config_or_fail,
    fail,
    installed_types,
    reading_config,
    stop_on_signal,
)
from cskpi.commands.groups import connectors_app, import_app, secrets_app

if TYPE_CHECKING:
    from datetime import datetime

    from cskpi.core.kpis.report import Report
    from cskpi.core.quickstart import Summary

app = App(
    # Locals in a traceback would print the config, database password and all (typer's
    # default before 0.16); a bug's traceback names files and lines only.
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    help="Customer-service KPIs from Zendesk, Freshdesk, Intercom and a support mailbox.\n\n"
    "Start with: cskpi demo",
)
app.add_typer(connectors_app, name="connectors")
app.add_typer(secrets_app, name="secrets")
app.add_typer(import_app, name="import")


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"cskpi {version('cskpi')}")
        except PackageNotFoundError:  # a checkout on the path, not installed
            typer.echo("cskpi (not installed)")
        raise typer.Exit


@app.callback()
def _options(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    # `cskpi -c f.toml sync` is `cskpi sync -c f.toml` (SPEC §1): the path becomes every
    # command's default, so one given after the command still wins.
    if config is not None:
        ctx.default_map = config_everywhere(ctx.command, config)


ConnectorsOption = Annotated[
    list[str] | None,
    typer.Option("--connector", metavar="NAME", help="Only this connector (repeatable)."),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="DIM=VALUE",
        help="Only tickets (and ratings) with this agent, group, channel, type, priority, tag, "
        "connector, organization or status; an id or a unique name (repeatable: values of one "
        "dimension OR, dimensions AND).",
    ),
]


@app.command()
def init(
    path: Annotated[Path | None, typer.Argument(help="Where to write it.")] = None,
    config: ConfigOption = None,
) -> None:
    """Write a commented config file (default ./cskpi.toml); never overwrites.

    Example: cskpi init && cskpi check"""
    from cskpi.commands.console import out
    from cskpi.core.files import write_private
    from cskpi.core.quickstart import example_config_text

    target = path or config or Path("cskpi.toml")
    try:  # 0600: the config may come to hold secrets
        write_private(target, example_config_text(), exclusive=True)
    except FileExistsError:
        fail(f"{target} already exists; not overwriting it")
    out.print(
        f"wrote {target}; edit it, then run `cskpi check -c {target}`",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def check(config: ConfigOption = None, verbose: Verbose = False) -> None:
    """Validate the config; one cheap authenticated call per connector and digest target.

    Example: cskpi check -c /etc/cskpi/cskpi.toml"""
    from cskpi.commands.console import check_table, out
    from cskpi.core import app as core

    cfg = config_or_fail(config, verbose)
    results = core.check(cfg, installed_types())
    out.print(f"{cfg.path}: config ok", highlight=False)
    out.print(check_table(results))
    if failed := [r.code for r in results if not r.ok]:
        raise typer.Exit(max(failed))


@app.command()
def sync(
    config: ConfigOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DATE", help="Backfill from this date, datetime or span (2025-01-01, 30d)."
        ),
    ] = None,
    connector: ConnectorsOption = None,
    full: Annotated[bool, typer.Option(help="Re-read everything; stored cursors stay.")] = False,
    verbose: Verbose = False,
) -> None:
    """Pull new and changed records from every (or the named) connector.

    Example: cskpi sync --since 30d --connector acme-zendesk"""
    from cskpi.commands.console import BarProgress, LogProgress, sync_report
    from cskpi.core import app as core
    from cskpi.core.config.periods import parse_past_instant

    cfg = config_or_fail(config, verbose)
    # A live bar on a terminal; plain log lines for cron, CI and files.
    observer = BarProgress() if sys.stderr.isatty() else LogProgress()
    try:
        start = parse_past_instant(since, cfg.timezone, "--since") if since else None
        with (
            observer if isinstance(observer, BarProgress) else contextlib.nullcontext(),
            stop_on_signal() as stop,
        ):
            report = core.sync(
                cfg,
                installed_types(),
                only=connector or (),
                since=start,
                full=full,
                observer=observer,
                stop=stop.is_set,
            )
    except (ValueError, core.UsageError) as exc:
        fail(str(exc))
    sync_report(report)
    if not report.ok or report.interrupted:
        raise typer.Exit(1)


Format = Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")]
PeriodOption = Annotated[
    str | None,
    typer.Option(
        "--period",
        "-p",
        help="today, yesterday, last-7d (default), last-30d, Nd, this-week, last-week, "
        "this-month, last-month.",
    ),
]
FromOption = Annotated[
    str | None, typer.Option("--from", metavar="DATE", help="Window start: date or datetime.")
]
ToOption = Annotated[
    str | None, typer.Option("--to", metavar="DATE", help="Window end (exclusive); default now.")
]
NowOption = Annotated[
    str | None,
    typer.Option(metavar="DATE", help="Evaluate as of this instant (reproducible reports)."),
]


@app.command()
def kpis(
    config: ConfigOption = None,
    period: PeriodOption = None,
    start: FromOption = None,
    end: ToOption = None,
    by: Annotated[
        str | None,
        typer.Option(
            metavar="DIMENSION",
            help="agent, group, channel, type, priority, tag, connector or organization.",
        ),
    ] = None,
    connector: ConnectorsOption = None,
    where: WhereOption = None,
    now: NowOption = None,
    output: Format = "table",
    sort: Annotated[
        str | None,
        typer.Option(
            help="--by groups: volume (created + solved; the default), created, solved, "
            "backlog, name or mrr (the default by organization).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="--by groups: only the first N.", show_default=False)
    ] = None,
    native: Annotated[
        bool,
        typer.Option(
            "--native",
            help="Beside each KPI with a vendor twin, the vendor's own figure over the same "
            "tickets, how many diverge and why.",
        ),
    ] = False,
    interval: Annotated[
        str | None,
        typer.Option(metavar="INTERVAL", help="Also per day, week or month of the window."),
    ] = None,
    kpis_shown: Annotated[
        str | None,
        typer.Option(
            "--kpis",
            metavar="A,B,C",
            help="--interval table: the KPIs shown per bucket (default tickets_created, "
            "tickets_solved, backlog, first_response_time, csat).",
        ),
    ] = None,
) -> None:
    """Compute every KPI for a window, optionally per agent, group, channel, …

    Example: cskpi kpis --period last-week --by agent --where channel=email --format csv"""
    output = _format(output, ("table", "json", "csv"))
    cfg = reading_config(config)
    from cskpi.core import app as core
    from cskpi.core.kpis.output import csv_text, json_text
    from cskpi.core.kpis.report import SORTS, arrange

    if sort is not None and sort.lower() not in SORTS:
        fail(f"--sort {sort!r}: use one of {', '.join(SORTS)}")
    request = core.KpiRequest(
        period, start, end, now, by, tuple(connector or ()), native, tuple(where or ()),
        interval.lower() if interval else None,
    )  # fmt: skip
    try:
        shown = _series_kpis(kpis_shown)
        report = arrange(core.kpis(cfg, request), sort.lower() if sort else None, limit)
    except (ValueError, core.UsageError) as exc:
        fail(str(exc))
    if output == "json":
        typer.echo(json_text(report))
    elif output == "csv":
        typer.echo(csv_text(report), nl=False)
    else:
        _print_kpis(report, shown)


def _series_kpis(given: str | None) -> tuple[str, ...]:
    from cskpi.core.config.file import KPI_KEYS

    if given is None:
        return SERIES_KPIS
    keys = tuple(k.strip() for k in given.split(",") if k.strip())
    if unknown := [k for k in keys if k not in KPI_KEYS]:
        raise ValueError(f"--kpis: unknown KPI {unknown[0]!r}; known: {', '.join(KPI_KEYS)}")
    return keys or SERIES_KPIS


SERIES_KPIS = ("tickets_created", "tickets_solved", "backlog", "first_response_time", "csat")


@app.command()
def tickets(
    config: ConfigOption = None,
    period: PeriodOption = None,
    start: FromOption = None,
    end: ToOption = None,
    kpi: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="The tickets (or ratings) behind this KPI."),
    ] = None,
    unhappy: Annotated[
        bool, typer.Option(help="Unhappy ratings in the window, highest MRR first.")
    ] = False,
    native: Annotated[
        bool,
        typer.Option(
            "--native",
            help="With --kpi: the tickets whose figure diverges from the vendor's own, with "
            "both and the reason.",
        ),
    ] = False,
    connector: ConnectorsOption = None,
    where: WhereOption = None,
    now: NowOption = None,
    output: Format = "table",
) -> None:
    """List the tickets behind a KPI (default: those created in the window), or its ratings.

    Example: cskpi tickets --period last-7d --kpi sla_first_response --format csv"""
    output = _format(output, ("table", "json", "csv"))
    cfg = reading_config(config)
    from cskpi.core import app as core
    from cskpi.core.kpis.output import listing_csv, listing_json

    window_request = core.KpiRequest(
        period, start, end, now, None, tuple(connector or ()), where=tuple(where or ())
    )
    try:
        found_in = core.TicketsRequest(window_request, kpi, unhappy, native)
        window, found = core.tickets(cfg, found_in)
    except (ValueError, core.UsageError) as exc:
        fail(str(exc))
    if output == "json":
        typer.echo(listing_json(found, window))
    elif output == "csv":
        typer.echo(listing_csv(found, window), nl=False)
    else:
        from cskpi.commands.console import out
        from cskpi.commands.views import listing_table

        out.print(listing_table(found, window))


@app.command()
def report(
    config: ConfigOption = None,
    period: Annotated[
        str | None,
        typer.Option("--period", "-p", help="As for kpis: last-7d (default), last-30d, Nd, …"),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="DATE", help="Window start: date or datetime.")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", metavar="DATE", help="Window end (exclusive); default now."),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(metavar="DIMENSION", help="Add a table per agent, group, channel, …"),
    ] = None,
    connector: ConnectorsOption = None,
    where: WhereOption = None,
    now: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="Evaluate as of this instant (reproducible reports)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Default: report-FROM-TO.html here."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace the file if it exists.")] = False,
) -> None:
    """Write one self-contained HTML report of a window: KPIs with their change, daily
    chart, distributions, heatmap, SLA breaches, data freshness (see README: Reports).

    Example: cskpi report --period last-30d --by agent --where channel=email --out nov.html"""
    cfg = reading_config(config, readers=2)
    from cskpi.core import app as core

    request = core.KpiRequest(period, start, end, now, by, tuple(connector or ()),
                              where=tuple(where or ()))  # fmt: skip
    try:
        path = core.report(cfg, request, out, replace=force)
    except FileExistsError as exc:
        fail(f"{exc.filename} already exists; --force replaces it")
    except (ValueError, core.UsageError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {path}")


def _format(given: str, choices: tuple[str, ...]) -> str:
    """``--format`` in any case (JSON, Csv); a usage error naming the choices otherwise."""
    if given.lower() not in choices:
        fail(f"--format {given!r}: use {', '.join(choices[:-1])} or {choices[-1]}")
    return given.lower()


def _print_kpis(report: Report, series_kpis: tuple[str, ...] = ()) -> None:
    from cskpi.commands.console import kpi_tables, out
    from cskpi.commands.views import series_table

    for table in kpi_tables(report):
        out.print(table)
    if report.series is not None:
        out.print(series_table(report, series_kpis))


@app.command()
def forecast(
    config: ConfigOption = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="Days to forecast.")] = 28,
    now: NowOption = None,
    output: Format = "table",
) -> None:
    """Arrivals by day and hour with an 80% band, solves and the projected backlog, from
    the same hours of the last 8 weeks; with the backtest error (docs/planning.md).

    Example: cskpi forecast --days 14 --format json"""
    import json

    output = _format(output, ("table", "json", "csv"))
    cfg = reading_config(config)
    from cskpi.commands.console import out
    from cskpi.commands.planning import forecast_csv, forecast_table
    from cskpi.core import app as core
    from cskpi.core.workload.documents import forecast_document

    try:
        report = core.forecast(cfg, days, now)
    except ValueError as exc:
        fail(str(exc))
    if output == "json":
        typer.echo(json.dumps(forecast_document(report), indent=2))
    elif output == "csv":
        typer.echo(forecast_csv(report), nl=False)
    else:
        out.print(forecast_table(report))


@app.command()
def staffing(
    config: ConfigOption = None,
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Whole weeks of history.")] = 4,
    now: NowOption = None,
    output: Format = "table",
) -> None:
    """Agents required (Erlang C for live channels, workload for async ones), agents seen at
    work and the gap, per hour of the week ([staffing] in the config; docs/planning.md).

    Example: cskpi staffing --weeks 8 --format csv"""
    import json

    output = _format(output, ("table", "json", "csv"))
    cfg = reading_config(config)
    from cskpi.commands.console import out
    from cskpi.commands.planning import staffing_csv, staffing_views
    from cskpi.core import app as core
    from cskpi.core.workload.documents import staffing_document

    try:
        plan = core.staffing(cfg, weeks, now)
    except ValueError as exc:
        fail(str(exc))
    if output == "json":
        typer.echo(json.dumps(staffing_document(plan), indent=2))
    elif output == "csv":
        typer.echo(staffing_csv(plan), nl=False)
    else:
        for view in staffing_views(plan):
            out.print(view, highlight=False)


@app.command()
def status(
    config: ConfigOption = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help="table, or json for monitoring.")
    ] = "table",
) -> None:
    """Per connector and stream: last success, cursor, rows stored, last error.

    Example: cskpi status -c cskpi.toml --format json"""
    import json
    from datetime import UTC, datetime

    from cskpi.commands.console import (
        daemon_text,
        out,
        runs_table,
        status_document,
        status_table,
        stored_table,
    )
    from cskpi.core import app as core

    output = _format(output, ("table", "json"))
    report = core.status(config_or_fail(config))
    if output == "json":
        typer.echo(json.dumps(status_document(report, datetime.now(UTC)), indent=2))
        return
    typer.echo(daemon_text(report.daemon, datetime.now(UTC)))
    if report.runs:
        out.print(runs_table(report))
    if not report.streams:
        out.print("nothing synced yet; run `cskpi sync`")
        return
    out.print(status_table(report))
    out.print(stored_table(report))


@app.command("migrate-store")
def migrate_store(
    to: Annotated[
        str, typer.Option("--to", metavar="URL", help="URL of the (empty) target database.")
    ],
    config: ConfigOption = None,
) -> None:
    """Copy the configured store into another database (e.g. postgresql+psycopg://…) and
    verify the row counts. See docs/postgres.md.

    Example: cskpi migrate-store --to postgresql+psycopg://cskpi@db/cskpi"""
    from sqlalchemy.exc import SQLAlchemyError

    from cskpi.core.store.transfer import StoreCopyError, copy_store

    source = config_or_fail(config).database
    try:
        report = copy_store(source, to)
    except (StoreCopyError, SQLAlchemyError, ModuleNotFoundError) as exc:
        fail(str(exc).splitlines()[0], 1)
    for table in report.tables:
        typer.echo(f"{table.table:14s} {table.rows:>12,} rows")
    typer.echo(f"copied {report.rows:,} rows from {report.source} to {report.target}; "
               "counts verified. Point `database` in the config at the target.")  # fmt: skip


@app.command()
def digest(
    name: Annotated[str | None, typer.Argument(help="Digest name. Default: every digest.")] = None,
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plain-text digest; send nothing.")
    ] = False,
    date: Annotated[
        str | None, typer.Option(help="Evaluate at this date or datetime (default now).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Send again a window already sent.")] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Also write Block Kit JSON, HTML and PNG here."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Render and send a digest for the window its period gives at --date; each window
    goes to each target once (see docs/digest.md).

    Example: cskpi digest daily --dry-run --date 2026-11-20T09:00"""
    from datetime import UTC, datetime

    from cskpi.core.config.periods import parse_past_instant
    from cskpi.core.digest import runs as digests
    from cskpi.core.kpis.filters import FilterError

    cfg = config_or_fail(config, verbose)
    try:
        names = [name] if name else list(cfg.digests)
        for n in names:
            digests.settings_of(cfg, n)
        at = parse_past_instant(date, cfg.timezone, "--date") if date else datetime.now(UTC)
    except (ValueError, digests.UnknownDigestError) as exc:
        fail(str(exc))
    if not names:
        fail(f"{cfg.path.name} has no [digests.NAME] table")
    ok = True
    for n in names:
        if dry_run or out_dir:
            try:
                rendered = digests.preview(cfg, n, at)
            except FilterError as exc:  # a `where` naming no agent, group or organization
                fail(str(exc))
            if dry_run:
                typer.echo(rendered.text)
            if out_dir:
                typer.echo("\n".join(f"wrote {p}" for p in digests.write_files(rendered, out_dir)))
        if not dry_run:
            result = digests.run_digest(cfg, n, at, force=force)
            typer.echo(result.summary())
            ok = ok and result.ok
    if not ok:
        raise typer.Exit(1)


@app.command()
def alerts(
    name: Annotated[str | None, typer.Argument(help="Alert name. Default: every alert.")] = None,
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what fires; post and record nothing.")
    ] = False,
    now: NowOption = None,
    verbose: Verbose = False,
) -> None:
    """Evaluate each [alerts.NAME] for the hour or day that ended last before --now, and
    post what is unusual, once per key and bucket (docs/planning.md).

    Example: cskpi alerts --dry-run --now 2026-11-20T10:05"""
    from datetime import UTC, datetime

    from cskpi.commands.planning import alert_lines
    from cskpi.core.alerts import runs
    from cskpi.core.config.periods import parse_past_instant
    from cskpi.core.kpis.filters import FilterError

    cfg = config_or_fail(config, verbose)
    try:
        names = [name] if name else list(cfg.alerts)
        for n in names:
            runs.settings_of(cfg, n)
        at = parse_past_instant(now, cfg.timezone, "--now") if now else datetime.now(UTC)
    except (ValueError, runs.UnknownAlertError) as exc:
        fail(str(exc))
    if not names:
        fail(f"{cfg.path.name} has no [alerts.NAME] table")
    ok = True
    for n in names:
        try:
            result = runs.run_alert(cfg, n, at, dry_run=dry_run)
        except FilterError as exc:  # a `where` naming no agent, group or organization
            fail(str(exc))
        typer.echo(alert_lines(result, cfg.alerts[n], dry_run=dry_run))
        ok = ok and (dry_run or result.ok)  # a dry run sends nothing that could fail
    if not ok:
        raise typer.Exit(1)


@app.command()
def run(
    config: ConfigOption = None,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text, or json: one object per line.")
    ] = "text",
    verbose: Verbose = False,
) -> None:
    """Long-running scheduler: each connector's sync and each digest on its schedule.

    Example: cskpi run --log-format json"""
    import logging
    import os

    from cskpi.commands.console import setup_logging
    from cskpi.core.store.lease import DaemonRunningError
    from cskpi.scheduler.service import Daemon

    if log_format not in ("text", "json"):
        fail(f"--log-format {log_format!r}: use text or json")
    cfg = config_or_fail(config, verbose)
    setup_logging(verbose, json_lines=log_format == "json")
    try:
        clean = Daemon(cfg, installed_types()).run()
    except DaemonRunningError as exc:
        fail(str(exc), code=1)
    if not clean:  # a job is stuck in a network call: its open transaction rolls back
        logging.shutdown()
        os._exit(0)


@app.command()
def demo(
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Scratch folder. Default: $CSKPI_HOME/demo (~/.cskpi/demo)."),
    ] = None,
    tickets: Annotated[int, typer.Option(min=1, help="Tickets to generate.")] = 5000,
    days: Annotated[int, typer.Option(min=1, help="Days they span, up to today.")] = 90,
    seed: int = 1,
    config: ConfigOption = None,
) -> None:
    """Run the whole pipeline on the built-in demo helpdesk, in a scratch folder.

    Example: cskpi demo --tickets 1000 --days 30"""
    from cskpi.commands.console import out, summary_table
    from cskpi.core import quickstart

    where = folder or quickstart.home() / "demo"
    try:
        path, end = quickstart.prepare(where, tickets, days, seed)
    except quickstart.DemoFolderError as exc:
        fail(str(exc))
    out.print(f"demo helpdesk: {tickets:,} tickets over {days} days → {where}", highlight=False)
    sync(config=path)
    out.print(summary_table(_demo_summary(path, end)))
    now = end.isoformat()
    kpis(config=path, period="last-7d", now=now)
    at = f"{quickstart.digest_instant(end):%Y-%m-%dT%H:%M}"
    out.print("\nDigest preview (what Slack and email would receive):", highlight=False)
    digest(config=path, dry_run=True, date=at)
    out.print(
        f"Next: cskpi kpis -c {path} --now {now} --by agent\n      cskpi status -c {path}"
        f"\n      cskpi digest -c {path} --date {at} --dry-run --out digest/"
        f"\n      cskpi report -c {path} --now {now} --by agent",
        highlight=False,
        soft_wrap=True,  # a command broken over two lines cannot be pasted
    )


def _demo_summary(path: Path, end: datetime) -> Summary:
    from cskpi.core import quickstart
    from cskpi.core.store.engine import open_engine

    engine = open_engine(config_or_fail(path).database)
    try:
        return quickstart.summarize(engine, end)
    finally:
        engine.dispose()


def main() -> None:
    app(prog_name="cskpi")
