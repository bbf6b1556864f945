"""Duration and rate alerts through the KPI engine: a slow day fires with n >= 20 and not
below; a CSAT drop fires, a CSAT rise does not; the backlog per key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cskpi.connectors.base import Person, Rating, Record, Ticket
from cskpi.connectors.registry import installed
from cskpi.core.alerts.evaluate import evaluate
from cskpi.core.alerts.message import label_of
from cskpi.core.alerts.runs import run_alert
from cskpi.core.config.file import AlertSettings, Config, SlackTarget, load_config
from cskpi.core.digest.runs import check_targets
from cskpi.core.kpis.filters import FilterError
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.sync_state import finish_stream
from cskpi.core.store.upserts import upsert_records
from tests.digest_servers import slack_server

DAY = datetime(2026, 11, 18, tzinfo=UTC)  # a Wednesday
NOW = DAY + timedelta(days=1, minutes=5)
CONFIG = """\
timezone = "UTC"
database = "sqlite:///kpi.db"
[connectors.hd]
type = "demo"
[alerts.frt]
kpi = "first_response_time"
[alerts.csat]
kpi = "csat"
[alerts.backlog]
kpi = "backlog"
by = "channel"
min_count = 5
"""


def helpdesk(
    tmp_path: Path, tickets: int, reply: timedelta, good: int, url: str = "sqlite:///kpi.db"
) -> Config:
    """Eight earlier Wednesdays: 25 tickets answered in 1 h, 25 ratings with 20 good. The
    Wednesday ``DAY``: ``tickets`` answered after ``reply``, 25 ratings with ``good`` good."""
    records: list[Record] = []
    for week in range(9):
        day = DAY - timedelta(weeks=8 - week)
        spike = week == 8
        for i in range(tickets if spike else 25):
            at = day + timedelta(hours=9, minutes=i)
            wait = reply if spike else timedelta(hours=1)
            records.append(Ticket(f"{week}-{i}", at, at, "solved", channel="email",
                                  first_reply_at=at + wait, solved_at=at + 2 * wait))  # fmt: skip
        for i in range(25):
            score = 5 if i < (good if spike else 20) else 1
            records.append(Rating(f"r{week}-{i}", "csat", score, 1, 5,
                                  day + timedelta(hours=12, minutes=i)))  # fmt: skip
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG.replace("sqlite:///kpi.db", url), encoding="utf-8")
    cfg = load_config(path, installed())
    engine = open_engine(cfg.database)
    with write_transaction(engine) as conn:
        upsert_records(conn, "hd", records)
        finish_stream(conn, "hd", "tickets", None)
    engine.dispose()
    return cfg


def judged(config: Config, name: str) -> list[tuple[str, float, float, int | None, bool]]:
    engine = open_engine(config.database)
    found = evaluate(engine, config, name, NOW)
    engine.dispose()
    return [(f.key, f.value, f.usual, f.n, f.fired) for f in found]


@pytest.mark.parametrize(("tickets", "fired"), [(20, True), (19, False)])
def test_a_slow_day_fires_with_enough_tickets(
    tmp_path: Path, tickets: int, fired: bool, store_url: str
) -> None:
    config = helpdesk(tmp_path, tickets, timedelta(hours=3), good=20, url=store_url)
    # m = 3600, MAD = 0: s = max(0, 360, 1) = 360; z = (10800 - 3600)/360 = 20
    assert judged(config, "frt") == [("", 10800.0, 3600.0, tickets, fired)]


def test_a_csat_drop_fires_and_a_rise_does_not(tmp_path: Path) -> None:
    # usual 80 % (20 of 25); 40 % is z = (40 - 80)/8 = -5: a drop
    assert judged(helpdesk(tmp_path / "a", 25, timedelta(hours=1), good=10), "csat") == [
        ("", 40.0, 80.0, 25, True)
    ]
    assert judged(helpdesk(tmp_path / "b", 25, timedelta(hours=1), good=25), "csat") == [
        ("", 100.0, 80.0, 25, False)
    ]


def test_backlog_by_channel(tmp_path: Path, store_url: str) -> None:
    config = helpdesk(tmp_path, 25, timedelta(hours=1), good=20, url=store_url)
    # every ticket solved within hours: the backlog at each midnight is 0, no key to judge
    assert judged(config, "backlog") == []
    engine = open_engine(config.database)
    with write_transaction(engine) as conn:  # three chats open since ten weeks before
        upsert_records(conn, "hd", [
            Ticket(f"c{i}", DAY - timedelta(weeks=10), DAY, "open", channel="chat")
            for i in range(3)
        ])  # fmt: skip
    engine.dispose()
    assert judged(config, "backlog") == [("chat", 3.0, 3.0, None, False)]


def test_counts_by_tag(tmp_path: Path, store_url: str) -> None:
    """Tags counted from the stored JSON lists, on SQLite and PostgreSQL alike."""
    config = helpdesk(tmp_path, 25, timedelta(hours=1), good=20, url=store_url)
    engine = open_engine(config.database)
    with write_transaction(engine) as conn:
        upsert_records(conn, "hd", [
            Ticket(f"x{i}", DAY + timedelta(hours=15), DAY, "open", tags=["vip", "bug"])
            for i in range(40)
        ])  # fmt: skip
    engine.dispose()
    tagged = config.model_copy(update={"alerts": {"t": AlertSettings(
        kpi="tickets_created", by="tag")}})  # fmt: skip
    # 40 tickets under each of vip and bug against 0 in every earlier week (s = 1, z = 40,
    # P(X >= 40 | 0) = 0); the day's 25 untagged ones against 25: z = 0
    assert judged(tagged, "t") == [
        ("(none)", 25.0, 25.0, None, False), ("bug", 40.0, 0.0, None, True),
        ("vip", 40.0, 0.0, None, True),
    ]  # fmt: skip


def test_posted_once_on_either_database(tmp_path: Path, store_url: str) -> None:
    with slack_server() as slack:
        config = helpdesk(tmp_path, 25, timedelta(hours=3), good=20, url=store_url)
        hook = SlackTarget(webhook_url=f"{slack.base}/hooks/T/B/m")  # type: ignore[arg-type]
        settings = config.alerts["frt"].model_copy(update={"slack": hook})
        config = config.model_copy(update={"alerts": {"frt": settings}})
        first = run_alert(config, "frt", NOW)
        again = run_alert(config, "frt", NOW + timedelta(hours=1))
        assert [d.status for d in (*first.deliveries, *again.deliveries)] == ["sent", "skipped"]
        (call,) = slack.calls
    assert call.json()["text"] == (
        "frt: First response (median) unusual Wed 18 Nov 2026: 3h 00m, usually 1h 00m "
        "(+2h 00m, +200%; robust z +20.0)"
    )


def test_check_probes_alert_targets(tmp_path: Path) -> None:
    with slack_server() as slack:
        hook = "/hooks/T/B/check"
        slack.script[hook] = [(400, {}, "no_text")]  # a live hook refuses an empty payload
        config = helpdesk(tmp_path, 1, timedelta(hours=1), good=20)
        target = SlackTarget(webhook_url=f"{slack.base}{hook}")  # type: ignore[arg-type]
        settings = config.alerts["frt"].model_copy(update={"slack": target})
        config = config.model_copy(update={"alerts": {"frt": settings}})
        assert [(w, ok) for w, ok, _ in check_targets(config)] == [("alert frt: slack", True)]
        assert slack.calls[0].json() == {}  # nothing posted


def test_agents_and_groups_are_named(tmp_path: Path) -> None:
    config = helpdesk(tmp_path, 1, timedelta(hours=1), good=20)
    engine = open_engine(config.database)
    with write_transaction(engine) as conn:
        upsert_records(conn, "hd", [Person("a1", "agent", "Ana")])
    assert label_of(engine, "agent", "hd:a1") == "Ana"
    assert label_of(engine, "agent", "hd:a2") == "hd:a2"  # unknown: the id
    assert label_of(engine, "tag", "vip") == "vip"
    engine.dispose()


def test_where_keeps_only_its_tickets(tmp_path: Path, store_url: str) -> None:
    config = helpdesk(tmp_path, 25, timedelta(hours=1), good=20, url=store_url)
    engine = open_engine(config.database)
    with write_transaction(engine) as conn:  # 30 chats on the day, none before
        upsert_records(conn, "hd", [
            Ticket(f"c{i}", DAY + timedelta(hours=10, minutes=i), DAY, "open", channel="chat")
            for i in range(30)
        ])  # fmt: skip
    engine.dispose()
    chats = AlertSettings.model_validate({"kpi": "tickets_created", "where": {"channel": "chat"}})
    emails = AlertSettings.model_validate({"kpi": "first_response_time",
                                           "where": {"channel": ["email"]}})  # fmt: skip
    config = config.model_copy(update={"alerts": {"chats": chats, "emails": emails}})
    # 30 chats against none in each earlier week: fires; the 25 emails alone are as usual
    assert judged(config, "chats") == [("", 30.0, 0.0, None, True)]
    assert judged(config, "emails") == [("", 3600.0, 3600.0, 25, False)]
    result = run_alert(config, "chats", NOW, dry_run=True)
    assert [t.ticket_id for t in result.alarms[0].tickets] == [
        f"hd:c{i}" for i in (29, 28, 27, 26, 25)
    ]


def test_an_unknown_where_value_names_the_alert(tmp_path: Path) -> None:
    config = helpdesk(tmp_path, 1, timedelta(hours=1), good=20)
    nobody = AlertSettings.model_validate({"kpi": "backlog", "where": {"agent": "Nobody"}})
    config = config.model_copy(update={"alerts": {"mine": nobody}})
    with pytest.raises(FilterError, match=r"cskpi.toml: \[alerts.mine\] where agent=Nobody"):
        judged(config, "mine")
