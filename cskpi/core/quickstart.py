"""`cskpi demo`: a scratch folder with a config for the built-in demo helpdesk, and a summary
of what a sync stored, so a newcomer sees the whole pipeline before connecting anything."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, text

from cskpi.core.files import write_private
from cskpi.core.kpis.backlog import backlog_counts, present
from cskpi.core.store.schema import from_epoch

DEMO_CONNECTOR = "demo"

_CONFIG = """\
# Written by `cskpi demo`: a synthetic helpdesk to try cskpi on. Edit and rerun freely;
# `cskpi demo` rewrites this folder each time.
timezone = "UTC"
database = "sqlite:///cskpi.db"

[connectors.{name}]
type = "demo"
tickets = {tickets}
days = {days}
seed = {seed}
end = {end}   # fixed, so the same data comes back on every run

[business_hours]
mon = "08:00-18:00"
tue = "08:00-18:00"
wed = "08:00-18:00"
thu = "08:00-18:00"
fri = "08:00-18:00"

[sla]
first_response = {{ urgent = "1h", high = "4h", normal = "8h", low = "24h" }}
resolution = {{ urgent = "8h", high = "24h", normal = "72h", low = "168h" }}
business_hours = true

[costs]
monthly_support_cost = 42000
monthly_revenue = 900000

[digests.daily]
schedule = "0 9 * * mon-fri"
period = "yesterday"
by = "agent"
# slack = {{ webhook_url = "env:SLACK_WEBHOOK_URL" }}
# email = {{ to = ["lead@example.com"], smtp_url = "smtp://mail.example.com:587",
#           from = "kpi@example.com", password = "env:SMTP_PASSWORD" }}
"""


def example_config_text() -> str:
    """config.example.toml: shipped inside the wheel, read from the checkout in development."""
    shipped = resources.files("cskpi").joinpath("config.example.toml")
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return (Path(__file__).parents[2] / "config.example.toml").read_text(encoding="utf-8")


def home() -> Path:
    return Path(os.environ.get("CSKPI_HOME") or Path.home() / ".cskpi")


MARKER = ".cskpi-demo"  # in a folder `cskpi demo` made, which it may rewrite


class DemoFolderError(ValueError):
    """A folder the demo will not write into: it may hold someone's project."""


def prepare(
    folder: Path, tickets: int, days: int, seed: int, end: datetime | None = None
) -> tuple[Path, datetime]:
    """Write a fresh demo config (and drop an old demo database) in ``folder``; returns the
    config's path and the instant the demo data ends at (its "now")."""
    _claim(folder)
    for old in folder.glob("cskpi.db*"):
        old.unlink()
    end = end or datetime.combine(datetime.now(UTC).date(), time(), UTC)
    config = folder / "cskpi.toml"
    write_private(
        config,
        _CONFIG.format(
            name=DEMO_CONNECTOR,
            tickets=tickets,
            days=days,
            seed=seed,
            end=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
    )
    return config, end


def _claim(folder: Path) -> None:
    """Take ``folder`` for the demo, marked as its own: a new or empty folder, one the demo
    made before (its marker), or cskpi's own $CSKPI_HOME/demo. Anything else may be a
    project whose config and database the demo would replace: a DemoFolderError."""
    if folder.exists() and not folder.is_dir():
        raise DemoFolderError(f"--dir {folder}: is a file, not a folder")
    ours = folder.resolve() == (home() / "demo").resolve() or (folder / MARKER).is_file()
    if folder.is_dir() and not ours and any(folder.iterdir()):
        raise DemoFolderError(
            f"--dir {folder}: not a folder `cskpi demo` made, and not empty; the demo "
            "replaces the config and database in its folder: give a new or empty one"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("Made by `cskpi demo`, which rewrites this folder.\n")


def digest_instant(end: datetime, now: datetime | None = None) -> datetime:
    """When the demo's digest preview is evaluated: 09:00 (or now, if earlier: `--date`
    refuses the future) on the latest day up to ``end`` whose "yesterday" is a weekday (the
    demo's agents work Monday to Friday). After midnight, so yesterday's backlog is judged
    as of its end, not from the state at ``end``."""
    at = min(end + timedelta(hours=9), now or datetime.now(UTC))
    while (at - timedelta(days=1)).weekday() >= 5:
        at -= timedelta(days=1)
    return at


@dataclass(frozen=True)
class Summary:
    tickets: int
    by_status: dict[str, int]
    backlog: int  # at the summary's instant, by the backlog KPI's rule (kpis/backlog.py)
    by_channel: dict[str, int]
    first_created: datetime | None
    last_created: datetime | None
    messages: int
    ratings: dict[str, int]
    agents: int
    customers: int
    groups: int
    organizations: int


def _pairs(engine: Engine, sql: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {str(k): int(v) for k, v in conn.execute(text(sql))}


def summarize(engine: Engine, at: datetime | None = None) -> Summary:
    """What the store holds, in the few numbers a newcomer looks at first; the backlog at
    ``at`` (default now), the same number `cskpi kpis` and a digest give for that instant."""
    by_status = _pairs(
        engine, "SELECT status, COUNT(*) FROM ticket GROUP BY status ORDER BY 2 DESC"
    )
    by_channel = _pairs(
        engine, "SELECT channel, COUNT(*) FROM ticket GROUP BY channel ORDER BY 2 DESC"
    )
    people = _pairs(engine, "SELECT role, COUNT(*) FROM person GROUP BY role")
    with engine.connect() as conn:
        first, last = conn.execute(
            text("SELECT MIN(created_at), MAX(created_at) FROM ticket")
        ).one()
        messages = conn.execute(text("SELECT COUNT(*) FROM message")).scalar_one()
        groups = conn.execute(text("SELECT COUNT(*) FROM grp")).scalar_one()
        orgs = conn.execute(text("SELECT COUNT(*) FROM organization")).scalar_one()
    return Summary(
        tickets=sum(by_status.values()),
        by_status=by_status,
        backlog=backlog_counts(engine, [at or present()])[0],
        by_channel=by_channel,
        first_created=from_epoch(first),
        last_created=from_epoch(last),
        messages=messages,
        ratings=_pairs(engine, "SELECT kind, COUNT(*) FROM rating GROUP BY kind ORDER BY kind"),
        agents=people.get("agent", 0),
        customers=people.get("customer", 0),
        groups=groups,
        organizations=orgs,
    )
