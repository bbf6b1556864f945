"""`cskpi forecast` and `cskpi staffing` end to end on a small demo store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cskpi.cli import app

runner = CliRunner()
CONFIG = """\
timezone = "Europe/Berlin"
database = "sqlite:///kpi.db"
[connectors.shop]
type = "demo"
tickets = 1500
days = 42
seed = 3
end = 2026-11-23T00:00:00Z
[staffing]
aht = "6m"
target = "90% in 30s"
shrinkage = 0.25
max_occupancy = 0.8
"""
NOW = "2026-11-23T10:00"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "cskpi.toml"
    path.write_text(CONFIG, encoding="utf-8")
    assert runner.invoke(app, ["sync", "-c", str(path)]).exit_code == 0
    return path


def test_forecast_json(config: Path) -> None:
    result = runner.invoke(app, ["forecast", "-c", str(config), "--now", NOW, "--days", "3",
                                 "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["start"] == "2026-11-23"
    assert doc["history_days"] == 42
    assert [d["date"] for d in doc["forecast"]] == ["2026-11-23", "2026-11-24", "2026-11-25"]
    day = doc["forecast"][0]
    assert day["lo"] <= day["created"] <= day["hi"]
    assert sum(h["created"] for h in day["hours"]) == pytest.approx(day["created"], abs=0.15)
    assert 0.8 <= doc["momentum"] <= 1.25
    assert doc["mape"] is not None


def test_forecast_csv_and_table(config: Path) -> None:
    result = runner.invoke(app, ["forecast", "-c", str(config), "--now", NOW, "--days", "2",
                                 "-f", "csv"])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 2 * 25
    assert rows[24]["hour"] == "all"
    assert rows[24]["backlog"] != ""
    table = runner.invoke(app, ["forecast", "-c", str(config), "--now", NOW, "--days", "2"])
    assert "backtest error (MAPE, last 4 weeks)" in table.output
    assert "Mon 2026-11-23" in table.output


def test_forecast_with_too_little_history(config: Path) -> None:
    # the demo starts on 12 Oct: 8 days before 20 Oct
    result = runner.invoke(app, ["forecast", "-c", str(config), "--now", "2026-10-20T10:00",
                                 "--format", "json"])  # fmt: skip
    doc = json.loads(result.output)
    assert doc["forecast"] is None
    assert doc["reason"] == "8 days of history; a forecast needs at least 14"


def test_staffing_json_csv_table(config: Path) -> None:
    args = ["staffing", "-c", str(config), "--now", NOW, "--weeks", "2"]
    doc = json.loads(runner.invoke(app, [*args, "--format", "json"]).output)
    assert doc["weeks"] == 2
    assert doc["from"] == "2026-11-09"
    assert doc["aht"] == {"seconds": 360.0, "source": "config"}
    assert doc["target"] == {"share": 0.9, "seconds": 30.0}
    for part in ("live", "async", "total"):
        assert [len(row) for row in doc[part]["required"]] == [24] * 7
    assert len(doc["understaffed"]) <= 5
    rows = list(csv.reader(io.StringIO(runner.invoke(app, [*args, "-f", "csv"]).output)))
    assert len(rows) == 1 + 3 * 168
    table = runner.invoke(app, args).output
    assert "live (chat, messaging, phone)" in table
    assert "\x1b[" not in table  # piped: no colour codes


def test_bad_staffing_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG.replace('target = "90% in 30s"', 'target = "90 in 30s"'))
    result = runner.invoke(app, ["staffing", "-c", str(path)])
    assert result.exit_code == 2
    assert '[staffing] target: must look like "80% in 60s"' in result.output
