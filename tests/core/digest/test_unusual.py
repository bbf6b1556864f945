"""The digest's "unusual" marks (robust z against the same weekday of the last 8 weeks) and,
with [staffing], its five most understaffed hours; on a store worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cskpi.connectors.base import Record, Ticket
from cskpi.connectors.registry import installed
from cskpi.core.config.file import Config, load_config
from cskpi.core.digest.render import slack_message, text
from cskpi.core.digest.runs import preview
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.sync_state import finish_stream
from cskpi.core.store.upserts import upsert_records

SPIKE = datetime(2026, 11, 22, tzinfo=UTC)  # a Sunday
AT = SPIKE + timedelta(days=1, hours=9)  # Monday 09:00: the daily digest covers the Sunday
CONFIG = """\
timezone = "UTC"
database = "sqlite:///kpi.db"
[connectors.hd]
type = "demo"
[digests.daily]
schedule = "0 9 * * *"
kpis = ["tickets_created", "backlog"]
compare = "none"
"""
STAFFING = """
[staffing]
aht = "6m"
shrinkage = 0
max_occupancy = 1
"""


def helpdesk(tmp_path: Path, config: str) -> Config:
    """10 email tickets at 10:xx every day for 9 weeks, 30 on the Sunday; all open."""
    records: list[Record] = []
    for day in range(63):
        start = SPIKE - timedelta(days=62 - day)
        for i in range(30 if start == SPIKE else 10):
            at = start + timedelta(hours=10, minutes=i)
            records.append(Ticket(f"{day}-{i}", at, at, "solved", channel="email",
                                  solved_at=at + timedelta(minutes=30)))  # fmt: skip
    path = tmp_path / "cskpi.toml"
    path.write_text(config, encoding="utf-8")
    cfg = load_config(path, installed())
    engine = open_engine(cfg.database)
    with write_transaction(engine) as conn:
        upsert_records(conn, "hd", records)
        finish_stream(conn, "hd", "tickets", None)
    engine.dispose()
    return cfg


def test_a_spike_is_marked_unusual_and_a_quiet_line_is_not(tmp_path: Path) -> None:
    rendered = preview(helpdesk(tmp_path, CONFIG), "daily", AT)
    # 30 against eight Sundays of 10: m = 10, MAD = 0, s = max(0, 1, 1) = 1, z = 20
    assert [(line.key, line.unusual) for line in rendered.digest.lines] == [
        ("tickets_created", True), ("backlog", False),
    ]  # fmt: skip
    assert "Tickets created          30  (unusual)\n" in text(rendered.digest)
    assert ":warning: _unusual_" in str(slack_message(rendered.digest, sparkline=False))
    assert "unusual</span>" in rendered.html(None)
    assert rendered.digest.understaffed == []  # no [staffing] table


def test_the_day_before_is_not_unusual(tmp_path: Path) -> None:
    rendered = preview(helpdesk(tmp_path, CONFIG), "daily", AT - timedelta(days=1))
    assert not any(line.unusual for line in rendered.digest.lines)


def test_the_five_most_understaffed_hours(tmp_path: Path) -> None:
    rendered = preview(helpdesk(tmp_path, CONFIG + STAFFING), "daily", AT)
    # Four weeks to Monday 23 Nov: 10 emails an hour x 6 min = 1 agent at 10:00; the Sundays
    # (10, 10, 10, 30) average 15: 1.5 Erlangs of work, 2 agents. Nobody replied: all gaps.
    assert rendered.digest.understaffed == [
        "Sun 10:00 (2 needed, 0.0 at work)", "Mon 10:00 (1 needed, 0.0 at work)",
        "Tue 10:00 (1 needed, 0.0 at work)", "Wed 10:00 (1 needed, 0.0 at work)",
        "Thu 10:00 (1 needed, 0.0 at work)",
    ]  # fmt: skip
    assert "Most understaffed hours (last 4 weeks): Sun 10:00" in text(rendered.digest)
    assert 'id="understaffed"' in rendered.html(None)
