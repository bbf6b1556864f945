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


def test_by_groups_come_by_volume_with_sort_and_limit(tmp_path: Path) -> None:
    """Item 18: not by id as text (a1, a10, a2); `(unassigned)` for tickets of no agent."""
    cfg = str(synced(tmp_path))
    args = [
        "kpis",
        "-c",
        cfg,
        "-p",
        "last-30d",
        "--now",
        "2026-11-01",
        "--by",
        "agent",
        "-f",
        "json",
    ]

    def groups(*extra: str) -> list[dict[str, object]]:
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        found: list[dict[str, object]] = json.loads(result.output)["by"]["groups"]
        return found

    def count(g: dict[str, object], key: str) -> int:
        return g["kpis"][key]["value"]  # type: ignore[index,no-any-return]

    every = groups()
    volumes = [count(g, "tickets_created") + count(g, "tickets_solved") for g in every]
    assert volumes == sorted(volumes, reverse=True)
    assert [g["label"] for g in every if g["key"] is None] == ["(unassigned)"]
    top = groups("--sort", "solved", "--limit", "3")
    assert len(top) == 3
    assert [count(g, "tickets_solved") for g in top] == sorted(
        (count(g, "tickets_solved") for g in every), reverse=True
    )[:3]
    bad = runner.invoke(app, [*args, "--sort", "colour"])
    assert bad.exit_code == 2
    assert "--sort 'colour': use one of volume, created, solved, backlog, name" in bad.output
