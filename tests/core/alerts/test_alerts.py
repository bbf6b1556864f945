"""Alarm bells on the 90-day demo: a x3 spike in one tag on one day fires exactly one alert,
replaying the day fires none, the plain demo gives at most one, a restart never posts
twice; and the buckets and baselines by hand."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from cskpi.connectors.base import Ticket
from cskpi.connectors.registry import installed
from cskpi.core.alerts.evaluate import Bucket, baseline_buckets, evaluate, last_bucket
from cskpi.core.alerts.runs import run_alert
from cskpi.core.app import sync
from cskpi.core.config.file import Config, load_config
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.upserts import upsert_records
from cskpi.scheduler.service import Daemon
from tests.digest_servers import SlackServer, slack_server

TZ = ZoneInfo("Europe/Berlin")
CONFIG = """\
timezone = "Europe/Berlin"
database = "sqlite:///kpi.db"
[connectors.demo]
type = "demo"
tickets = 5000
days = 90
seed = 1
end = 2026-11-23
"""
ALERT = """
[alerts.tags]
kpi = "tickets_created"
by = "tag"
interval = "day"
"""
SPIKE_DAY = datetime(2026, 11, 18, tzinfo=TZ)  # a Wednesday, with 8 weeks of history before
TAG = "billing"


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain demo store, synced once for the module; each test copies it."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "cskpi.toml").write_text(CONFIG, encoding="utf-8")
    report = sync(load_config(folder / "cskpi.toml", installed()), installed())
    assert report.ok
    return folder / "kpi.db"


def configured(tmp_path: Path, synced: Path, extra: str) -> Config:
    shutil.copy(synced, tmp_path / "kpi.db")
    (tmp_path / "cskpi.toml").write_text(CONFIG + ALERT + extra, encoding="utf-8")
    return load_config(tmp_path / "cskpi.toml", installed())


def tag_count(config: Config, day: datetime) -> int:
    engine = open_engine(config.database)
    sql = ("SELECT COUNT(*) FROM ticket, json_each(ticket.tags) WHERE json_each.value = :tag "
           "AND created_at >= :s AND created_at < :e AND deleted = FALSE")  # fmt: skip
    s, e = int(day.timestamp()), int((day + timedelta(days=1)).timestamp())
    with engine.connect() as conn:
        n = int(conn.execute(text(sql), {"tag": TAG, "s": s, "e": e}).scalar_one())
    engine.dispose()
    return n


def inject_spike(config: Config) -> int:
    """Two more tickets tagged ``TAG`` for each one of that day: x3. Returns the new count."""
    n = tag_count(config, SPIKE_DAY)
    start = SPIKE_DAY.astimezone(UTC) + timedelta(hours=8)
    extra = [Ticket(f"spike-{i}", start + timedelta(minutes=3 * i), start, "open",
                    subject=f"Spike {i}", tags=[TAG]) for i in range(2 * n)]  # fmt: skip
    engine = open_engine(config.database)
    with write_transaction(engine) as conn:
        upsert_records(conn, "demo", extra)
    engine.dispose()
    return 3 * n


def hook(slack: SlackServer) -> str:
    return f'slack = {{ webhook_url = "{slack.base}/hooks/T/B/alerts" }}\n'


NEXT_MORNING = SPIKE_DAY + timedelta(days=1, minutes=5)


def test_a_spike_in_one_tag_fires_once_and_a_replay_fires_none(
    tmp_path: Path, synced: Path
) -> None:
    with slack_server() as slack:
        config = configured(tmp_path, synced, hook(slack))
        spiked = inject_spike(config)
        first = run_alert(config, "tags", NEXT_MORNING)
        assert [(a.finding.key, a.finding.value) for a in first.alarms] == [(TAG, spiked)]
        assert [(d.key, d.status) for d in first.deliveries] == [(TAG, "sent")]
        again = run_alert(config, "tags", NEXT_MORNING + timedelta(hours=3))  # the same day
        assert [(d.key, d.status) for d in again.deliveries] == [(TAG, "skipped")]
        (call,) = slack.calls
    message = call.json()
    assert "Tickets created (tag billing) unusual Wed 18 Nov 2026" in message["text"]
    assert f"{spiked}, usually " in message["text"]
    shown = message["blocks"][1]["text"]["text"]
    assert [line.split("`")[1] for line in shown.splitlines()[1:]] == newest(config)


def newest(config: Config) -> list[str]:
    """The day's five newest tickets tagged ``TAG``, by SQLite's own JSON functions."""
    engine = open_engine(config.database)
    sql = (
        "SELECT ticket.id FROM ticket, json_each(ticket.tags) WHERE json_each.value = :tag "
        "AND created_at >= :s AND created_at < :e ORDER BY created_at DESC, ticket.id DESC LIMIT 5"
    )
    s, e = int(SPIKE_DAY.timestamp()), int((SPIKE_DAY + timedelta(days=1)).timestamp())
    with engine.connect() as conn:
        ids = list(conn.execute(text(sql), {"tag": TAG, "s": s, "e": e}).scalars())
    engine.dispose()
    return ids


def test_the_plain_demo_gives_at_most_one_alert(tmp_path: Path, synced: Path) -> None:
    config = configured(tmp_path, synced, "")
    engine = open_engine(config.database)
    fired = []
    day = datetime(2026, 10, 1, tzinfo=TZ)  # 8 weeks after the demo's first day
    while day < datetime(2026, 11, 23, tzinfo=TZ):
        day += timedelta(days=1)
        fired += [f for f in evaluate(engine, config, "tags", day + timedelta(minutes=5))
                  if f.fired]  # fmt: skip
    whole = config.model_copy(update={"alerts": {"tags": config.alerts["tags"].model_copy(
        update={"by": None})}})  # fmt: skip
    fired += [f for d in range(40) for f in evaluate(
        engine, whole, "tags", datetime(2026, 11, 22, 0, 5, tzinfo=TZ) - timedelta(days=d))
        if f.fired]  # fmt: skip
    engine.dispose()
    assert len(fired) <= 1


def test_a_daemon_restart_never_posts_an_alert_twice(tmp_path: Path, synced: Path) -> None:
    with slack_server() as slack:
        config = configured(tmp_path, synced, hook(slack))
        inject_spike(config)
        first = Daemon(config, installed(), clock=lambda: NEXT_MORNING.astimezone(UTC))
        first.catch_up()  # on start: the bucket that ended last
        assert first.run_job("alert:tags") is True  # as if its cron fired at midnight
        first.engine.dispose()
        later = NEXT_MORNING.astimezone(UTC) + timedelta(hours=2)
        second = Daemon(config, installed(), clock=lambda: later)  # restarted
        second.catch_up()
        second.run_job("alert:tags")
        second.engine.dispose()
        assert len(slack.calls) == 1
    engine = open_engine(config.database)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT alert, key, target, status FROM alert_run")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("tags", TAG, "slack", "sent")]


def test_an_unsynced_store_is_not_judged(tmp_path: Path, synced: Path) -> None:
    config = configured(tmp_path, synced, "")
    engine = open_engine(config.database)
    with write_transaction(engine) as conn:
        conn.execute(text("UPDATE sync_state SET last_success_at = :t"),
                     {"t": int(SPIKE_DAY.timestamp())})  # fmt: skip
    engine.dispose()
    result = run_alert(config, "tags", NEXT_MORNING)
    assert result.findings == []
    assert result.unsynced is not None
    assert result.unsynced.startswith("not synced since the window ended (2026-11-18 23:00Z)")


def test_buckets_by_hand() -> None:
    now = datetime(2026, 3, 30, 10, 20, tzinfo=TZ)  # the Monday after the spring change
    hour = last_bucket("hour", TZ, now)
    assert (hour.start, hour.end) == (now.replace(hour=9, minute=0), now.replace(minute=0))
    day = last_bucket("day", TZ, now)
    assert day.start == datetime(2026, 3, 29, tzinfo=TZ)
    assert day.end.astimezone(UTC) - day.start.astimezone(UTC) == timedelta(hours=23)
    base = baseline_buckets(hour, 2, "hour")
    # 09:00 local: 07:00 UTC in summer time (the bucket), 08:00 UTC the two weeks before
    assert hour.start.astimezone(UTC).hour == 7
    assert [b.start.astimezone(UTC).hour for b in base] == [8, 8]
    assert baseline_buckets(day, 1, "day") == [
        Bucket(datetime(2026, 3, 22, tzinfo=TZ), datetime(2026, 3, 23, tzinfo=TZ))
    ]
