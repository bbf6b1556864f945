"""What the connector benchmarks share: a vendor imitation in its own process, a timed sync
into a fresh database, per-stream timing, peak RSS and the share of a rate-limit ceiling.

Benchmarks run as modules from the repository root (``python -m benchmarks.NAME``):
benchmarks/email.py would shadow the stdlib ``email`` package in script mode.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

from cskpi.connectors.base import Connector
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, StreamResult, SyncObserver, SyncReport, run_sync

ROOT = Path(__file__).resolve().parents[1]


class Timer:
    """Wall and CPU time per stream, from the engine's observer calls."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[float, float]] = {}
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (all its threads)

    def stream_started(self, connector: str, stream: str) -> None:
        self.started[stream] = (time.perf_counter(), time.process_time())

    def page_stored(self, result: StreamResult) -> None:
        pass

    def stream_finished(self, result: StreamResult) -> None:
        wall, cpu = self.started[result.stream]
        self.seconds[result.stream] = time.perf_counter() - wall
        self.cpu[result.stream] = time.process_time() - cpu


@contextmanager
def imitation_process(module: str, *args: str) -> Iterator[str]:
    """Run ``python -m module *args`` (an imitation's ``main``) and yield the URL it prints;
    in its own process, its JSON rendering does not count against the connector's."""
    server = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait()


def fresh_database(prefix: str) -> Engine:
    return open_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix=prefix)) / 'bench.db'}")


def timed_sync(
    engine: Engine, connector: Connector, observer: SyncObserver | None = None
) -> tuple[SyncReport, float]:
    """One sync of ``connector`` as ``bench``; fails unless every stream succeeded."""
    started = time.perf_counter()
    report = run_sync(engine, [Source("bench", connector)], observer=observer)
    elapsed = time.perf_counter() - started
    assert report.ok, [s.error for s in report.streams if s.error]
    return report, elapsed


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_streams(report: SyncReport, timer: Timer) -> None:
    rows = {s.stream: s.rows for s in report.streams}
    for stream, seconds in timer.seconds.items():
        print(f"   {stream:<14} {rows[stream]:>10,} rows  {seconds:7.1f} s")


def fastest(units: Sequence[int], per_window: int, window: float, lead: float = 0.0) -> float:
    """Seconds from the first to the last of these requests on the fastest schedule a limit
    of ``per_window`` units (requests, credits) per ``window`` seconds allows: unit k (from 0)
    goes no sooner than window k // per_window. ``lead`` is how far into its window the
    first request went (a fixed window that started before it)."""
    before_last = sum(units) - units[-1]
    return before_last // per_window * window - lead
