"""`kpis --where`, `kpis --interval`, `tickets` and the account view on the command line
(SPEC §6), over a synced demo store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cskpi.cli import app
from cskpi.core.config.file import KPI_KEYS
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


def test_tickets_lists_the_rows_behind_a_rate(cfg: Path) -> None:
    fcr = run_json(cfg, "kpis", *WINDOW)["kpis"]["fcr_rate"]
    listed = run_json(cfg, "tickets", *WINDOW, "--kpi", "fcr_rate")
    assert (listed["count"], listed["numerator"]) == (fcr["denominator"], fcr["numerator"])
    assert sum(t["in_numerator"] for t in listed["tickets"]) == fcr["numerator"]
    first = listed["tickets"][0]
    assert set(first) >= {"id", "subject", "tags", "assignee", "organization", "mrr", "url"}
    assert first["created_at"].endswith("+00:00")  # local time, with its offset


def test_tickets_csv_keeps_the_formula_guard(cfg: Path) -> None:
    import csv
    import io

    with db(cfg) as conn:
        conn.execute("UPDATE ticket SET subject = '=HYPERLINK(\"x\")' WHERE created_at >= ?", (LO,))
    result = runner.invoke(app, ["tickets", "-c", str(cfg), *WINDOW, "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == run_json(cfg, "kpis", *WINDOW)["kpis"]["tickets_created"]["value"]
    assert {r["subject"] for r in rows} == {'\'=HYPERLINK("x")'}


def test_tickets_of_a_kpi_without_ticket_rows_is_a_usage_error(cfg: Path) -> None:
    result = runner.invoke(app, ["tickets", "-c", str(cfg), "--kpi", "response_time"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --kpi response_time: no tickets to list; use one of")


def test_interval_series_in_json_csv_and_table(cfg: Path) -> None:
    import csv
    import io

    doc = run_json(cfg, "kpis", *WINDOW, "--interval", "week", "--by", "channel")
    buckets = doc["series"]["buckets"]
    assert doc["series"]["interval"] == "week"
    # Monday 12 October to Sunday 1 November: three whole weeks
    assert [b["from"][:10] for b in buckets] == ["2026-10-12", "2026-10-19", "2026-10-26"]
    assert (
        sum(b["kpis"]["tickets_created"]["value"] for b in buckets)
        == (doc["kpis"]["tickets_created"]["value"])
    )
    assert buckets[-1]["kpis"]["backlog"] == doc["kpis"]["backlog"]
    assert all("groups" in b for b in buckets)
    result = runner.invoke(app, ["kpis", "-c", str(cfg), *WINDOW, "--interval", "day", "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.output)))
    blocks: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        blocks.setdefault((r["from"], r["to"]), set()).add(r["kpi"])
    assert len(blocks) == 1 + 20  # the window, then 20 days
    assert all(kpis == set(KPI_KEYS) for kpis in blocks.values())  # every KPI in each
    assert {r["interval"] for r in rows} == {"", "day"}
    table = runner.invoke(app, ["kpis", "-c", str(cfg), *WINDOW, "--interval", "week",
                                "--kpis", "tickets_created,fcr_rate"])  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "2026-10-19" in table.output
    assert "fcr_rate" in table.output.split("per week")[1]


def test_a_bad_interval_or_kpis_list_is_a_usage_error(cfg: Path) -> None:
    bad = runner.invoke(app, ["kpis", "-c", str(cfg), "--interval", "hour"])
    assert (bad.exit_code, bad.output.strip()) == (
        2,
        "error: --interval 'hour': use day, week or month",
    )
    bad = runner.invoke(app, ["kpis", "-c", str(cfg), "--interval", "day", "--kpis", "nope"])
    assert bad.exit_code == 2
    assert bad.output.startswith("error: --kpis: unknown KPI 'nope'")


def test_by_organization_carries_each_account(cfg: Path) -> None:
    import csv
    import io

    with db(cfg) as conn:
        org = conn.execute("SELECT organization_id FROM ticket WHERE created_at >= ? AND "
                           "organization_id IS NOT NULL LIMIT 1", (LO,)).fetchone()[0]  # fmt: skip
        conn.execute("UPDATE organization SET mrr = 1000 WHERE id = ?", (org,))
    doc = run_json(cfg, "kpis", *WINDOW, "--by", "organization")
    groups = doc["by"]["groups"]
    assert groups[0]["key"] == org  # the highest mrr first
    assert set(groups[0]["account"]) == {"mrr", "created_at", "churned_at", "at_risk", "reasons"}
    assert groups[0]["account"]["mrr"] == 1000
    assert groups[-1]["key"] is None
    assert groups[-1]["account"] is None
    result = runner.invoke(app, ["kpis", "-c", str(cfg), *WINDOW, "--by", "organization",
                                 "-f", "csv"])  # fmt: skip
    rows = [r for r in csv.DictReader(io.StringIO(result.output)) if r["key"] == org]
    assert {r["account_mrr"] for r in rows} == {"1000.0"}
    assert {r["at_risk"] for r in rows} == {"yes" if groups[0]["account"]["at_risk"] else "no"}


def test_a_digest_where_filters_its_kpis_and_names_its_table_when_wrong(tmp_path: Path) -> None:
    from tests.test_cli import write

    daily = '\n[digests.daily]\nschedule = "0 9 * * *"\nperiod = "last-7d"\n'
    daily += 'kpis = ["tickets_created"]\n'
    args = ["digest", "--dry-run", "--date", "2026-11-01T09:00"]
    base = synced(tmp_path)
    text = base.read_text(encoding="utf-8") + daily
    plain = runner.invoke(app, [*args, "-c", str(write(tmp_path / "a.toml", text))])
    email = runner.invoke(app, [*args, "-c", str(write(
        tmp_path / "b.toml", text + 'where = { channel = "email" }\n'))])  # fmt: skip
    bad = runner.invoke(app, [*args, "-c", str(write(
        tmp_path / "c.toml", text + 'where = { agent = "Nobody" }\n'))])  # fmt: skip
    assert plain.exit_code == email.exit_code == 0, plain.output + email.output
    line = [x for x in email.output.splitlines() if x.startswith("Tickets created")]
    sql = ("SELECT COUNT(*) FROM ticket WHERE NOT deleted AND channel = 'email' "
           "AND created_at >= ? AND created_at < ?")  # fmt: skip
    week = db(base).execute(sql, (HI - 7 * 86400, HI)).fetchone()[0]
    assert line[0].split()[2] == str(week)
    assert line != [x for x in plain.output.splitlines() if x.startswith("Tickets created")]
    assert bad.exit_code == 2
    assert bad.output.strip() == (
        "error: c.toml: [digests.daily] where agent=Nobody: no agent with that id or name"
    )
