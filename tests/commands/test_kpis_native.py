"""`cskpi kpis --native` on the command line: the demo helpdesk records no vendor figures,
so every twin is there with nothing compared; the table grows the vendor columns."""

from __future__ import annotations

import json
from pathlib import Path

from cskpi.cli import app
from cskpi.core.kpis.native import RULE_NAMES, TWIN_OF
from tests.test_cli import runner, synced


def test_native_json_puts_the_vendor_figure_beside_each_twin(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    args = ["kpis", "-c", str(cfg), "--from", "2026-10-01", "--to", "2026-11-01", "--native"]
    result = runner.invoke(app, [*args, "-f", "json"])
    assert result.exit_code == 0, result.output
    kpis = json.loads(result.output)["kpis"]
    twins = {key for key, entry in kpis.items() if "native" in entry}
    assert twins == set(TWIN_OF) & set(kpis)
    nothing = {"value": None, "n": 0, "diverging": 0, "reasons": dict.fromkeys(RULE_NAMES, 0)}
    assert kpis["first_response_time"]["native"] == nothing
    assert kpis["handle_time"]["value"] is None  # the demo records no handling time
    table = runner.invoke(app, [*args, "-f", "table"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "vendor" in table.output
    assert "divergence" in table.output
    plain = runner.invoke(app, [args[0], *args[1:-1]], env={"COLUMNS": "200"})
    assert "divergence" not in plain.output
