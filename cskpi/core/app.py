"""What each command does, as functions that return data; ``cli.py`` only renders it."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine, text

from cskpi.core.config.file import DIMENSIONS, Config
from cskpi.core.config.periods import Window, explicit_window, parse_instant, period_window
from cskpi.core.config.secrets import redact
from cskpi.core.files import write_private
from cskpi.core.store.engine import StoreError, check_store, open_engine, write_transaction

# What only some commands need is imported by them (a command's process starts for each
# run, and `cskpi alerts`, `forecast` and `staffing` have seconds to answer in): the sync
# with its HTTP client, the KPI engine, the digest's content, the forecast and staffing.
if TYPE_CHECKING:
    from cskpi.connectors.base import ConnectorFactory
    from cskpi.core.kpis.drill import Listing
    from cskpi.core.kpis.filters import Where
    from cskpi.core.kpis.report import Report
    from cskpi.core.store.lease import DaemonInfo
    from cskpi.core.store.sync_state import RunInfo, StreamState
    from cskpi.core.sync import Source, SyncObserver, SyncReport
    from cskpi.core.workload.forecast import ForecastReport
    from cskpi.core.workload.staffing import StaffingPlan


class UsageError(ValueError):
    """Bad command-line usage (exit 2)."""


def build_sources(
    config: Config, types: Mapping[str, ConnectorFactory], only: Sequence[str] = ()
) -> list[Source]:
    from cskpi.core.sync import Source

    unknown = [name for name in only if name not in config.connectors]
    if unknown:
        raise UsageError(
            f"no connector named {unknown[0]!r} in {config.path.name}; "
            f"configured: {', '.join(config.connectors) or 'none'}"
        )
    return [
        Source(name, types[settings.type](name, settings), settings.start_date)
        for name, settings in config.connectors.items()
        if not only or name in only
    ]


def sync(
    config: Config,
    types: Mapping[str, ConnectorFactory],
    *,
    only: Sequence[str] = (),
    since: datetime | None = None,
    full: bool = False,
    observer: SyncObserver | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> SyncReport:
    from cskpi.core.sync import run_sync

    sources = build_sources(config, types, only)
    engine = open_engine(config.database)
    try:
        return run_sync(engine, sources, since=since, full=full, observer=observer, stop=stop)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class CheckResult:
    connector: str
    ok: bool
    detail: str
    code: int = 1  # the exit status when it failed: 2 for a config to fix (SPEC §1)


# How long `cskpi check` waits for its probes, which run at once: an unreachable host (a
# blackholed address, a vendor retrying 5xx) is reported after this, not after minutes.
CHECK_TIMEOUT = 10.0


def check(
    config: Config, types: Mapping[str, ConnectorFactory], timeout: float = CHECK_TIMEOUT
) -> list[CheckResult]:
    """The database, then one cheap authenticated call per connector and per digest target,
    all at once; a probe without an answer within ``timeout`` seconds fails."""
    from cskpi.core.digest.runs import check_targets

    sources = build_sources(config, types)
    probes: list[Callable[[], list[CheckResult]]] = [partial(_probe, s) for s in sources]
    probes.append(lambda: [CheckResult(*target) for target in check_targets(config)])
    names = [s.name for s in sources] + ["digest targets"]
    late = f"no answer within {timeout:g} s (is the host reachable?)"
    answers = in_parallel(probes, timeout)
    missing = {
        n: [CheckResult(n, False, late)] for n, a in zip(names, answers, strict=True) if a is None
    }
    probed = [r for n, a in zip(names, answers, strict=True) for r in (a or missing.get(n, []))]
    return [_check_database(config), *probed]


def _probe(source: Source) -> list[CheckResult]:
    from cskpi.connectors.base import close_connector

    try:
        source.connector.check()
    except Exception as exc:
        return [CheckResult(source.name, False, redact(f"{type(exc).__name__}: {exc}"))]
    finally:
        close_connector(source.connector)
    return [CheckResult(source.name, True, "ok")]


T = TypeVar("T")


def in_parallel(calls: Sequence[Callable[[], T]], timeout: float) -> list[T | None]:
    """Each call's result, run at once in daemon threads; ``None`` for one still running after
    ``timeout`` seconds (left behind: a daemon thread does not hold the process's exit)."""
    results: list[T | None] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,), name="cskpi-check", daemon=True)
               for i in range(len(calls))]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [None if t.is_alive() else r for t, r in zip(threads, results, strict=True)]


def _check_database(config: Config) -> CheckResult:
    try:
        return CheckResult("database", True, check_store(config.database))
    except StoreError as exc:
        return CheckResult("database", False, str(exc), exc.code)


@dataclass(frozen=True)
class Status:
    streams: list[StreamState]
    stored: dict[str, dict[str, int]]  # connector -> table -> rows
    daemon: DaemonInfo | None = None  # the `cskpi run` holding this database, if any
    runs: list[RunInfo] = field(default_factory=list)  # each connector's newest sync run


_COUNTED = ("ticket", "message", "rating", "person", "grp", "organization")


def stored_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Rows stored per connector and table (messages counted through their ticket)."""
    counts: dict[str, dict[str, int]] = {}
    queries = {
        table: f"SELECT connector, COUNT(*) FROM {table} GROUP BY connector"  # noqa: S608
        for table in _COUNTED
        if table != "message"
    }
    queries["message"] = (
        "SELECT t.connector, COUNT(*) FROM message m JOIN ticket t ON t.id = m.ticket_id "
        "GROUP BY t.connector"
    )
    with engine.connect() as conn:
        for table in _COUNTED:
            for connector, n in conn.execute(text(queries[table])):
                counts.setdefault(connector, dict.fromkeys(_COUNTED, 0))[table] = n
    return counts


def status(config: Config) -> Status:
    from cskpi.core.store import lease
    from cskpi.core.store.sync_state import all_states, end_dead_runs, last_runs

    engine = open_engine(config.database, create=False)
    try:
        with write_transaction(engine) as conn:
            end_dead_runs(conn)
        return Status(
            all_states(engine), stored_counts(engine), lease.load(engine), last_runs(engine)
        )
    finally:
        engine.dispose()


@dataclass(frozen=True)
class KpiRequest:
    period: str | None = None
    start: str | None = None
    end: str | None = None
    now: str | None = None
    by: str | None = None
    connectors: Sequence[str] = ()
    native: bool = False  # beside the vendors' own figures (SPEC §7)
    where: Sequence[str] = ()  # DIM=VALUE, as typed
    interval: str | None = None  # day, week or month: a series (SPEC §6)


DEFAULT_PERIOD = "last-7d"


def kpi_window(config: Config, request: KpiRequest) -> Window:
    tz = config.timezone
    now = (
        parse_instant(request.now, tz) if request.now else datetime.now(UTC).replace(microsecond=0)
    )
    if request.start is None and request.end is None:
        return period_window(request.period or DEFAULT_PERIOD, tz, now)
    if request.period is not None:
        raise UsageError("give either --period or --from/--to, not both")
    if request.start is None:
        raise UsageError("--to needs --from")
    end = request.end or now.isoformat()
    return explicit_window(request.start, end, tz, now)


def _check_request(config: Config, request: KpiRequest) -> None:
    from cskpi.core.kpis.series import INTERVALS

    if request.by is not None and request.by not in DIMENSIONS:
        raise UsageError(f"--by {request.by!r}: use one of {', '.join(DIMENSIONS)}")
    if request.interval is not None and request.interval not in INTERVALS:
        raise UsageError(f"--interval {request.interval!r}: use day, week or month")
    unknown = [n for n in request.connectors if n not in config.connectors]
    if unknown:
        raise UsageError(f"no connector named {unknown[0]!r} in {config.path.name}")


def kpis(config: Config, request: KpiRequest) -> Report:
    """The KPI report for a period or explicit window (SPEC §1 `cskpi kpis`)."""
    from cskpi.core.kpis.report import KpiContext, compute
    from cskpi.core.kpis.series import compute_series

    _check_request(config, request)
    window, engine, where = _open_window(config, request)
    ctx = KpiContext.from_config(config)
    try:
        if request.interval is not None:
            return compute_series(
                engine, window, ctx, request.interval,
                connectors=request.connectors, by=request.by, where=where,
                native=request.native,
            )  # fmt: skip
        return compute(engine, window, ctx, connectors=request.connectors, by=request.by,
                       where=where, native=request.native)  # fmt: skip
    finally:
        engine.dispose()


def where_of(
    engine: Engine, config: Config, typed: Sequence[str] | Mapping[str, Sequence[str]]
) -> Where:
    """``--where`` items (or a digest's ``where`` table) as stored values; a UsageError
    names an unknown dimension or an unknown or ambiguous value."""
    from cskpi.core.kpis import filters

    try:
        raw = typed if isinstance(typed, Mapping) else filters.parse(typed)
        return filters.resolve(engine, raw, list(config.connectors))
    except filters.FilterError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class TicketsRequest:
    kpis: KpiRequest
    kpi: str | None = None
    unhappy: bool = False
    native: bool = False  # the tickets whose figure diverges from the vendor's (SPEC §7)


def tickets(config: Config, request: TicketsRequest) -> tuple[Window, Listing]:
    """The rows behind a KPI, or the unhappy ratings (SPEC §6 Drill-down), each with the
    link into its helpdesk's agent UI where the connector has one."""
    from cskpi.core.kpis import drill
    from cskpi.core.kpis.report import KpiContext

    if request.unhappy and request.kpi is not None:
        raise UsageError("give either --kpi or --unhappy, not both")
    if request.native and request.kpi is None:
        raise UsageError("--native needs --kpi, e.g. --kpi first_response_time --native")
    _check_request(config, request.kpis)
    window, engine, where = _open_window(config, request.kpis)
    try:
        if request.unhappy:
            found = drill.unhappy(engine, window, connectors=request.kpis.connectors, where=where)
        elif request.native:
            assert request.kpi is not None
            found = drill.diverging(engine, window, KpiContext.from_config(config), request.kpi,
                                    connectors=request.kpis.connectors, where=where)  # fmt: skip
        else:
            found = drill.tickets(engine, window, KpiContext.from_config(config), request.kpi,
                                  connectors=request.kpis.connectors, where=where)  # fmt: skip
    except drill.DrillError as exc:
        raise UsageError(str(exc)) from None
    finally:
        engine.dispose()
    return window, with_urls(config, found)


def _open_window(config: Config, request: KpiRequest) -> tuple[Window, Engine, Where]:
    """The window, an engine on a synced store and the resolved --where, for a command that
    reads the KPI engine (the caller disposes of the engine)."""
    window = kpi_window(config, request)
    engine = open_engine(config.database, create=False)
    try:
        _require_synced(engine, request.connectors)
        return window, engine, where_of(engine, config, request.where)
    except BaseException:
        engine.dispose()
        raise


def with_urls(config: Config, listing: Listing) -> Listing:
    """``listing`` with a ``url`` column: each ticket's page in its helpdesk, or None."""
    import numpy as np

    from cskpi.core.digest.content import ticket_url

    ticket = listing.columns.get("external_id", listing.columns.get("ticket_external_id"))
    if ticket is None:
        return listing
    urls = np.empty(len(listing), dtype=object)
    urls[:] = [
        None if ext is None else ticket_url(config, str(c), str(ext))
        for c, ext in zip(listing.columns["connector"], ticket, strict=True)
    ]
    return replace(listing, columns={**listing.columns, "url": urls})


def _require_synced(engine: Engine, connectors: Sequence[str]) -> None:
    """KPIs of a store no sync has filled would be zeros that look like a quiet week."""
    with engine.connect() as conn:
        synced = set(conn.execute(text(
            "SELECT connector FROM sync_state WHERE last_success_at IS NOT NULL OR rows > 0"
        )).scalars())  # fmt: skip
    if not synced:
        raise StoreError("the database holds nothing synced yet: run `cskpi sync` first", 1)
    if missing := [name for name in connectors if name not in synced]:
        raise StoreError(f"connector {missing[0]!r} has not synced yet: run "
                         f"`cskpi sync --connector {missing[0]}` first", 1)  # fmt: skip


def report(
    config: Config, request: KpiRequest, out: Path | None = None, *, replace: bool = False
) -> Path:
    """Write the HTML report of a window (SPEC §9 `cskpi report`) to ``out``, by default
    ``report-FROM-TO.html`` in the current folder; an existing file is kept (FileExistsError)
    unless ``replace``. 0600: it holds ticket subjects."""
    from cskpi.core.digest.report.page import build, file_name

    _check_request(config, request)
    window = kpi_window(config, request)
    path = out or Path(file_name(window))
    # before the work: a file that would not be written is said at once
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: the folder {path.parent} does not exist")
    if path.exists() and not replace:
        raise FileExistsError(errno.EEXIST, "exists", str(path))
    period = None if request.start else (request.period or DEFAULT_PERIOD)
    engine = open_engine(config.database, create=False)
    try:
        _require_synced(engine, request.connectors)
        where = where_of(engine, config, request.where)
        page = build(engine, config, window, period=period, by=request.by,
                     connectors=request.connectors, where=where)  # fmt: skip
    finally:
        engine.dispose()
    try:
        write_private(path, page.html, exclusive=not replace)
    except FileExistsError:
        raise
    except OSError as exc:  # a folder it may not write in, a full disk
        raise UsageError(f"--out {path}: cannot write it: {exc.strerror}") from exc
    return path


def _instant(config: Config, now: str | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    return parse_instant(now, config.timezone)


def forecast(config: Config, days: int, now: str | None = None) -> ForecastReport:
    """Arrivals, solves and backlog for ``days`` days from today (SPEC §8 `cskpi forecast`)."""
    from cskpi.core.workload.forecast import forecast_report

    at = _instant(config, now)
    engine = open_engine(config.database, create=False)
    try:
        _require_synced(engine, ())
        return forecast_report(engine, config.timezone, at, days)
    finally:
        engine.dispose()


def staffing(config: Config, weeks: int, now: str | None = None) -> StaffingPlan:
    """Required and observed agents per hour of the week (SPEC §8 `cskpi staffing`)."""
    from cskpi.core.workload.staffing import staffing_plan

    at = _instant(config, now)
    engine = open_engine(config.database, create=False)
    try:
        _require_synced(engine, ())
        return staffing_plan(engine, config.timezone, config.staffing, at, weeks)
    finally:
        engine.dispose()
