"""`cskpi report` (SPEC §9): the figures are `cskpi kpis --format json`'s, the previous window
and the daily series come from the same engine, the file is self-contained (no script, no
remote resource but ticket links), and long lists are capped. The small helpdesk's numbers
are worked out by hand; the demo store's are compared with `kpis --format json`."""

from __future__ import annotations

import itertools
import json
import logging
import stat
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cskpi.cli import app as cli
from cskpi.connectors.base import Rating, Record, Ticket
from cskpi.connectors.registry import installed
from cskpi.core import app, quickstart
from cskpi.core.config.file import KPI_KEYS, ConfigError, load_config
from cskpi.core.config.periods import Window
from cskpi.core.digest.report.page import file_name, previous_window
from cskpi.core.kpis.definitions import DEFINITIONS
from cskpi.core.store.engine import open_engine
from tests.core.digest.test_digest import AT, CONFIG, HELPDESK, at, helpdesk

runner = CliRunner()
NOW = AT.isoformat()  # Fri 20 Nov 09:00 UTC; last-7d = 13-19 Nov
DEMO_END = datetime(2026, 11, 23, tzinfo=UTC)
ZENDESK = '[connectors.hd]\ntype = "zendesk"\nsubdomain = "acme"\naccess_token = "zd-tok-17"\n'


class Parsed(HTMLParser):
    """Every start tag with its attributes, the text, and the heading levels in order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def figures(self, field: str = "value") -> dict[str, Any]:
        """data-kpi → data-value of the window's figures (not a group's)."""
        return {a["data-kpi"]: json.loads(a["data-value"]) for _, a in self.tags
                if a.get("data-field") == field and "data-group" not in a
                and "data-kpi" in a}  # fmt: skip

    def find(self, **wanted: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags
                if all(a.get(f"data-{k}") == v for k, v in wanted.items())]  # fmt: skip

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def write(tmp_path: Path, config: Path, *args: str) -> Parsed:
    out = tmp_path / "r.html"
    result = runner.invoke(cli, ["report", "-c", str(config), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"wrote {out}\n")
    return Parsed(out.read_text(encoding="utf-8"))


def small(tmp_path: Path, config: str = CONFIG, records: list[Record] = HELPDESK) -> Path:
    return helpdesk(tmp_path, records, config).path


# --- a hand-computed helpdesk -----------------------------------------------------------


def test_kpis_and_their_change_against_the_previous_week(tmp_path: Path) -> None:
    page = write(tmp_path, small(tmp_path), "--period", "last-7d", "--now", NOW)
    value, previous = page.figures(), page.figures("previous")
    # 13-19 Nov: t4 (18th), t1-t3 (19th); the week before: t5 (10th)
    assert (value["tickets_created"], previous["tickets_created"]) == (4, 1)
    assert (value["tickets_solved"], previous["tickets_solved"]) == (3, 0)
    # open at 20 Nov 00:00: t3 and t5; at 13 Nov 00:00: t5
    assert (value["backlog"], previous["backlog"]) == (2, 1)
    words = page.words
    assert "Tickets created 4 1 ▲ +3 (+300.0%) Tickets solved 3 0 ▲ +3 (better)" in words
    assert "Backlog 2 1 ▲ +1 (+100.0%) (worse)" in words
    assert "First response (median) 30m p90 1h 42m, mean 53m 20s, n 3 - First" in words


def test_the_daily_series_is_kpis_interval_day(tmp_path: Path) -> None:
    page = write(tmp_path, small(tmp_path), "--period", "last-7d", "--now", NOW)
    days = [f"2026-11-{d}" for d in range(13, 20)]
    series = {f: [int(page.find(day=d, field=f)[0]["data-value"]) for d in days]
              for f in ("created", "solved", "backlog")}  # fmt: skip
    assert series == {
        "created": [0, 0, 0, 0, 0, 1, 3],
        "solved": [0, 0, 0, 0, 0, 1, 2],
        "backlog": [1, 1, 1, 1, 1, 1, 2],  # t5 all week, t3 from the 19th
    }
    assert sum(series["created"]) == page.figures()["tickets_created"]
    assert series["backlog"][-1] == page.figures()["backlog"]


def test_heatmap_cells_and_sla_breaches(tmp_path: Path) -> None:
    page = write(tmp_path, small(tmp_path), "--period", "last-7d", "--now", NOW)
    cells = {(a["data-day"], a["data-hour"]): int(a["data-value"])
             for a in page.find(kpi="submissions_by_hour", field="cell")}  # fmt: skip
    assert len(cells) == 7 * 24
    assert {k: v for k, v in cells.items() if v} == {("3", "8"): 1, ("3", "9"): 1,
                                                     ("3", "10"): 1, ("2", "10"): 1}  # fmt: skip
    # first response: t1 (high, 30m of 4h), t2 (normal, 2h of 8h), t4 (low, 10m of 24h) met;
    # t3 (normal) unanswered 23h at now: a breach
    assert page.figures()["sla_first_response"] == 75.0
    assert page.find(kpi="sla_first_response", field="breaches")[0]["data-value"] == "1"
    words = page.words
    assert "Tickets that missed a target, oldest first Ticket Priority Missed Subject " \
           "hd:t3 normal first response Ticket 3" in words  # fmt: skip
    # waiting at the window's end (20 Nov 00:00), oldest first
    assert "Waiting for a first reply at the window's end: 2; the oldest" in words
    assert "hd:t5 9d 15h - - Ticket 5 hd:t3 14h 00m normal breached Ticket 3 " in words


def test_ticket_links_are_the_only_remote_addresses_and_there_is_no_script(
    tmp_path: Path,
) -> None:
    config = small(tmp_path, CONFIG.replace('[connectors.hd]\ntype = "demo"\n', ZENDESK))
    page = write(tmp_path, config, "--period", "last-7d", "--now", NOW)
    assert "script" not in {tag for tag, _ in page.tags}
    remote = [(tag, a) for tag, a in page.tags
              for k in ("src", "href") if a.get(k, "").lower().startswith("http")]  # fmt: skip
    assert remote, "the zendesk tickets have links"
    assert all(tag == "a" and a.get("class") == "ticket" for tag, a in remote)
    assert {a["href"] for _, a in remote} == {
        "https://acme.zendesk.com/agent/tickets/t3",
        "https://acme.zendesk.com/agent/tickets/t5",
    }
    assert not [tag for tag, a in page.tags if tag in ("link", "iframe", "object", "embed", "img")]
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]


def test_an_unhappy_customer_links_to_the_rated_ticket(tmp_path: Path) -> None:
    rated = [Rating("r4", "csat", 2.0, 1.0, 5.0, at(18, 13), ticket_id="t4", comment="too slow",
                    agent_id="a1"),
             Rating("r1", "csat", 5.0, 1.0, 5.0, at(19, 11), ticket_id="t1")]  # fmt: skip
    config = small(tmp_path, CONFIG.replace('[connectors.hd]\ntype = "demo"\n', ZENDESK),
                   [*HELPDESK, *rated])  # fmt: skip
    page = write(tmp_path, config, "--period", "last-7d", "--now", NOW)
    assert [a["data-rating"] for a in page.find(field="score")] == ["hd:r4"]
    assert "t4 - - csat 2 of 1-5 too slow Ana" in page.words
    assert "https://acme.zendesk.com/agent/tickets/t4" in {a.get("href") for _, a in page.tags}


def test_headings_are_in_order_and_tables_have_headers(tmp_path: Path) -> None:
    page = write(tmp_path, small(tmp_path), "--period", "last-7d", "--now", NOW)
    levels = [int(tag[1]) for tag, _ in page.tags if tag in ("h1", "h2", "h3", "h4")]
    assert levels[0] == 1
    assert levels.count(1) == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels))
    ths = [a for tag, a in page.tags if tag == "th"]
    assert len(ths) > 100
    assert all(a.get("scope") in ("col", "row") for a in ths)
    assert [t for t, _ in page.tags].count("table") == [t for t, _ in page.tags].count("caption")
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids)), "every id once, the charts' SVG ids too"
    assert sum(i.startswith("series-") for i in ids) > 10


def test_sections_without_data_say_why(tmp_path: Path) -> None:
    page = write(tmp_path, small(tmp_path), "--period", "last-7d", "--now", NOW)
    words = page.words
    assert "first_response_distribution is not computed" not in words  # §6's KPIs are in
    assert page.find(kpi="first_response_distribution")
    for reason in (
        "not available: no --by dimension given (e.g. cskpi report --by agent)",
        "No account is at risk",
        "days of history; a forecast needs at least 14",
        "not available: no [alerts.NAME] table in the config",
    ):
        assert reason in words, reason
    ids = [a["id"] for tag, a in page.tags if tag == "section"]
    assert ids == ["kpis", "series", "distributions", "stages", "heatmap", "by", "sla",
                   "unhappy", "accounts", "divergence", "forecast", "staffing", "alerts",
                   "freshness", "definitions"]  # fmt: skip


def test_the_file_is_private_named_by_its_window_and_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["report", "-c", str(config), "--period", "last-7d", "--now", NOW]
    assert runner.invoke(cli, args).output == "wrote report-2026-11-13-2026-11-19.html\n"
    made = tmp_path / "report-2026-11-13-2026-11-19.html"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    made.write_text("mine")
    refused = runner.invoke(cli, args)
    assert (refused.exit_code, refused.output) == (
        2,
        "error: report-2026-11-13-2026-11-19.html already exists; --force replaces it\n",
    )
    assert made.read_text() == "mine"
    assert runner.invoke(cli, [*args, "--force"]).exit_code == 0
    assert made.read_text().startswith("<!DOCTYPE html>")


def test_long_lists_are_capped(tmp_path: Path) -> None:
    waiting: list[Record] = [Ticket(f"w{n}", at(19, 1) + timedelta(minutes=n), at(19, 2), "open",
                      subject=f"Waiting {n}", priority="low", assignee_id=f"a{n}")
               for n in range(60)]  # fmt: skip
    page = write(tmp_path, small(tmp_path, records=waiting), "--period", "last-7d",
                 "--now", NOW, "--by", "agent")  # fmt: skip
    assert "Waiting for a first reply at the window's end: 60; the oldest" in page.words
    assert "Waiting 19 " in page.words
    assert "Waiting 20 " not in page.words
    assert len({a["data-group"] for a in page.find(kpi="tickets_created")
                if "data-group" in a}) == 50  # fmt: skip
    span = "--from 2026-11-13T00:00:00+00:00 --to 2026-11-20T00:00:00+00:00 --now " + NOW
    assert f"10 more — run `cskpi kpis {span} --by agent --format csv` to list them all" in (
        page.words
    )
    assert (
        f"40 more — run `cskpi tickets {span} --kpi awaiting_reply` for the backlog at the "
        "window's end: those with no first_reply_at are the ones waiting"
    ) in page.words
    assert (
        f"The oldest 20 are shown, of 60 first-response breaches in the window; `cskpi "
        f"tickets {span} --kpi sla_first_response` list every ticket judged"
    ) in page.words


def test_a_store_without_mrr_skips_the_pass_over_organizations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At risk needs MRR: with none stored, the per-organization pass is not run."""
    from cskpi.core.digest.report import page

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no organization has MRR: no account can be at risk")

    monkeypatch.setattr(page, "accounts_at_risk", never)
    words = write(tmp_path, small(tmp_path), "--period", "last-7d", "--now", NOW).words
    assert "No account is at risk: none with MRR" in words


def test_previous_window_one_period_back_at_the_same_instant() -> None:
    tz = ZoneInfo("UTC")
    month = Window(datetime(2026, 10, 1, tzinfo=tz), datetime(2026, 11, 1, tzinfo=tz), tz, AT)
    before = previous_window(month, "last-month")
    assert (before.start, before.end, before.now) == (
        datetime(2026, 9, 1, tzinfo=tz),
        datetime(2026, 10, 1, tzinfo=tz),
        AT,
    )
    span = previous_window(month, None)
    assert (span.start, span.end) == (datetime(2026, 8, 31, tzinfo=tz), month.start)
    assert file_name(month, "r/{name}-{from}-{to}.html", "m") == "r/m-2026-10-01-2026-10-31.html"


# --- the demo store: every figure is `kpis --format json`'s -----------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    path, _ = quickstart.prepare(folder / "demo", 600, 30, 1, DEMO_END)
    config = load_config(path, installed())
    assert app.sync(config, installed()).ok
    # the demo's organizations have no MRR and its ratings no comment: give some of each, so
    # the unhappy and accounts sections have an order and text to show
    engine = open_engine(config.database, create=False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE organization SET mrr = (rowid % 5) * 250.0"))
        conn.execute(text("UPDATE rating SET comment = 'slow, ' || id WHERE score <= 3"))
    engine.dispose()
    return path


def test_the_demo_report_has_every_kpi_as_kpis_json_gives_it(demo: Path, tmp_path: Path) -> None:
    args = ["--period", "last-7d", "--now", DEMO_END.isoformat(), "--by", "agent"]
    page = write(tmp_path, demo, *args)
    result = runner.invoke(cli, ["kpis", "-c", str(demo), *args, "--format", "json"])
    doc = json.loads(result.output)
    assert set(doc["kpis"]) == set(KPI_KEYS)
    assert page.figures() == {k: e["value"] for k, e in doc["kpis"].items()}
    entries = {a["data-kpi"]: json.loads(a["data-entry"]) for a in page.find() if "data-entry" in a}
    assert entries == doc["kpis"]
    for group in doc["by"]["groups"]:
        shown = {a["data-kpi"]: json.loads(a["data-value"])
                 for a in page.find(group=json.dumps(group["key"]))}  # fmt: skip
        assert len(shown) == 8
        assert shown == {k: group["kpis"][k]["value"] for k in shown}
    window = ["--from", "2026-11-09", "--to", "2026-11-16", "--now", DEMO_END.isoformat()]
    before = runner.invoke(cli, ["kpis", "-c", str(demo), *window, "--format", "json"])
    assert page.figures("previous") == {
        k: e["value"] for k, e in json.loads(before.output)["kpis"].items()
    }


def test_the_daily_series_is_kpis_interval_day_json(demo: Path, tmp_path: Path) -> None:
    """A 30-day window: each day's created, solved and backlog equal that bucket of
    `kpis --interval day --format json`."""
    args = ["--period", "last-30d", "--now", DEMO_END.isoformat()]
    page = write(tmp_path, demo, *args)
    result = runner.invoke(cli, ["kpis", "-c", str(demo), *args, "--interval", "day",
                                 "--format", "json"])  # fmt: skip
    buckets = json.loads(result.output)["series"]["buckets"]
    assert len(buckets) == 30
    names = {"created": "tickets_created", "solved": "tickets_solved", "backlog": "backlog"}
    shown = {(a["data-day"], a["data-field"]): int(a["data-value"]) for a in page.find()
             if "data-day" in a and a["data-field"] in names}  # fmt: skip
    wanted = {(b["from"][:10], f): b["kpis"][k]["value"] for b in buckets
              for f, k in names.items()}  # fmt: skip
    assert shown == wanted
    assert sum(v for (_, f), v in wanted.items() if f == "created") > 100


@pytest.mark.parametrize(
    ("by", "passes"),
    [
        # the window and its days, the previous window, the organizations (MRR is stored)
        (None, {"compute_series": 1, "compute": 1, "accounts_at_risk": 1}),
        # the --by table's pass gives the accounts too
        ("organization", {"compute_series": 1, "compute": 2, "accounts_at_risk": 0}),
    ],
)
def test_each_computation_runs_once(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by: str | None,
    passes: dict[str, int],
) -> None:  # fmt: skip
    from cskpi.core.digest.report import page, sections

    calls: dict[str, int] = {}

    def counted(module: Any, name: str) -> None:
        real = getattr(module, name)

        def count(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, count)

    for name in passes:
        counted(page, name)
    once = ("forecast_report", "staffing_plan", "breached", "unanswered")
    for name in once:
        counted(sections, name)
    counted(sections.drill, "unhappy")
    args = ["--period", "last-30d", "--now", DEMO_END.isoformat()] + (["--by", by] if by else [])
    write(tmp_path, demo, *args)
    every = {k: v for k, v in passes.items() if v} | dict.fromkeys([*once, "unhappy"], 1)
    assert calls == every


def test_unhappy_customers_are_tickets_unhappy_json(demo: Path, tmp_path: Path) -> None:
    args = ["--period", "last-30d", "--now", DEMO_END.isoformat()]
    page = write(tmp_path, demo, *args)
    result = runner.invoke(cli, ["tickets", "-c", str(demo), *args, "--unhappy",
                                 "--format", "json"])  # fmt: skip
    ratings = json.loads(result.output)["ratings"]
    assert len(ratings) > 20
    shown = [(a["data-rating"], json.loads(a["data-value"])) for a in page.find(field="mrr")
             if "data-rating" in a]  # fmt: skip
    assert shown == [(r["id"], r["mrr"]) for r in ratings[:20]]
    assert f"Bad ratings in the window: {len(ratings):,}; the highest MRR first" in page.words
    span = f"--from 2026-10-24T00:00:00+00:00 --to 2026-11-23T00:00:00+00:00 --now {args[3]}"
    assert (f"{len(ratings) - 20:,} more — run `cskpi tickets {span} --unhappy` to list them "
            "all") in page.words  # fmt: skip
    first = ratings[0]
    assert first["mrr"] == 1000.0
    assert (f"{first['ticket_external_id']} {first['organization']} 1,000.00 csat 3 of 1-5 "
            f"slow, {first['id']} {first['agent']}") in page.words  # fmt: skip


def test_accounts_at_risk_are_kpis_by_organization_json(demo: Path, tmp_path: Path) -> None:
    args = ["--period", "last-30d", "--now", DEMO_END.isoformat()]
    page = write(tmp_path, demo, *args)
    result = runner.invoke(cli, ["kpis", "-c", str(demo), *args, "--by", "organization",
                                 "--format", "json"])  # fmt: skip
    groups = json.loads(result.output)["by"]["groups"]
    risky = [g for g in groups if g["account"] and g["account"]["at_risk"]]
    assert risky
    shown = [(json.loads(a["data-group"]), json.loads(a["data-value"]))
             for a in page.find(kpi="account", field="mrr")]  # fmt: skip
    assert shown == [(g["key"], g["account"]["mrr"]) for g in risky]


def test_where_filters_the_figures_as_kpis_where(demo: Path, tmp_path: Path) -> None:
    args = ["--period", "last-30d", "--now", DEMO_END.isoformat(), "--where", "channel=email"]
    page = write(tmp_path, demo, *args)
    result = runner.invoke(cli, ["kpis", "-c", str(demo), *args, "--interval", "day",
                                 "--format", "json"])  # fmt: skip
    doc = json.loads(result.output)
    everything = runner.invoke(cli, ["kpis", "-c", str(demo), *args[:4], "--format", "json"])
    created = doc["kpis"]["tickets_created"]["value"]
    assert 0 < created < json.loads(everything.output)["kpis"]["tickets_created"]["value"]
    assert page.figures() == {k: e["value"] for k, e in doc["kpis"].items()}
    days = {a["data-day"]: int(a["data-value"]) for a in page.find(field="created")
            if "data-day" in a}  # fmt: skip
    assert days == {b["from"][:10]: b["kpis"]["tickets_created"]["value"]
                    for b in doc["series"]["buckets"]}  # fmt: skip
    words = page.words
    assert "Only channel=email (--where): every figure, chart and table but the lists" in words
    assert "--where channel=email --interval day --format json" in words
    assert "The two lists below are not filtered by --where" in words
    span = ["--from", "2026-09-24", "--to", "2026-10-24", "--now", DEMO_END.isoformat()]
    before = runner.invoke(cli, ["kpis", "-c", str(demo), *span, *args[4:], "--format", "json"])
    assert page.figures("previous") == {
        k: e["value"] for k, e in json.loads(before.output)["kpis"].items()
    }


def test_a_scheduled_report_with_where_has_the_figures_of_kpis_where(
    demo: Path, tmp_path: Path
) -> None:
    """[reports.NAME] where = { channel = "email" }: the figures of `kpis --where
    channel=email` over the window its period gives (last-7d at Monday 23 Nov: 16-22 Nov)."""
    from cskpi.core.digest.report.page import write_scheduled

    table = (
        '\n[reports.mail]\nschedule = "0 6 * * mon"\nperiod = "last-7d"\n'
        f'out = "{tmp_path}/{{name}}-{{from}}.html"\nwhere = {{ channel = "email" }}\n'
    )
    path = demo.with_name("where.toml")  # beside the demo's database
    path.write_text(demo.read_text() + table)
    config = load_config(path, installed())
    engine = open_engine(config.database, create=False)
    try:
        written = write_scheduled(engine, config, "mail", DEMO_END)
    finally:
        engine.dispose()
    assert written == tmp_path / "mail-2026-11-16.html"
    page = Parsed(written.read_text(encoding="utf-8"))

    def kpis(*span: str, where: tuple[str, ...] = ("--where", "channel=email")) -> Any:
        args = ["kpis", "-c", str(demo), *span, "--now", DEMO_END.isoformat(), *where]
        return json.loads(runner.invoke(cli, [*args, "--format", "json"]).output)["kpis"]

    mine = kpis("--from", "2026-11-16", "--to", "2026-11-23")
    assert page.figures() == {k: e["value"] for k, e in mine.items()}
    every = kpis("--from", "2026-11-16", "--to", "2026-11-23", where=())
    assert 0 < mine["tickets_created"]["value"] < every["tickets_created"]["value"]
    before = kpis("--from", "2026-11-09", "--to", "2026-11-16")
    assert page.figures("previous") == {k: e["value"] for k, e in before.items()}
    assert "Only channel=email (--where)" in page.words


def test_every_kpi_has_a_definition() -> None:
    assert set(KPI_KEYS) <= set(DEFINITIONS)


# --- [reports.NAME] ---------------------------------------------------------------------

REPORTS = '\n[reports.weekly]\nschedule = "0 6 * * mon"\n'


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('out = "r/{week}.html"',
         "[reports.weekly] out: unknown placeholder {week}; use {name}, {from}, {to}"),
        ('period = "since-last"', "[reports.weekly] period: must be one of today, yesterday"),
        ('by = "moon"', "[reports.weekly] by: Input should be 'agent'"),
        ('connectors = ["zz"]',
         "[reports.weekly] connectors: no connector named 'zz'; configured: hd"),
        ("shedule = 1", "[reports.weekly] shedule: unknown key"),
        ('where = { moon = "x" }', "[reports.weekly.where] moon: Input should be 'agent'"),
        ('where = { channel = [] }', "[reports.weekly.where] channel: must not be empty"),
    ],
)  # fmt: skip
def test_report_tables_are_checked_with_one_line_errors(
    tmp_path: Path, table: str, error: str
) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG + REPORTS + table + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, installed())
    assert len(raised.value.lines) == 1
    assert raised.value.lines[0].startswith(f"{path}: {error}"), raised.value.lines


def test_attach_report_must_name_a_report(tmp_path: Path) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG.replace('by = "agent"\n', 'by = "agent"\nattach_report = "weekly"\n'))
    with pytest.raises(ConfigError) as raised:
        load_config(path, installed())
    assert raised.value.lines == [f"{path}: [digests.daily] attach_report: no [reports.weekly] "
                                  "table; configured reports: none"]  # fmt: skip


def test_a_digest_email_attaches_its_report(tmp_path: Path) -> None:
    from email.message import EmailMessage

    from cskpi.core.digest.notify import email_message
    from cskpi.core.digest.render import html, subject
    from cskpi.core.digest.runs import preview, write_files

    email = ('email = { to = ["lead@acme.com"], smtp_url = "smtp://127.0.0.1:2525", '
             'from = "kpi@acme.com" }\nattach_report = "weekly"\n')  # fmt: skip
    body = CONFIG.replace('by = "agent"\n', 'by = "agent"\n' + email) + REPORTS
    cfg = helpdesk(tmp_path, HELPDESK, body + 'out = "r/{name}-{from}.html"\n')
    rendered = preview(cfg, "daily", AT)
    assert rendered.report is not None
    name, report = rendered.report
    assert name == "weekly-2026-11-13.html"  # last-7d at Fri 20 Nov 09:00: 13-19 Nov
    target = cfg.digests["daily"].email
    assert target is not None
    page = lambda src: html(rendered.digest, src)  # noqa: E731
    msg = email_message(target, subject(rendered.digest), rendered.text, page, rendered.chart,
                        rendered.report)  # fmt: skip
    assert msg.get_content_type() == "multipart/mixed"
    attached = [p for p in msg.iter_attachments() if isinstance(p, EmailMessage)]
    assert [(p.get_content_type(), p.get_filename()) for p in attached] == [
        ("text/html", "weekly-2026-11-13.html")
    ]
    assert attached[0].get_content() == report
    assert Parsed(report).figures()["tickets_created"] == 4
    assert "weekly-2026-11-13.html" in [p.name for p in write_files(rendered, tmp_path / "o")]


def test_a_report_that_fails_is_left_out_and_the_digest_still_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cskpi.core.digest.report import page
    from cskpi.core.digest.runs import preview

    def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(page, "scheduled", broken)
    monkeypatch.setattr(logging.getLogger("cskpi"), "propagate", True)
    attach = 'by = "agent"\nattach_report = "weekly"\n'
    cfg = helpdesk(tmp_path, HELPDESK, CONFIG.replace('by = "agent"\n', attach) + REPORTS)
    rendered = preview(cfg, "daily", AT)
    assert rendered.report is None
    assert rendered.text.startswith("daily digest · Thu 19 Nov 2026")
    assert "report weekly not attached: OSError: disk full" in caplog.text


def test_the_report_on_postgresql_is_the_sqlite_report(
    demo: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The report's threads (the previous window, the --by table and the accounts beside
    the series, every section's reads meanwhile) on the other dialect, whose reads share
    the engine's connection pool: the same store copied to PostgreSQL gives the same file."""
    from cskpi.core.store.transfer import copy_store
    from tests.postgres import new_store

    source = load_config(demo, installed()).database
    url = new_store(request, "postgresql", tmp_path)
    copy_store(source, url)
    written = demo.read_text(encoding="utf-8")
    line = 'database = "sqlite:///cskpi.db"'  # beside the config, as `cskpi demo` writes it
    assert written.count(line) == 1
    other = demo.with_name("postgresql.toml")
    other.write_text(written.replace(line, f'database = "{url}"'), encoding="utf-8")
    args = ["--period", "last-30d", "--now", DEMO_END.isoformat(), "--by", "organization"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    on_sqlite = write(tmp_path / "a", demo, *args)
    on_postgresql = write(tmp_path / "b", other, *args)
    assert on_postgresql.figures() == on_sqlite.figures()
    assert on_postgresql.words == on_sqlite.words
    assert len(on_sqlite.find(field="mrr")) > 0  # the accounts section has rows


def test_an_out_file_that_cannot_be_written_is_said_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing folder or a file that is there without --force: one line naming the
    file, exit 2, and the report is not computed first (it would be thrown away)."""
    from cskpi.core.digest.report import page

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the report was computed")

    config = small(tmp_path)
    monkeypatch.setattr(page, "build", refuse)
    there = tmp_path / "there.html"
    there.write_text("kept", encoding="utf-8")
    for out, said in [
        (tmp_path / "no" / "r.html", f"error: --out {tmp_path / 'no' / 'r.html'}: the folder "
                                     f"{tmp_path / 'no'} does not exist\n"),
        (there, f"error: {there} already exists; --force replaces it\n"),
    ]:  # fmt: skip
        result = runner.invoke(cli, ["report", "-c", str(config), "--out", str(out), "--now", NOW])
        assert (result.exit_code, result.output) == (2, said)
    assert there.read_text(encoding="utf-8") == "kept"
    assert not (tmp_path / "no").exists()


def test_a_failing_engine_pass_ends_every_section_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sections run in threads and wait for the window's figures: when the pass that
    makes them fails, the report fails with its error (no thread left waiting, no file)."""
    from cskpi.core.digest.report import page

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(page, "compute_series", broken)
    out = tmp_path / "r.html"
    result = runner.invoke(cli, ["report", "-c", str(small(tmp_path)), "--out", str(out),
                                 "--now", NOW])  # fmt: skip
    assert isinstance(result.exception, RuntimeError)
    assert str(result.exception) == "the engine broke"
    assert not out.exists()
