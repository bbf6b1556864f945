"""The backlog at an instant (SPEC §4): one rule for the KPI report, the digest's chart and the
demo summary, so all three give one number for one instant (docs/kpis.md, backlog).

At the real present a ticket's status is the stored one. At an earlier instant its solve
stamps settle it where they can, and its status history where they cannot: a ticket solved
now whose latest solve (``solved_at``) is before the instant has been solved since, or its
latest solve would be later; a ticket with no solve stamp at all was never solved. Only the
rest (solved once, and reopened or solved again later) is looked up in ``status_change``:
the latest change at or before the instant, or without one the first solve's stamp. So a
past backlog reads about as many tickets as it holds, and probes the history for few.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from cskpi.core.store.dialect import Sql, sql_for
from cskpi.core.store.schema import to_epoch

# How far an instant may lie behind the wall clock and still be the real present: the time
# between reading the clock for a command's ``now`` and running its queries, with room for a
# scheduled digest that starts a little late.
PRESENT_SLACK = timedelta(minutes=1)

_UNSOLVED_SQL = "('new', 'open', 'pending', 'on_hold')"
_DONE_SQL = "('solved', 'closed')"

# The ticket's status at :a from its history: the latest change at or before :a; of several
# changes in that second a solve or close wins (an agent's reply sent as solved). NULL when
# the history has no change by then.
_HISTORY = (
    f"(SELECT s.status IN {_UNSOLVED_SQL} FROM status_change s "  # noqa: S608 (constants only)
    "WHERE s.ticket_id = t.id AND s.at <= :a "
    f"ORDER BY s.at DESC, CASE WHEN s.status IN {_DONE_SQL} THEN 0 ELSE 1 END LIMIT 1)"
)
# Without history by then: not solved before :a by its first solve, or its latest.
_STAMPS = (
    "(COALESCE(t.first_solved_at, t.solved_at) IS NULL "
    "OR COALESCE(t.first_solved_at, t.solved_at) >= :a)"
)
# Never solved by its stamps: unsolved all along, with no look at the history.
_WAS_UNSOLVED = (
    "CASE WHEN t.first_solved_at IS NULL AND t.solved_at IS NULL THEN TRUE "
    f"ELSE COALESCE({_HISTORY}, {_STAMPS}) END"
)


def present() -> datetime:
    """The wall clock: what the real present is measured against."""
    return datetime.now(UTC)


def is_present(at: datetime, wall: datetime | None = None) -> bool:
    """Whether ``at`` is the real present: no more than ``PRESENT_SLACK`` before ``wall``
    (default the wall clock now), or after it."""
    return at >= (wall or present()) - PRESENT_SLACK


def conditions(live: bool) -> tuple[str, ...]:
    """Conditions on a ticket ``t`` (binding ``:a``, the instant's epoch seconds) whose
    disjoint union is the backlog at ``:a``; ``live``: at the real present."""
    if live:
        return (f"t.status IN {_UNSOLVED_SQL} AND t.created_at < :a",)
    return (
        f"t.status IN {_UNSOLVED_SQL} AND t.created_at < :a AND {_WAS_UNSOLVED}",
        # SQLite is kept off the (status, created_at) and created_at indexes, which would
        # walk every solved ticket ever stored instead of the range of solved_at from :a on.
        f"{{+t.status}} IN {_DONE_SQL} AND (t.solved_at >= :a OR t.solved_at IS NULL) "
        f"AND {{+t.created_at}} < :a AND {_WAS_UNSOLVED}",
    )


def unindexed(sql: str, dialect: Sql) -> str:
    """``sql`` with the dialect's spelling of ``{+t.column}``: the column kept off its index."""
    for column in ("t.status", "t.created_at"):
        sql = sql.replace(f"{{+{column}}}", dialect.unindexed(column))
    return sql


def backlog_counts(
    engine: Engine,
    instants: Sequence[datetime],
    *,
    wall: datetime | None = None,
    connectors: Sequence[str] = (),
) -> list[int]:
    """The backlog at each of ``instants`` (aware), by the KPI report's rule; ``wall`` is the
    wall clock the real present is judged by (default now)."""
    wall = wall or present()
    dialect = sql_for(engine)
    names = ", ".join(f":c{i}" for i in range(len(connectors)))
    only = f" AND t.connector IN ({names})" if connectors else ""
    counts = []
    with engine.connect() as conn:
        for at in instants:
            parts = [
                f"SELECT COUNT(*) AS n FROM ticket t WHERE t.deleted = FALSE AND {c}{only}"  # noqa: S608
                for c in conditions(is_present(at, wall))
            ]
            sql = unindexed(" UNION ALL ".join(parts), dialect)
            params = {"a": to_epoch(at), **{f"c{i}": c for i, c in enumerate(connectors)}}
            counts.append(sum(int(n) for (n,) in conn.execute(text(sql), params)))
    return counts
