"""`kpis --where`, `kpis --interval`, `tickets` and the account view on the command line
(SPEC §6), over a synced demo store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cskpi.cli import app
from tests.test_cli import runner, synced

WINDOW = ["--from", "2026-10-12", "--to", "2026-11-01", "--now", "2026-11-01"]
LO, HI = 1791590400, 1793491200  # 2026-10-12 and 2026-11-01 UTC


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synced(tmp_path_factory.mktemp("views"))


def run_json(cfg: Path, *args: str) -> Any:
    result = runner.invoke(app, [*args, "-c", str(cfg), "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def db(cfg: Path) -> sqlite3.Connection:
    return sqlite3.connect(cfg.parent / "kpi.db")


def test_where_restricts_the_kpis_to_the_tickets_it_names(cfg: Path) -> None:
    doc = run_json(cfg, "kpis", *WINDOW, "--where", "channel=email", "--where", "channel=chat")
    sql = ("SELECT COUNT(*) FROM ticket WHERE NOT deleted AND created_at >= ? AND created_at < ? "
           "AND channel IN ('email', 'chat')")  # fmt: skip
    assert doc["kpis"]["tickets_created"]["value"] == db(cfg).execute(sql, (LO, HI)).fetchone()[0]


def test_where_takes_an_agents_name(cfg: Path) -> None:
    agent, name = (
        db(cfg)
        .execute("SELECT id, name FROM person WHERE role = 'agent' ORDER BY id LIMIT 1")
        .fetchone()
    )
    by_name = run_json(cfg, "kpis", *WINDOW, "--where", f"agent={name}")
    by_id = run_json(cfg, "kpis", *WINDOW, "--by", "agent")
    group = next(g for g in by_id["by"]["groups"] if g["key"] == agent)
    for key in ("tickets_created", "tickets_solved", "backlog", "csat"):
        assert by_name["kpis"][key] == group["kpis"][key], key


def test_an_unknown_name_is_one_usage_line(cfg: Path) -> None:
    result = runner.invoke(app, ["kpis", "-c", str(cfg), "--where", "agent=Nobody Atall"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --where agent=Nobody Atall: no agent with that id or name"
    ]
