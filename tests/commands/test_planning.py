"""`cskpi forecast` and `cskpi staffing` end to end on a small demo store."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
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


ALERTS = """
[alerts.volume]
kpi = "tickets_created"
interval = "hour"
[alerts.frt]
kpi = "first_response_time"
by = "channel"
"""


def test_alerts_dry_run(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG.replace("sqlite:///kpi.db", f"sqlite:///{config.parent}/kpi.db")
                    + ALERTS)  # fmt: skip
    result = runner.invoke(app, ["alerts", "-c", str(path), "--dry-run", "--now", NOW])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "alert volume (Mon 23 Nov 2026 09:00-10:00): 1 key(s) judged, 0 unusual"
    assert lines[1].startswith("alert frt (Sun 22 Nov 2026): ")
    one = runner.invoke(app, ["alerts", "frt", "-c", str(path), "--dry-run", "--now", NOW])
    assert one.output.startswith("alert frt")
    assert "volume" not in one.output
    unknown = runner.invoke(app, ["alerts", "nope", "-c", str(path)])
    assert unknown.exit_code == 2
    assert "no alert named 'nope'" in unknown.output


def test_alerts_need_a_table_and_a_known_kpi(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG)
    assert "has no [alerts.NAME] table" in runner.invoke(app, ["alerts", "-c", str(path)]).output
    path.write_text(CONFIG + '[alerts.x]\nkpi = "nps"\ninterval = "week"\n')
    result = runner.invoke(app, ["alerts", "-c", str(path)])
    assert result.exit_code == 2
    assert "[alerts.x] kpi: no alert for this KPI; use one of tickets_created" in result.output
    assert "[alerts.x] interval: Input should be 'hour' or 'day'" in result.output


def test_alerts_on_an_unsynced_store(tmp_path: Path) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG + ALERTS)
    runner.invoke(app, ["sync", "-c", str(path)])
    with sqlite3.connect(tmp_path / "kpi.db") as conn:
        conn.execute("UPDATE sync_state SET last_success_at = 0")
    sent = runner.invoke(app, ["alerts", "volume", "-c", str(path), "--now", NOW])
    assert sent.exit_code == 1
    assert sent.output.startswith("alert volume (Mon 23 Nov 2026 09:00-10:00): not evaluated: "
                                  "not synced since the window ended")  # fmt: skip
    dry = runner.invoke(app, ["alerts", "volume", "-c", str(path), "--now", NOW, "--dry-run"])
    assert dry.exit_code == 0
    assert "1 key(s) judged" in dry.output
    assert "this bucket may be incomplete" in dry.output


def test_an_alert_where_naming_nobody_is_a_usage_error(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG.replace("sqlite:///kpi.db", f"sqlite:///{config.parent}/kpi.db")
                    + '[alerts.mine]\nkpi = "backlog"\nwhere = { agent = "Nobody" }\n')  # fmt: skip
    result = runner.invoke(app, ["alerts", "-c", str(path), "--dry-run", "--now", NOW])
    assert result.exit_code == 2
    assert result.output.startswith("error: cskpi.toml: [alerts.mine] where agent=Nobody")
