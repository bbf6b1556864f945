"""The report's forecast, staffing and alerts sections (SPEC §8 in §9): every figure is the one
`cskpi forecast --format json` / `cskpi staffing --format json` print for the same `--now`,
read back from the HTML's data attributes; the alerts listed are exactly the ones
`run_alert` sent for a bucket in the window."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cskpi.cli import app as cli
from cskpi.connectors.registry import installed
from cskpi.core import app, quickstart
from cskpi.core.alerts.runs import run_alert
from cskpi.core.config.file import load_config
from cskpi.core.store.engine import open_engine, write_transaction
from tests.core.alerts.test_alerts import (
    NEXT_MORNING,
    SPIKE_DAY,
    TAG,
    configured,
    hook,
    inject_spike,
)
from tests.core.alerts.test_alerts import synced as synced  # the 90-day demo, once per module
from tests.core.digest.test_report import Parsed, runner, write
from tests.digest_servers import slack_server

END = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    path, _ = quickstart.prepare(folder / "demo", 600, 30, 1, END)
    assert app.sync(load_config(path, installed()), installed()).ok
    return path


@pytest.fixture(scope="module")
def week(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Parsed, Path]:
    """The demo's report of the last 7 days at END, written once for the tests that read it."""
    folder = tmp_path_factory.mktemp("week")
    return write(folder, demo, "--period", "last-7d", "--now", END.isoformat()), folder


def command(config: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(cli, [*args, "-c", str(config), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def plan(page: Parsed, kind: str, field: str, **more: str) -> list[dict[str, str]]:
    return page.find(plan=kind, field=field, **more)


def value(page: Parsed, kind: str, field: str, **more: str) -> Any:
    (found,) = plan(page, kind, field, **more)
    return json.loads(found["data-value"])


def section(html: str, sid: str) -> str:
    found = re.search(rf'<section id="{sid}".*?</section>', html, re.DOTALL)
    assert found is not None
    return found[0]


def test_forecast_figures_are_cskpi_forecasts(demo: Path, week: tuple[Parsed, Path]) -> None:
    now = END.isoformat()
    page, folder = week
    doc = command(demo, "forecast", "--days", "14", "--now", now)
    assert len(doc["forecast"]) == 14
    assert doc["mape"] is not None
    assert doc["start"] == "2026-11-23"  # the day of the report's instant
    for day in doc["forecast"]:
        d = day["date"]
        assert value(page, "forecast", "created", date=d) == day["created"]
        assert value(page, "forecast", "band", date=d) == [day["lo"], day["hi"]]
        assert value(page, "forecast", "solved", date=d) == day["solved"]
        assert value(page, "forecast", "backlog", date=d) == day["backlog"]
    assert len(plan(page, "forecast", "created")) == 14
    for key in ("mape", "momentum", "history_days"):
        assert value(page, "forecast", key) == doc[key], key
    assert f"Backtest error (MAPE) {doc['mape']:.1f} %" in page.words
    assert f"cskpi forecast --days 14 --now {now} --format json" in page.words
    html = (folder / "r.html").read_text(encoding="utf-8")
    chart = section(html, "forecast")
    assert chart.count("<svg") == 1
    assert '<title id="forecast-title">Tickets expected per day, with the 80 % band' in chart


def test_staffing_figures_are_cskpi_staffings(demo: Path, week: tuple[Parsed, Path]) -> None:
    now = END.isoformat()
    page, _ = week
    doc = command(demo, "staffing", "--weeks", "4", "--now", now)
    assert doc["weeks"] == 4
    assert len(doc["understaffed"]) == 5
    shown = [json.loads(a["data-value"]) for a in plan(page, "staffing", "understaffed")]
    assert shown == doc["understaffed"]
    for u in doc["understaffed"]:
        at = {"day": str(u["weekday"]), "hour": str(u["hour"])}
        for cls in ("live", "async"):
            for field in ("required", "observed"):
                got = value(page, "staffing", field, cls=cls, **at)
                assert got == doc[cls][field][u["weekday"]][u["hour"]]
    for cls in ("live", "async"):
        grid = [[value(page, "staffing", "gap", cls=cls, day=str(d), hour=str(h))
                 for h in range(24)] for d in range(7)]  # fmt: skip
        assert grid == doc[cls]["gap"]
    assert "handling time 8.0 min (default), target 80% answered in 60 s" in page.words
    assert f"cskpi staffing --weeks 4 --now {now} --format json" in page.words


def test_the_staffing_settings_are_the_configs(demo: Path, tmp_path: Path) -> None:
    config = demo.parent / "staffing.toml"  # beside the demo's database
    staffing = '[staffing]\naht = "4m"\nshrinkage = 0.1\n\n[connectors'
    text_ = demo.read_text(encoding="utf-8").replace("[connectors", staffing, 1)
    config.write_text(text_, encoding="utf-8")
    now = END.isoformat()
    page = write(tmp_path, config, "--period", "last-7d", "--now", now)
    doc = command(config, "staffing", "--weeks", "4", "--now", now)
    assert doc["aht"] == {"seconds": 240.0, "source": "config"}
    assert "handling time 4.0 min (config)" in page.words
    assert "shrinkage 10%" in page.words
    grid = [[value(page, "staffing", "gap", cls="live", day=str(d), hour=str(h))
             for h in range(24)] for d in range(7)]  # fmt: skip
    assert grid == doc["live"]["gap"]


def test_too_little_history_is_said(tmp_path: Path) -> None:
    from tests.core.digest.test_digest import HELPDESK, helpdesk
    from tests.core.digest.test_report import NOW

    config = helpdesk(tmp_path, HELPDESK).path
    page = write(tmp_path, config, "--period", "last-7d", "--now", NOW)
    doc = command(config, "forecast", "--days", "14", "--now", NOW)
    assert doc["forecast"] is None
    assert f"not available: no forecast: {doc['reason']}" in page.words
    assert not plan(page, "forecast", "created")
    assert "not available: no [alerts.NAME] table in the config" in page.words


# --- alerts -----------------------------------------------------------------------------

WEEK = ["--from", "2026-11-16", "--to", "2026-11-23", "--now", NEXT_MORNING.isoformat()]


def fired(page: Parsed) -> list[tuple[str, str, str, Any, Any]]:
    def of(field: str) -> dict[tuple[str, str, str], dict[str, str]]:
        return {(a["data-alert"], a["data-key"], a["data-bucket"]): a
                for a in page.find(field=field) if "data-alert" in a}  # fmt: skip

    values, usual = of("value"), of("usual")
    assert set(values) == set(usual)
    return [(*k, json.loads(values[k]["data-value"]), json.loads(usual[k]["data-value"]))
            for k in values]  # fmt: skip


def test_the_alerts_section_lists_exactly_the_alerts_sent(tmp_path: Path, synced: Path) -> None:
    with slack_server() as slack:
        config = configured(tmp_path, synced, hook(slack))
        spiked = inject_spike(config)
        result = run_alert(config, "tags", NEXT_MORNING)
        (alarm,) = result.alarms
        assert [(d.key, d.status) for d in result.deliveries] == [(TAG, "sent")]
        # a dry run the next day records nothing, so shows nothing
        assert not run_alert(
            config, "tags", NEXT_MORNING + timedelta(days=1), dry_run=True
        ).deliveries
    page = write(tmp_path, config.path, *WEEK)
    assert fired(page) == [("tags", TAG, SPIKE_DAY.isoformat(), spiked, alarm.finding.usual)]
    assert (spiked, alarm.finding.usual) == (33, 12.5)  # the demo's seed 1
    # 33 - 12.5 = 20.5, shown to the ticket (half to even, as the alert's message); / 12.5
    row = f"tags Tickets created {TAG} Wed 18 Nov 2026 33 12.5 +20, +164% slack"
    assert row in page.words
    # the week before holds no bucket of it
    before = ["--from", "2026-11-09", "--to", "2026-11-16", "--now", NEXT_MORNING.isoformat()]
    page = write(tmp_path, config.path, *before, "--force")
    assert "None fired: no alert was sent for an hour or day in the window." in page.words


def test_failed_posts_and_other_windows_are_left_out_and_agents_named(
    tmp_path: Path, synced: Path
) -> None:
    agents = '\n[alerts.agents]\nkpi = "first_response_time"\nby = "agent"\n'
    config = configured(tmp_path, synced, agents)
    engine = open_engine(config.database)
    day = int(SPIKE_DAY.timestamp())
    with write_transaction(engine) as conn:
        person, name = conn.execute(text("SELECT id, name FROM person WHERE name IS NOT NULL "
                                         "ORDER BY id LIMIT 1")).one()  # fmt: skip
        rows = [("agents", person, day, "slack", 7200.0, 3600.0, "sent"),
                ("agents", person, day, "email", 7200.0, 3600.0, "sent"),
                ("tags", TAG, day, "slack", 50.0, 10.0, "failed"),
                ("tags", TAG, day - 7 * 86400, "slack", 50.0, 10.0, "sent"),
                ("gone", "", day + 3600, "slack", 3.0, 1.0, "sent")]  # fmt: skip
        for a, k, f, t, v, u, s in rows:
            conn.execute(
                text("INSERT INTO alert_run (alert, key, bucket_from, target, bucket_to, value, "
                     "usual, sent_at, status) VALUES (:a, :k, :f, :t, :e, :v, :u, :f, :s)"),
                {"a": a, "k": k, "f": f, "t": t, "e": f + 86400, "v": v, "u": u, "s": s},
            )  # fmt: skip
    engine.dispose()
    page = write(tmp_path, config.path, *WEEK)
    hour = datetime.fromtimestamp(day + 3600, UTC).astimezone(SPIKE_DAY.tzinfo).isoformat()
    assert fired(page) == [("agents", person, SPIKE_DAY.isoformat(), 7200.0, 3600.0),
                           ("gone", "", hour, 3.0, 1.0)]  # fmt: skip
    row = f"agents First response (median) {name} Wed 18 Nov 2026 2h 00m 1h 00m +1h 00m, +100%"
    assert f"{row} email, slack" in page.words
    # a bucket of an alert no longer in the config: its numbers as stored, no change
    assert "gone (no longer configured) all tickets Wed 18 Nov 2026 3.00 1.00 slack" in page.words


def test_many_alarms_show_the_latest_fifty_and_say_how_many_more(
    tmp_path: Path, synced: Path
) -> None:
    config = configured(tmp_path, synced, "")
    engine = open_engine(config.database)
    start = int(SPIKE_DAY.timestamp())
    with write_transaction(engine) as conn:
        for f in range(start, start + 53 * 3600, 3600):  # 53 hourly alarms, Wed 00:00 on
            conn.execute(
                text("INSERT INTO alert_run (alert, key, bucket_from, target, bucket_to, value, "
                     "usual, sent_at, status) VALUES ('tags', :k, :f, 'slack', :e, 5.0, 1.0, "
                     ":f, 'sent')"),
                {"k": TAG, "f": f, "e": f + 3600},
            )  # fmt: skip
    engine.dispose()
    page = write(tmp_path, config.path, *WEEK)
    buckets = [b for _, _, b, _, _ in fired(page)]
    third = datetime.fromtimestamp(start + 3 * 3600, UTC).astimezone(SPIKE_DAY.tzinfo)
    assert (len(buckets), buckets[0]) == (50, third.isoformat())
    assert "oldest first: the latest 50 of 53" in page.words
    assert "3 earlier alarms are not shown; the alert_run table holds every one" in page.words
