"""The account view of ``--by organization`` (SPEC §6 Accounts): each organization's mrr and
dates, and whether it is at risk and why.

At risk: mrr > 0, not churned at ``to`` (no churned_at, or one at or after ``to``), and one
reason at least — ``low_csat`` (csat under 70 % over 3 ratings or more in W),
``stale_ticket`` (a backlog ticket 7 days old or more at ``at``: backlog_age's ``>7d``),
``ticket_surge`` (5 tickets or more created in W, and at least twice as many as in the
window of equal length before it). The reasons are read off the group's own KPIs, so they
agree with the figures printed beside them; the previous window's counts take one query
for every organization at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, text

from cskpi.core.config.periods import Window
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.populations import created_by_organization
from cskpi.core.store.schema import from_epoch, to_epoch

Entry = dict[str, Any]
LOW_CSAT = 70.0
LOW_CSAT_N = 3
SURGE_FACTOR = 2
SURGE_MIN = 5


def accounts(
    engine: Engine,
    window: Window,
    groups: Mapping[str | None, dict[str, Entry]],
    *,
    connectors: Sequence[str] = (),
    where: Where = EVERYTHING,
) -> dict[str | None, dict[str, Any] | None]:
    """Per organization key (group key) its account; None for the group of no organization."""
    keys = [k for k in groups if k is not None]
    stored = _organizations(engine, keys)
    span = window.end - window.start
    before = Window(window.start - span, window.start, window.tz, window.now)
    earlier = created_by_organization(engine, before, connectors=connectors, where=where)
    return {
        key: None
        if key is None
        else account(stored.get(key, (None, None, None)), kpis, earlier.get(key, 0), window)
        for key, kpis in groups.items()
    }


def account(
    stored: tuple[float | None, int | None, int | None],
    kpis: dict[str, Entry],
    created_before: int,
    window: Window,
) -> dict[str, Any]:
    mrr, created_at, churned_at = stored
    reasons = _reasons(kpis, created_before)
    churned = churned_at is not None and churned_at < (to_epoch(window.end) or 0)
    return {
        "mrr": mrr,
        "created_at": from_epoch(created_at),
        "churned_at": from_epoch(churned_at),
        "at_risk": bool(mrr and mrr > 0 and not churned and reasons),
        "reasons": reasons,
    }


def _reasons(kpis: dict[str, Entry], created_before: int) -> list[str]:
    csat = kpis["csat"]
    reasons = []
    if csat["value"] is not None and csat["n"] >= LOW_CSAT_N and csat["value"] < LOW_CSAT:
        reasons.append("low_csat")
    if kpis["backlog_age"]["value"][">7d"] > 0:
        reasons.append("stale_ticket")
    created = kpis["tickets_created"]["value"]
    if created >= SURGE_MIN and created >= SURGE_FACTOR * created_before:
        reasons.append("ticket_surge")
    return reasons


def _organizations(
    engine: Engine, keys: list[str]
) -> dict[str, tuple[float | None, int | None, int | None]]:
    found: dict[str, tuple[float | None, int | None, int | None]] = {}
    with engine.connect() as conn:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ", ".join(f":k{n}" for n in range(len(chunk)))
            sql = f"SELECT id, mrr, created_at, churned_at FROM organization WHERE id IN ({marks})"  # noqa: S608
            for row in conn.execute(text(sql), {f"k{n}": k for n, k in enumerate(chunk)}):
                found[str(row[0])] = (row[1], row[2], row[3])
    return found
