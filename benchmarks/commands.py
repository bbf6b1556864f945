"""Benchmark: the working views, alarm bells, forecast, staffing and report, end to end.

    python -m benchmarks.commands --db /tmp/cskpi-kpi-bench.db   # the store benchmarks.kpis builds

Each command runs as a user runs it (``python -m cskpi …`` in a new process, so imports and
the SQLite reader's start are included) against the 1M-ticket demo store of
``benchmarks.kpis``, with ``--now`` at the store's end; the median wall time of three runs
and the largest resident memory of a command with its SQLite reader (sampled) are printed.
Targets (issues 24, 26 and 27): `kpis` over 30 days with every KPI < 1.5 s; `--interval
day` over 365 days < 3 s; `tickets --kpi sla_first_response --format csv` over 30 days
< 2 s; `alerts` with five alerts < 2 s; `forecast` and `staffing` < 2 s each; `report`
< 5 s and < 2 MB; peak RSS < 300 MB. A command this checkout does not have is reported as
such. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.kpis import END, build, rss_of, stored_tickets
from cskpi.core.config.file import Config

NOW = END.isoformat()
MONTH = ["--from", "2026-10-02", "--to", "2026-11-01", "--now", NOW]
YEAR = ["--from", "2025-11-01", "--to", "2026-11-01", "--now", NOW]

CONFIG = """\
timezone = "Europe/Berlin"
database = "sqlite:///{db}"

[connectors.bench]
type = "demo"

[business_hours]
mon = "09:00-18:00"
tue = "09:00-18:00"
wed = "09:00-18:00"
thu = "09:00-18:00"
fri = "09:00-18:00"

[sla]
first_response = {{ urgent = "1h", high = "4h", normal = "8h", low = "24h" }}
resolution = {{ urgent = "6h", high = "24h", normal = "48h", low = "144h" }}
business_hours = true
"""
# The tables of issue 26, left out where this checkout does not know them (a "before" run).
PLAN = """
[staffing]
aht = "8m"
target = "80% in 60s"
shrinkage = 0.3
max_occupancy = 0.85

[alerts.created]
kpi = "tickets_created"
interval = "day"

[alerts.created-by-tag]
kpi = "tickets_created"
by = "tag"
interval = "day"

[alerts.backlog]
kpi = "backlog"
interval = "day"

[alerts.frt]
kpi = "first_response_time"
interval = "day"

[alerts.csat]
kpi = "csat"
interval = "day"
"""

COMMANDS: list[tuple[str, list[str], float]] = [
    ("kpis, 30 days, every KPI", ["kpis", *MONTH, "--format", "json"], 1.5),
    ("kpis --interval day, 365 days", ["kpis", *YEAR, "--interval", "day", "--format", "json"], 3),
    (
        "tickets --kpi sla_first_response csv",
        ["tickets", *MONTH, "--kpi", "sla_first_response", "--format", "csv"],
        2,
    ),
    ("alerts --dry-run, 5 alerts", ["alerts", "--dry-run", "--now", NOW], 2),
    ("forecast", ["forecast", "--now", NOW, "--format", "json"], 2),
    ("staffing", ["staffing", "--now", NOW, "--format", "json"], 2),
    ("report, 30 days", ["report", *MONTH, "--out", "{out}", "--force"], 5),
]


PEAKS = {"total": 0.0, "own": 0.0}  # MB of a command and its SQLite reader together


def run(config: Path, argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, exit code and the first line of stderr of one CLI run; the resident
    memory of the command and its children is sampled every 10 ms into PEAKS."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cskpi", "-c", str(config), *argv],
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        while process.poll() is None:
            sample(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.01)
        elapsed = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return elapsed, process.returncode, (stderr.strip() or "\n").split("\n")[0]


def sample(pid: int) -> None:
    pids, found = [pid], 0
    while found < len(pids):  # the process tree, breadth first
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pids[found]}/task/{pids[found]}/children").read_text()
            pids += [int(c) for c in children.split()]
        found += 1
    sizes = []
    for p in pids:
        with contextlib.suppress(OSError, IndexError):
            sizes.append(rss_of(p))
    PEAKS["total"] = max(PEAKS["total"], sum(t for t, _ in sizes))
    PEAKS["own"] = max(PEAKS["own"], sum(o for _, o in sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=Path("/tmp/cskpi-kpi-bench.db"))
    parser.add_argument("--only", help="run the commands whose label contains this")
    args = parser.parse_args()
    url = f"sqlite:///{args.db}"
    if stored_tickets(url) == 0:
        build(url, 1_000_000)
    folder = Path(tempfile.mkdtemp(prefix="cskpi-bench-"))
    config = folder / "cskpi.toml"
    plan = PLAN if "staffing" in Config.model_fields else ""
    config.write_text(CONFIG.format(db=args.db.resolve()) + plan, encoding="utf-8")
    out = folder / "report.html"
    run(config, ["kpis", *MONTH, "--format", "json"])  # warm the page cache
    for label, argv, target in COMMANDS:
        if args.only and args.only not in label:
            continue
        argv = [a.replace("{out}", str(out)) for a in argv]
        times, code, error = [], 0, ""
        for _ in range(3):
            seconds, code, error = run(config, argv)
            times.append(seconds)
            if code != 0:
                break
        if code != 0:
            print(f"{label:40s} failed (exit {code}): {error}")
            continue
        size = f", {out.stat().st_size / 2**20:.2f} MB" if "report" in label else ""
        print(f"{label:40s} median {statistics.median(times):.2f} s (target < {target} s; "
              + ", ".join(f"{t:.2f}" for t in times) + f"){size}")  # fmt: skip
    print(f"peak RSS of a command and its SQLite reader together: {PEAKS['total']:.0f} MB, of "
          f"which their own (not the store's pages the reader maps) {PEAKS['own']:.0f} MB "
          "(target < 300 MB; sampled every 10 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
