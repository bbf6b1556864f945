"""Output into a pipe or a file is not broken at 80 columns (issue 23, item 20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_piped_demo_output_keeps_each_command_on_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-rather-long-folder-name-so-that-each-hint-is-past-eighty-columns"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["CSKPI_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cskpi", "demo", "--dir", str(folder), "--tickets", "200",
         "--days", "10"],
        capture_output=True, text=True, timeout=300, env=env, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Next: "))
    hints = [line.removeprefix("Next:").strip() for line in lines[start : start + 4]]
    config = folder / "cskpi.toml"
    assert [h.split(" --")[0] for h in hints] == [
        f"cskpi kpis -c {config}", f"cskpi status -c {config}", f"cskpi digest -c {config}",
        f"cskpi report -c {config}",
    ]  # fmt: skip
    assert hints[0].endswith("--by agent")
    assert hints[2].endswith("--dry-run --out digest/")
    assert any(line.startswith("demo helpdesk: 200 tickets") and str(folder) in line
               for line in lines)  # fmt: skip
