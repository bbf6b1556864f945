"""How an alarm's figures read: the bucket, the value and usual value, the change and a
key's name. Shared by the alert messages (``core/alerts/message.py``) and the report's
"Alerts fired in the window" section, which sits below the alerts in the layers."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from cskpi.core.kpis.output import clipped, duration_text

DURATIONS = {"first_response_time", "first_response_time_business", "resolution_time",
             "resolution_time_business", "response_time"}  # fmt: skip
COUNTS = ("tickets_created", "tickets_solved", "backlog")
_NAMED = {"agent": "person", "group": "grp", "organization": "organization"}


def span_label(start: datetime, end: datetime) -> str:
    """A day ("Wed 18 Nov 2026") or an hour ("Wed 18 Nov 2026 10:00-11:00"), local."""
    day = start.strftime("%a %d %b %Y").replace(" 0", " ")
    if end - start <= timedelta(hours=2):
        return f"{day} {start:%H:%M}-{end:%H:%M}"
    return day


def figure(kpi: str, value: float) -> str:
    if kpi in DURATIONS:
        return duration_text(value)
    if kpi in COUNTS:
        return f"{value:,.0f}" if value == round(value) else f"{value:,.1f}"
    return f"{value:.1f}%"


def change(kpi: str, value: float, usual: float) -> str:
    delta = value - usual
    if kpi not in DURATIONS and kpi not in COUNTS:
        return f"{delta:+.1f} pts"
    head = (("+" if delta >= 0 else "-") + duration_text(abs(delta))) if kpi in DURATIONS \
        else f"{delta:+,.0f}"  # fmt: skip
    return f"{head}, {100 * delta / usual:+.0f}%" if usual else head


def label_of(engine: Engine, dimension: str | None, key: str) -> str:
    """An agent's, group's or organization's name for its id; the key itself otherwise."""
    table = _NAMED.get(dimension or "")
    if table is None:
        return key
    sql = f"SELECT name FROM {table} WHERE id = :k AND name IS NOT NULL"  # noqa: S608
    with engine.connect() as conn:
        name = conn.execute(text(sql), {"k": key}).scalar()
    return clipped(str(name)) if name else key
