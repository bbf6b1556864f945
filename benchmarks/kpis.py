"""Benchmark: the full KPI set over a large store.

    python -m benchmarks.kpis --db /tmp/kpi-bench.db          # builds it first if missing
    python -m benchmarks.kpis --database postgresql+psycopg://cskpi@127.0.0.1:5432/bench

The store is the demo helpdesk with 1,000,000 tickets over a year (about 4.3 million
messages, 330,000 ratings and 6.1 million status changes), synced once and reused. Targets
(issue 4): every KPI for a 30-day window in < 1 s, `--by agent` in < 2 s, peak RSS < 300 MB;
(issue 24, with SPEC §6's KPIs): the 30 days < 1.5 s, `--interval day` over 365 days < 3 s,
the tickets behind sla_first_response over 30 days < 2 s
(SQLite is read in a worker process, whose peak is printed as well). Run by hand; the
figures go into the closing note. Not a test.

With ``--database`` the store is that URL (issue 11: PostgreSQL); an empty store is built
by a demo sync first, and that sync's throughput is printed too (target ≥ 20,000
tickets/s).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text

from cskpi.connectors.demo.connector import DemoConnector, DemoSettings
from cskpi.core.config.file import PriorityTargets, Sla
from cskpi.core.config.periods import Window
from cskpi.core.kpis import drill
from cskpi.core.kpis.business_hours import BusinessCalendar
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.kpis.series import compute_series
from cskpi.core.store.engine import open_engine
from cskpi.core.store.reads.columns import sqlite_reader
from cskpi.core.sync import Source, run_sync

END = datetime(2026, 11, 1, tzinfo=UTC)


def build(url: str, tickets: int) -> None:
    settings = DemoSettings(type="demo", tickets=tickets, days=365, seed=7, end=END)
    engine = open_engine(url)
    started = time.perf_counter()
    report = run_sync(engine, [Source("bench", DemoConnector("bench", settings))])
    elapsed = time.perf_counter() - started
    assert report.ok, report
    rows = sum(s.rows for s in report.streams)
    print(f"built the store in {elapsed:.0f} s: {tickets / elapsed:,.0f} tickets/s, "
          f"{rows / elapsed:,.0f} rows/s")  # fmt: skip
    engine.dispose()


def stored_tickets(url: str) -> int:
    engine = open_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT COUNT(*) FROM ticket")).scalar_one())
    engine.dispose()
    return n


def context() -> KpiContext:
    tz = ZoneInfo("Europe/Berlin")
    nine_to_six = [(timedelta(hours=9), timedelta(hours=18))]
    calendar = BusinessCalendar(tz, [nine_to_six] * 5 + [[], []])
    hours = {"urgent": timedelta(hours=1), "high": timedelta(hours=4),
             "normal": timedelta(hours=8), "low": timedelta(hours=24)}  # fmt: skip
    sla = Sla(
        first_response=PriorityTargets(**hours),
        resolution=PriorityTargets(**{p: t * 6 for p, t in hours.items()}),
        business_hours=True,
    )
    return KpiContext(timezone=tz, business=calendar, sla=sla)


def timed(label: str, run: object, repeat: int = 3) -> None:
    assert callable(run)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    print(f"{label:32s} median {statistics.median(times):.3f} s  (runs: "
          + ", ".join(f"{t:.3f}" for t in times) + ")")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=Path("/tmp/cskpi-kpi-bench.db"))
    parser.add_argument("--database", help="a SQLAlchemy URL instead of --db (e.g. PostgreSQL)")
    parser.add_argument("--tickets", type=int, default=1_000_000)
    args = parser.parse_args()
    url = args.database or f"sqlite:///{args.db}"
    if stored_tickets(url) == 0:
        build(url, args.tickets)
    engine = open_engine(url)
    with engine.connect() as conn:
        sizes = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                 for t in ("ticket", "message", "rating")}  # fmt: skip
    print("store: " + ", ".join(f"{n:,} {t}s" for t, n in sizes.items()))
    ctx = context()
    window = Window(END - timedelta(days=30), END, ctx.timezone, END)
    compute(engine, window, ctx)  # warm the page cache: the targets are for a running service
    together = Together(os.getpid(), sqlite_reader().pid)
    together.start()
    # The store's data ends at END, which is in the past: the backlog is read from the status
    # history, as `cskpi kpis --now END` would. "at the present" takes END as the wall clock.
    timed("all KPIs, 30-day window", lambda: compute(engine, window, ctx))
    timed("all KPIs, 30 days, at the present", lambda: compute(engine, window, ctx, wall=END))
    timed("all KPIs, 30 days, --by agent", lambda: compute(engine, window, ctx, by="agent"))
    timed("all KPIs, 30 days, --by tag", lambda: compute(engine, window, ctx, by="tag"))
    back = Window(END - timedelta(days=35), END - timedelta(days=28), ctx.timezone, END)
    timed("all KPIs, a week 5 weeks back", lambda: compute(engine, back, ctx))
    # issue 24: the series over a year, and the tickets behind a KPI
    year = Window(END - timedelta(days=365), END, ctx.timezone, END)
    timed("--interval day, 365 days", lambda: compute_series(engine, year, ctx, "day"), 1)
    timed("tickets --kpi sla_first_response", lambda: drill.tickets(
        engine, window, ctx, "sla_first_response"))  # fmt: skip
    together.done.set()
    together.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = sqlite_reader().pid
    if worker is None:
        print(f"peak RSS: {peak:.0f} MB")
    else:  # SQLite is read in a worker process (core/columnar.py): its memory counts too
        print(f"peak RSS: {peak:.0f} MB here, {peak_of(worker):.0f} MB in the SQLite reader; "
              f"both together at most {together.peak:.0f} MB, of which their own (not the "
              f"store's pages the reader maps) {together.private:.0f} MB "
              "(sampled every 5 ms)")  # fmt: skip


class Together(threading.Thread):
    """Samples the RSS of this process and the SQLite reader together: each one's peak
    comes at another moment (the reader's while it reads, this one's while it computes)."""

    def __init__(self, *pids: int | None) -> None:
        super().__init__(daemon=True)
        self.pids = [pid for pid in pids if pid is not None]
        self.done = threading.Event()
        self.peak = 0.0
        self.private = 0.0

    def run(self) -> None:
        while not self.done.wait(0.005):
            now = [rss_of(pid) for pid in self.pids]
            self.peak = max(self.peak, sum(total for total, _ in now))
            self.private = max(self.private, sum(own for _, own in now))


def rss_of(pid: int) -> tuple[float, float]:
    """A process's resident MB, and of them its own: without the file pages it maps (the
    SQLite reader maps the store, and those pages are the kernel's page cache)."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    resident, shared = int(fields[1]), int(fields[2])
    page = resource.getpagesize() / 2**20
    return resident * page, (resident - shared) * page


def peak_of(pid: int) -> float:
    """A live process's peak RSS in MB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
