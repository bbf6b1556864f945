"""`--format` on `kpis` and `status` (issue 23, item 19)."""

from __future__ import annotations

import json
from pathlib import Path

from cskpi.cli import app
from tests.test_cli import runner, synced


def test_format_is_case_insensitive(tmp_path: Path) -> None:
    cfg = str(synced(tmp_path))
    for given in ("JSON", "Json"):
        result = runner.invoke(app, ["kpis", "-c", cfg, "--now", "2026-11-01", "-f", given])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["connectors"] == ["shop"]
    upper = runner.invoke(app, ["kpis", "-c", cfg, "--now", "2026-11-01", "--format", "CSV"])
    assert upper.output.startswith('"from","to","timezone"')
    bad = runner.invoke(app, ["kpis", "-c", cfg, "--format", "xml"])
    assert bad.exit_code == 2
    assert "--format 'xml': use table, json or csv" in bad.output


def test_status_as_json_for_monitoring(tmp_path: Path) -> None:
    cfg = str(synced(tmp_path))
    result = runner.invoke(app, ["status", "-c", cfg, "--format", "JSON"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True
    assert doc["daemon"] is None
    assert [(r["connector"], r["status"]) for r in doc["runs"]] == [("shop", "ok")]
    assert {s["stream"] for s in doc["streams"]} >= {"tickets"}
    assert all(s["last_error"] is None for s in doc["streams"])
    assert doc["stored"]["shop"]["ticket"] == 300
