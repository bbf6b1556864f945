"""Benchmark: sync N demo tickets (with their messages, ratings and people) into a store.

    python -m benchmarks.sync_demo --tickets 1000000
    python -m benchmarks.sync_demo --database postgresql+psycopg://cskpi@127.0.0.1:5432/bench

Target (issue 3): ≥ 20,000 tickets/s end to end, peak RSS < 200 MB, and memory that does
not grow with the number of tickets (RSS sampled along the way is printed). On a SQLite
store the pages are written by a writer process (see cskpi/core/page_store.py): its memory
is printed too, and the two processes' RSS and PSS together.
Run by hand; the figures go into the closing note. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
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


def children() -> list[int]:
    """This process's child processes: on a SQLite store, the writer (see page_store)."""
    found: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def status_mb(pid: int | str, key: str, name: str = "status") -> float:
    """A value in kB of /proc/PID/status (or smaps_rollup), in MB; 0 if the process ended."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def together_mb() -> tuple[float, float]:
    """RSS and PSS of this process and its children together. RSS counts the pages of the
    shared libraries both map (pyarrow, the ADBC driver) once per process; PSS shares them
    out, so its sum is what the two processes take from the machine."""
    pids: list[int | str] = ["self", *children()]
    rss = sum(status_mb(pid, "VmRSS:") for pid in pids)
    return rss, sum(status_mb(pid, "Pss:", "smaps_rollup") for pid in pids)


class Sampler:
    """Samples memory every `every` tickets, to show it stays flat."""

    def __init__(self, every: int, page_size: int) -> None:
        self.every = every
        self.page_size = page_size
        self.next = every
        self.samples: list[tuple[int, float, float, float]] = []  # tickets, RSS, sums

    def stream_started(self, connector: str, stream: str) -> None:
        pass

    def page_stored(self, result: StreamResult) -> None:
        if result.stream == "tickets" and result.pages * self.page_size >= self.next:
            self.samples.append((self.next, rss_mb(), *together_mb()))
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
    started = time.perf_counter()
    report = run_sync(engine, [Source("bench", DemoConnector("bench", settings))], observer=sampler)
    elapsed = time.perf_counter() - started
    assert report.ok, report
    rows = sum(s.rows for s in report.streams)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    writers = [status_mb(pid, "VmHWM:") for pid in children()]
    print(f"tickets:        {args.tickets:,}")
    print(f"rows stored:    {rows:,} (tickets, messages, ratings, people, groups, orgs)")
    print(f"elapsed:        {elapsed:.1f} s")
    print(f"tickets/s:      {args.tickets / elapsed:,.0f}")
    print(f"rows/s:         {rows / elapsed:,.0f}")
    print(f"peak RSS:       {peak:.0f} MB (this process)")
    if writers:
        print(f"writer process: {max(writers):.0f} MB peak RSS")
    print("RSS along the way (tickets stored → MB): "
          + ", ".join(f"{n:,}→{mb:.0f}" for n, mb, _, _ in sampler.samples))  # fmt: skip
    print("both processes (tickets stored → RSS / PSS MB): "
          + ", ".join(f"{n:,}→{r:.0f}/{p:.0f}" for n, _, r, p in sampler.samples))  # fmt: skip
    if args.database:
        print(f"database:       {engine.url.render_as_string(hide_password=True)}")
    else:
        print(f"database:       {db.stat().st_size / 2**20:.0f} MB at {db}")


if __name__ == "__main__":
    main()
