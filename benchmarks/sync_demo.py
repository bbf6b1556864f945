"""Benchmark: sync N demo tickets (with their messages, ratings and people) into a store.

    python -m benchmarks.sync_demo --tickets 1000000
    python -m benchmarks.sync_demo --database postgresql+psycopg://cskpi@127.0.0.1:5432/bench

Targets (docs/performance.md): SQLite ≥ 5,000 tickets/s, PostgreSQL ≥ 3,000/s, peak RSS
< 200 MB and memory that does not grow with the number of tickets (RSS sampled along the
way is printed). Run by hand; the figures go into docs/performance.md. Not a test.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cskpi.connectors.demo.connector import DemoConnector, DemoSettings
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, StreamResult, run_sync


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class Sampler:
    """Samples memory every `every` tickets, to show it stays flat."""

    def __init__(self, every: int, page_size: int) -> None:
        self.every = every
        self.page_size = page_size
        self.next = every
        self.samples: list[tuple[int, float]] = []  # tickets, RSS

    def stream_started(self, connector: str, stream: str) -> None:
        pass

    def page_stored(self, result: StreamResult) -> None:
        if result.stream == "tickets" and result.pages * self.page_size >= self.next:
            self.samples.append((self.next, rss_mb()))
            self.next += self.every

    def stream_finished(self, result: StreamResult) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="default: a temporary file")
    parser.add_argument("--database", help="a SQLAlchemy URL (an empty store) instead of --db")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cskpi-bench-"))
    db = args.db or folder / "bench.db"
    settings = DemoSettings(
        type="demo", tickets=args.tickets, days=365, seed=7, end=datetime(2026, 11, 1, tzinfo=UTC)
    )
    engine = open_engine(args.database or f"sqlite:///{db}")
    sampler = Sampler(max(args.tickets // 10, settings.page_size), settings.page_size)
    started, cpu = time.perf_counter(), time.process_time()
    report = run_sync(engine, [Source("bench", DemoConnector("bench", settings))], observer=sampler)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.ok, report
    rows = sum(s.rows for s in report.streams)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tickets:        {args.tickets:,}")
    print(f"rows stored:    {rows:,} (tickets, messages, ratings, people, groups, orgs)")
    print(f"elapsed:        {elapsed:.1f} s")
    print(f"tickets/s:      {args.tickets / elapsed:,.0f}")
    # On a busy machine the wall clock shows the neighbours too; this process's CPU does not.
    print(f"CPU:            {cpu:.1f} s, {cpu / args.tickets * 1e6:.0f} µs a ticket (this process)")
    print(f"rows/s:         {rows / elapsed:,.0f}")
    print(f"peak RSS:       {peak:.0f} MB")
    print("RSS along the way (tickets stored → MB): "
          + ", ".join(f"{n:,}→{mb:.0f}" for n, mb in sampler.samples))  # fmt: skip
    if args.database:
        print(f"database:       {engine.url.render_as_string(hide_password=True)}")
    else:
        print(f"database:       {db.stat().st_size / 2**20:.0f} MB at {db}")


if __name__ == "__main__":
    main()
