"""The reads behind the forecast and the staffing plan: ticket arrivals and solves counted by
quarter hour, the agents at work by hour, and the vendors' handle times. One query each
through the KPI engine's reader (``columns.read``), never a row per Python object.

Arrivals and solves are counted in SQL per UTC quarter hour (every zone's offset is a
whole number of quarter hours, so a quarter hour lies in one local hour): 12 weeks are
8,064 rows whatever the volume, where a row per ticket was 230,000 on the 1M-ticket store.
The callers place them by local hour with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, inspect, text

from cskpi.core.store.dialect import connector_condition
from cskpi.core.store.reads.columns import read

F64 = NDArray[np.float64]

# Channels answered while the customer waits on the line or in the chat window (SPEC §8);
# every other channel (and none recorded) is async.
LIVE_CHANNELS = ("chat", "messaging", "phone")
_LIVE = "CASE WHEN t.channel IN ('chat', 'messaging', 'phone') THEN 1 ELSE 0 END"
# A message reaches the agents' hours through its ticket, found by the created_at index: a
# ticket created this long before the span is not looked at (docs/planning.md).
MESSAGE_LOOKBACK = 30 * 86400


@dataclass(frozen=True)
class Counts:
    """Events per UTC quarter hour and channel class."""

    at: F64  # the quarter hour's start, epoch seconds
    live: F64  # 1.0 for chat, messaging and phone tickets
    n: F64  # how many


def _counts(engine: Engine, column: str, where: str, start: int, end: int,
            connectors: Sequence[str]) -> Counts:  # fmt: skip
    only, params = connector_condition(connectors, "t")
    sql = (f"SELECT {column} / 900 AS q, {_LIVE} AS live, COUNT(*) FROM ticket t "  # noqa: S608
           f"WHERE t.deleted = FALSE{where} AND {column} >= :s AND {column} < :e{only} "
           "GROUP BY q, live")  # fmt: skip
    q, live, n = read(engine, [sql], {"s": start, "e": end, **params})[0]
    return Counts(np.asarray(q, dtype=np.float64) * 900, np.asarray(live, dtype=np.float64),
                  np.asarray(n, dtype=np.float64))  # fmt: skip


def arrivals(engine: Engine, start: int, end: int, connectors: Sequence[str] = ()) -> Counts:
    """The tickets created in [start, end) (not deleted)."""
    return _counts(engine, "t.created_at", "", start, end, connectors)


def solves(engine: Engine, start: int, end: int, connectors: Sequence[str] = ()) -> Counts:
    """The tickets solved in [start, end), as the tickets_solved KPI counts them."""
    solved = " AND t.status IN ('solved', 'closed')"
    return _counts(engine, "t.solved_at", solved, start, end, connectors)


@dataclass(frozen=True)
class AgentHours:
    """One row per (agent, UTC hour, channel class) with a public agent message: the hour's
    start in epoch seconds, the agent's row number, and 1.0 for a live ticket."""

    hour: F64
    agent: NDArray[np.int64]
    live: F64


def agent_hours(engine: Engine, start: int, end: int, connectors: Sequence[str] = ()) -> AgentHours:
    """The agents who wrote a public reply in each hour of [start, end)."""
    only, params = connector_condition(connectors, "t")
    sql = (
        f"SELECT DISTINCT m.author_id, m.created_at / 3600, {_LIVE} "  # noqa: S608
        "FROM ticket t JOIN message m ON m.ticket_id = t.id "
        "WHERE t.deleted = FALSE AND t.created_at >= :lookback AND t.created_at < :e "
        "AND m.author_role = 'agent' AND m.public = TRUE AND m.author_id IS NOT NULL "
        f"AND m.created_at >= :s AND m.created_at < :e{only}"
    )
    bound = {"s": start, "e": end, "lookback": start - MESSAGE_LOOKBACK, **params}
    author, hour, live = read(engine, [sql], bound)[0]
    _, agent = np.unique(np.asarray(author, dtype=object).astype(str), return_inverse=True)
    return AgentHours(np.asarray(hour, dtype=np.float64) * 3600, agent.astype(np.int64),
                      np.asarray(live, dtype=float))  # fmt: skip


def first_arrival(engine: Engine, connectors: Sequence[str] = ()) -> int | None:
    """The oldest stored ticket's created_at: how much history there is."""
    only, params = connector_condition(connectors, "t")
    sql = f"SELECT MIN(t.created_at) FROM ticket t WHERE t.deleted = FALSE{only}"  # noqa: S608
    with engine.connect() as conn:
        found = conn.execute(text(sql), params).scalar()
    return None if found is None else int(found)


# The vendor metric that is a ticket's handle time (SPEC §7: Intercom's statistics).
HANDLE_TIME = "handling_time"


def handle_times(engine: Engine, start: int, end: int) -> F64:
    """Vendor handle times (seconds) of the tickets solved in [start, end); empty when the
    store has no ``vendor_metric`` table (a store older than that migration)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("vendor_metric"):
            return np.zeros(0)
    sql = (
        "SELECT v.seconds FROM vendor_metric v JOIN ticket t ON t.id = v.ticket_id "
        "WHERE v.name = :name AND t.deleted = FALSE AND t.status IN ('solved', 'closed') "
        "AND t.solved_at >= :s AND t.solved_at < :e AND v.seconds > 0"
    )
    seconds = read(engine, [sql], {"name": HANDLE_TIME, "s": start, "e": end})[0][0]
    return np.asarray(seconds, dtype=np.float64)
