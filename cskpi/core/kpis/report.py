"""The KPIs of SPEC §4 over the store, for a window, a connector subset and an optional grouping.

Every choice SPEC leaves open is written down in docs/kpis.md; ``tests/core/kpis/kpi_reference.py``
is an independent implementation of that page that the tests compare this one with.

This module is the engine's front: ``compute`` reads the window's populations once
(``populations.py``), splits them by the grouping dimension and names the groups, and shapes
the ``Report``. The formulas that turn one set of populations into KPI entries are pure
array code with no I/O, and live in ``formulas.py``; ``KpiContext`` and ``Entry``, their
input and output, are defined there and re-exported here, the import path callers use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, text

from cskpi.core.config.periods import Window
from cskpi.core.kpis.accounts import accounts
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.formulas import Entry, KpiContext, kpi_set
from cskpi.core.kpis.native import with_native
from cskpi.core.kpis.populations import Frame, Populations, load, totals

__all__ = [
    "SORTS", "Bucket", "Entry", "Group", "Grouping", "KpiContext", "Report", "Series", "arrange",
    "assemble", "compute", "kpi_set", "none_label",
]  # fmt: skip


@dataclass(frozen=True)
class Group:
    key: str | None
    label: str
    kpis: dict[str, Entry]
    account: dict[str, Any] | None = None  # --by organization (accounts.py)


@dataclass(frozen=True)
class Grouping:
    dimension: str
    groups: list[Group]


@dataclass(frozen=True)
class Bucket:
    """One bucket of a series: its own window (``from``/``to``, the report's ``now``)."""

    window: Window
    kpis: dict[str, Entry]
    groups: list[Group] | None = None


@dataclass(frozen=True)
class Series:
    interval: str  # day, week or month
    buckets: list[Bucket]


@dataclass(frozen=True)
class Report:
    window: Window
    connectors: list[str]
    kpis: dict[str, Entry]
    by: Grouping | None = None
    series: Series | None = None  # with --interval (series.py)


def compute(
    engine: Engine,
    window: Window,
    ctx: KpiContext,
    *,
    connectors: Sequence[str] = (),
    by: str | None = None,
    wall: datetime | None = None,
    where: Where = EVERYTHING,
    native: bool = False,
) -> Report:
    """Every KPI of SPEC §4 and §6 for ``window``; with ``by``, also per value of that
    dimension. ``wall`` is the wall clock that tells whether the window's ``at`` is the real
    present (default now: see ``backlog.py``); ``where`` keeps only the tickets and ratings it
    names; ``native`` adds the vendors' own figures (SPEC §7)."""
    keyed = load(
        engine, window, connectors, by, ctx.escalation_tags, ctx.timezone, wall=wall,
        repeat_window=ctx.repeat_window, native=native, where=where,
    )  # fmt: skip
    return assemble(engine, keyed, window, ctx, connectors=connectors, by=by, where=where,
                    native=native)  # fmt: skip


def assemble(
    engine: Engine,
    keyed: Populations,
    window: Window,
    ctx: KpiContext,
    *,
    connectors: Sequence[str] = (),
    by: str | None = None,
    where: Where = EVERYTHING,
    native: bool = False,
) -> Report:
    """The report of populations ``load`` read (keyed by ``by``'s values when given)."""
    whole = totals(keyed) if by == "tag" else keyed  # one read serves both
    kpis = entries_of(whole, window, ctx, unsplit(where), native)
    report = Report(window, _connectors(engine, connectors), kpis)
    if by is None:
        return report
    keys = group_keys(keyed)
    labels = group_labels(engine, by, [k for k in keys if k is not None])
    groups = groups_of(keyed, window, ctx, by, keys, labels, native=native)
    if by == "organization":
        found = accounts(engine, window, {g.key: g.kpis for g in groups},
                         connectors=connectors, where=where)  # fmt: skip
        groups = [replace(g, account=found[g.key]) for g in groups]
        return arrange(replace(report, by=Grouping(by, groups)), "mrr")
    return replace(report, by=Grouping(by, groups))


def groups_of(
    keyed: Populations,
    window: Window,
    ctx: KpiContext,
    by: str,
    keys: Sequence[str | None],
    labels: dict[str, str],
    *,
    native: bool = False,
) -> list[Group]:
    """The KPIs of each group key of ``keyed`` populations, in ``keys`` order."""
    restrict = _split(keyed)
    return [
        Group(k, labels.get(k, k) if k is not None else none_label(by),
              entries_of(restrict(k), window, ctx, by, native))
        for k in keys
    ]  # fmt: skip


def entries_of(
    p: Populations, window: Window, ctx: KpiContext, split: str | None, native: bool
) -> dict[str, Entry]:
    """The KPI entries of one set of populations, with the vendors' figures if ``native``."""
    entries = kpi_set(p, window, ctx, split)
    return with_native(entries, p, ctx) if native else entries


def unsplit(where: Where) -> str | None:
    """What the support cost and the accounts are not split by: ``--where`` on anything
    but connectors (which ``--connector`` already restricts them to), else None."""
    return "--where" if set(where.dimensions) - {"connector"} else None


def none_label(dimension: str) -> str:
    """The one label of the group without a value: tickets nobody is assigned to are
    "(unassigned)" in tables, JSON, CSV and digests alike."""
    return "(unassigned)" if dimension == "agent" else "(none)"


# How ``arrange`` orders groups: the most first by a count, or by name. ``volume`` is the
# tickets a group created and solved in the window: the work that went through it.
SORTS: dict[str, Callable[[Group], tuple[Any, ...]]] = {
    "volume": lambda g: (-_count(g, "tickets_created") - _count(g, "tickets_solved"),),
    "created": lambda g: (-_count(g, "tickets_created"),),
    "solved": lambda g: (-_count(g, "tickets_solved"),),
    "backlog": lambda g: (-_count(g, "backlog"),),
    "name": lambda g: (),
    "mrr": lambda g: (-_mrr(g), g.key is None),
}
DEFAULT_SORT = {"organization": "mrr"}  # SPEC §6: accounts by mrr; every other by volume


def _mrr(group: Group) -> float:
    """The group's account mrr; 0 for none (an organization without, or no organization)."""
    return float((group.account or {}).get("mrr") or 0)


def _count(group: Group, key: str) -> int:
    return int(group.kpis[key]["value"] or 0)


def arrange(report: Report, sort: str | None = None, limit: int | None = None) -> Report:
    """``report`` with its groups in ``sort`` order (ties by name, then key), the first
    ``limit`` of them; by default organizations by mrr and other groups by volume.
    ``compute`` gives them by key, which reads a1, a10, a2."""
    if report.by is None:
        return report
    order = SORTS[sort or DEFAULT_SORT.get(report.by.dimension, "volume")]
    groups = sorted(
        report.by.groups, key=lambda g: (*order(g), g.label.casefold(), g.key is None, g.key or "")
    )
    return replace(report, by=Grouping(report.by.dimension, groups[:limit]))


def _connectors(engine: Engine, chosen: Sequence[str]) -> list[str]:
    if chosen:
        return list(chosen)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT DISTINCT connector FROM sync_state ORDER BY connector"))
        return [str(r[0]) for r in rows]


def group_keys(p: Populations) -> list[str | None]:
    """The keys of the window's populations; the days before ``to`` that backlog_time_to_clear
    reads make no group of their own."""
    found: set[str | None] = set()
    for frame in (p.created, p.solved, p.backlog, p.ratings, p.activity):
        assert frame.key is not None
        found.update(frame.key.tolist())
    return sorted((k for k in found if k is not None), key=str) + ([None] if None in found else [])


def _partition(frame: Frame) -> dict[str | None, NDArray[np.intp]]:
    """Row positions of each group key, in row order: each row's key numbered through a
    dict, then one stable sort of the numbers, which is cheaper than sorting the key strings
    themselves (docs/performance.md)."""
    assert frame.key is not None
    numbers: dict[str | None, int] = {}
    codes = np.fromiter(
        (numbers.setdefault(None if k is None else str(k), len(numbers)) for k in frame.key),
        dtype=np.intp,
        count=len(frame.key),
    )
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(numbers)))
    starts = np.r_[0, ends[:-1]]
    return {key: order[starts[n] : ends[n]] for key, n in numbers.items()}


def _split(p: Populations) -> Callable[[str | None], Populations]:
    """A function giving the populations of one group key."""
    keyed = (p.created, p.solved, p.backlog, p.ratings, p.activity, p.days_created,
             p.days_solved)  # fmt: skip
    parts = [_partition(f) for f in keyed]
    empty = np.zeros(0, dtype=np.intp)
    replies_of = rows_of_tickets(p.replies["ticket"])
    threads_of = rows_of_tickets(p.threads["ticket"])

    def restrict(key: str | None) -> Populations:
        created, solved, backlog, ratings, activity, days_created, days_solved = (
            frame.take(part.get(key, empty)) for frame, part in zip(keyed, parts, strict=True)
        )
        return Populations(
            created, solved, backlog, ratings, p.replies.take(replies_of(created["rowid"])),
            p.has_messages, p.organizations, activity, p.threads.take(threads_of(backlog["rowid"])),
            days_created, days_solved,
        )  # fmt: skip

    return restrict


def rows_of_tickets(tickets: NDArray[np.int64]) -> Callable[[NDArray[Any]], NDArray[np.intp]]:
    """A function giving the positions, in order, of the ``tickets`` entries that are among
    the given row keys. One sort of ``tickets`` up front, then binary searches for each
    group's keys, where a membership scan per group (``np.isin``) would read every row once
    per group (docs/performance.md)."""
    order = np.argsort(tickets, kind="stable")
    ordered = tickets[order]

    def rows(keys: NDArray[Any]) -> NDArray[np.intp]:
        wanted = np.unique(keys.astype(np.int64))
        first = np.searchsorted(ordered, wanted, "left")
        counts = np.searchsorted(ordered, wanted, "right") - first
        # every position first[i], first[i] + 1, … of each key's run, in one array
        runs = np.repeat(first - np.cumsum(counts) + counts, counts)
        picked: NDArray[np.intp] = order[runs + np.arange(int(counts.sum()))]
        picked.sort()
        return picked

    return rows


_LABEL_TABLES = {"agent": "person", "group": "grp", "organization": "organization"}


def group_labels(engine: Engine, dimension: str, keys: list[str]) -> dict[str, str]:
    table = _LABEL_TABLES.get(dimension)
    if table is None or not keys:
        return {}
    labels: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ", ".join(f":k{n}" for n in range(len(chunk)))
            sql = f"SELECT id, name FROM {table} WHERE id IN ({marks}) AND name IS NOT NULL"  # noqa: S608
            rows = conn.execute(text(sql), {f"k{n}": k for n, k in enumerate(chunk)})
            labels.update({str(r[0]): str(r[1]) for r in rows})
    return labels
