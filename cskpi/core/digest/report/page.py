"""`cskpi report`: one self-contained HTML file (``templates/report.html.j2``) with inline CSS
and inline SVG charts, no script and no remote resource, so it opens the same offline, in a
browser, attached to an email and on a phone.

The figures are `cskpi kpis --interval day --format json`'s (``kpis.output.to_json`` of
``kpis.series.compute_series``: the window's KPIs and its daily series in one engine pass);
the previous window is the same engine over the window one period earlier (a month back for
the month periods, the same number of days back otherwise, the span just before for
``--from/--to``) evaluated at the same instant, so `cskpi kpis --from … --to … --now …`
reproduces both columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from cskpi.core.config.file import Config, ReportSettings
from cskpi.core.config.periods import Window, period_window
from cskpi.core.digest.content import one_period_back, window_label
from cskpi.core.digest.report.blocks import Section
from cskpi.core.digest.report.sections import (
    SECTIONS,
    Figures,
    Inputs,
    sections,
    start,
    where_items,
    window_args,
)
from cskpi.core.files import write_private
from cskpi.core.kpis.drill import accounts_at_risk
from cskpi.core.kpis.filters import EVERYTHING, Where, resolve
from cskpi.core.kpis.output import to_json
from cskpi.core.kpis.report import KpiContext, arrange, compute
from cskpi.core.kpis.series import compute_series
from cskpi.core.store.dialect import connector_condition
from cskpi.core.store.reads.columns import end_spare_readers
from cskpi.core.store.schema import to_epoch


@dataclass(frozen=True)
class ReportPage:
    window: Window
    html: str


def previous_window(window: Window, period: str | None) -> Window:
    """The window the change column compares with, evaluated at ``window.now``."""
    if period is None:
        span = window.end - window.start
        return Window(window.start - span, window.start, window.tz, window.now)
    earlier = period_window(period, window.tz, one_period_back(period, window.tz, window.now))
    return Window(earlier.start, earlier.end, window.tz, window.now)


def build(
    engine: Engine,
    config: Config,
    window: Window,
    *,
    period: str | None = None,
    by: str | None = None,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> ReportPage:
    """The report of ``window``; ``period`` is what made it (for the previous window);
    ``where`` (resolved ``--where``) filters every section that reads the KPI engine.

    The engine's pass over the window runs in this thread; the previous window's and every
    section's reads run in threads beside it (each on a connection or SQLite reader of its
    own), so the store is read on both cores while this thread waits for its reader."""
    ctx = KpiContext.from_config(config)
    chosen = tuple(connectors)
    previous = previous_window(window, period)
    figures: Future[Figures] = Future()
    try:
        # a thread each: the sections, the previous window, the --by table, the accounts
        with ThreadPoolExecutor(len(SECTIONS) + 3) as pool:
            earlier = pool.submit(
                lambda: to_json(compute(engine, previous, ctx, connectors=chosen, where=where))
            )
            inputs = Inputs(config, engine, window, previous, ctx, chosen, figures, earlier,
                            where)  # fmt: skip
            started = start(inputs, pool)
            try:
                figures.set_result(window_figures(engine, window, ctx, by, chosen, where, pool))
            except BaseException as exc:  # the sections waiting for it end with it
                figures.set_exception(exc)
                raise
            return ReportPage(window, render(inputs, by, period, sections(started)))
    finally:
        end_spare_readers()  # `cskpi run` keeps the one reader it had


def window_figures(
    engine: Engine, window: Window, ctx: KpiContext, by: str | None,
    connectors: tuple[str, ...], where: Where, pool: Executor,
) -> Figures:  # fmt: skip
    """The window's document (`kpis --interval day [--by DIM] --format json`) and its
    accounts at risk, with as few engine passes as the engine allows: the window's KPIs and
    daily series come from one ``compute_series``; the --by table from one ``compute``
    (``compute_series`` with ``by`` would also split every day by group, which the report
    does not show); the accounts from that same pass when DIM is organization, else from
    one ``accounts_at_risk``. The last two run in ``pool``, beside the series."""
    grouped = None
    if by is not None:
        grouped = pool.submit(compute, engine, window, ctx, connectors=connectors, by=by,
                              where=where)  # fmt: skip
    accounts = None
    if by != "organization" and paying(engine, window, connectors):
        accounts = pool.submit(accounts_at_risk, engine, window, ctx, connectors=connectors,
                               where=where)  # fmt: skip
    report = compute_series(engine, window, ctx, "day", connectors=connectors, where=where)
    if grouped is not None:
        report = arrange(replace(report, by=grouped.result().by))
    if by == "organization" and report.by is not None:
        risky = [g for g in report.by.groups if g.account is not None and g.account["at_risk"]]
    else:
        risky = [] if accounts is None else accounts.result()
    return Figures(to_json(report), risky)


def paying(engine: Engine, window: Window, connectors: Sequence[str]) -> bool:
    """Whether an organization could be at risk: one with MRR above 0, not churned by the
    window's end (``kpis/accounts.py``). A store without (no CRM data) skips the pass over
    every organization, which would find none."""
    only, params = connector_condition(connectors)
    sql = ("SELECT 1 FROM organization WHERE mrr > 0 "  # noqa: S608
           f"AND (churned_at IS NULL OR churned_at >= :end){only} LIMIT 1")  # fmt: skip
    with engine.connect() as conn:
        found = conn.execute(text(sql), params | {"end": to_epoch(window.end)}).first()
    return found is not None


def render(i: Inputs, by: str | None, period: str | None, drawn: list[Section]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cskpi.core.digest", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    w = i.window
    return env.get_template("report.html.j2").render(
        title=f"Support report · {window_label(w)}",
        window=w,
        local=lambda moment: f"{moment.astimezone(w.tz):%Y-%m-%d %H:%M}",
        previous=i.previous,
        previous_label=window_label(i.previous),
        connectors=i.doc["connectors"],
        by=by,
        where=where_items(i.where),
        unfiltered=UNFILTERED,
        command=reproduce(i, by),
        sections=drawn,
    )


def reproduce(i: Inputs, by: str | None) -> str:
    """The `cskpi kpis` command that prints this report's figures."""
    parts = ["cskpi kpis", *window_args(i, where=False)] + ([f"--by {by}"] if by else [])
    parts += [f"--where {item}" for item in where_items(i.where)]
    return " ".join([*parts, "--interval day --format json"])


# What ``--where`` does not reach: lists and plans whose queries take no filter (yet).
UNFILTERED = ("the lists of breached and waiting tickets", "the forecast", "the staffing gaps",
              "the alerts fired", "data freshness")  # fmt: skip


def file_name(window: Window, pattern: str = "report-{from}-{to}.html", name: str = "") -> str:
    """``pattern`` with {name} and the window's local first and last dates ({from}, {to})."""
    first = window.start.astimezone(window.tz).date()
    last = (window.end - timedelta(microseconds=1)).astimezone(window.tz).date()
    return pattern.format_map({"name": name, "from": first.isoformat(), "to": last.isoformat()})


def scheduled(engine: Engine, config: Config, name: str, at: datetime) -> tuple[ReportPage, Path]:
    """The report ``[reports.NAME]`` for the window its period gives at ``at``, and where it
    goes (``out``, relative to the config file's folder); its ``where`` filters it as
    ``--where`` does (resolved now: a value no longer in the store is a one-line error)."""
    settings: ReportSettings = config.reports[name]
    window, path = scheduled_file(config, name, at)
    where = resolve(engine, dict(settings.where.items()), list(config.connectors),
                    f"{config.path.name}: [reports.{name}] where")  # fmt: skip
    page = build(engine, config, window, period=settings.period, by=settings.by,
                 connectors=settings.connectors, where=where)  # fmt: skip
    return page, path


def scheduled_file(config: Config, name: str, at: datetime) -> tuple[Window, Path]:
    """The window report ``name`` covers when due at ``at``, and its file."""
    settings = config.reports[name]
    window = period_window(settings.period, config.timezone, at, settings.schedule)
    path = Path(file_name(window, settings.out, name)).expanduser()
    return window, path if path.is_absolute() else config.path.parent / path


def write_scheduled(
    engine: Engine, config: Config, name: str, at: datetime, *, replace: bool = True
) -> Path | None:
    """Write the scheduled report, 0600 as every file of customer data. ``replace``: a file
    of the same window is rewritten (a rerun refreshes it); otherwise (the catch-up of a
    report missed while `cskpi run` was down) it is kept, nothing is computed, and the
    result is None."""
    if not replace and scheduled_file(config, name, at)[1].exists():
        return None
    page, path = scheduled(engine, config, name, at)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, page.html, exclusive=not replace)
    return path
