"""Is the bucket that just ended unusual? An alert's KPI in the bucket and in the same slot of
the earlier weeks, per key of its ``by`` dimension, judged by ``core/plan/anomaly.py``
(SPEC §8; docs/planning.md).

Counts (tickets created or solved) come from one read of the timestamps in the nine-odd
buckets, assigned to buckets with numpy; the backlog from the backlog rule at each bucket's
end; durations and rates from the KPI engine (``kpis.report.compute``) once per bucket.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, text

from cskpi.core.config.file import AlertSettings, Config
from cskpi.core.config.periods import Window
from cskpi.core.kpis.backlog import backlog_counts
from cskpi.core.kpis.report import KpiContext, compute, none_label
from cskpi.core.plan.anomaly import count_fires, measure_fires, robust_z

# Higher is better for these: an alert on them fires on a drop.
HIGHER_IS_BETTER = frozenset({"fcr_rate", "sla_first_response", "sla_resolution", "csat"})
MIN_N = 20  # a duration or rate needs this population in the bucket (SPEC §8)
MIN_BASELINE = 2  # baseline buckets with a value needed to judge at all
WHOLE = ""  # the key of an alert without ``by``

# Group key of a ticket row for each dimension (as the KPI engine's populations read it).
TICKET_KEY = {
    "agent": "t.assignee_id", "group": "t.group_id", "channel": "t.channel", "type": "t.type",
    "priority": "t.priority", "organization": "t.organization_id", "connector": "t.connector",
    "tag": "CAST(t.tags AS TEXT)",  # the stored JSON list, as text on every database
}  # fmt: skip


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Finding:
    """One key of one alert in one bucket."""

    alert: str
    kpi: str
    key: str  # WHOLE without ``by``
    bucket: Bucket
    value: float
    usual: float
    z: float
    n: int | None  # the population of a duration or rate
    fired: bool
    dimension: str | None = None
    label: str = ""


def last_bucket(interval: str, tz: ZoneInfo, now: datetime) -> Bucket:
    """The latest whole local hour or day that ended at or before ``now``."""
    local = now.astimezone(tz)
    if interval == "hour":
        end = local.replace(minute=0, second=0, microsecond=0)
        start = (end.astimezone(ZoneInfo("UTC")) - timedelta(hours=1)).astimezone(tz)
        return Bucket(start, end)
    end = datetime.combine(local.date(), datetime.min.time(), tz)
    return Bucket(datetime.combine(local.date() - timedelta(days=1), datetime.min.time(), tz), end)


def baseline_buckets(bucket: Bucket, weeks: int, interval: str) -> list[Bucket]:
    """The same local hour of the week (or weekday) in each of the ``weeks`` weeks before."""
    start = bucket.start
    found = []
    for j in range(1, weeks + 1):
        day = start.date() - timedelta(days=7 * j)
        begin = datetime.combine(day, start.time(), start.tzinfo)
        length = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
        end = datetime.combine((begin + length).date(), begin.time(), start.tzinfo)
        found.append(Bucket(begin, end if interval == "day" else begin + length))
    return found


# --- values per bucket and key ----------------------------------------------------------


Values = dict[str, list[float | None]]  # key -> value per bucket (the current one first)
Sizes = dict[str, list[int | None]]  # key -> population per bucket (durations and rates)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def keys_of(raw: object, dimension: str | None) -> list[str]:
    """A row's keys: its tags for ``tag`` (none: the none label), else its one value."""
    if dimension is None:
        return [WHOLE]
    if dimension == "tag":
        # the stored JSON list, read as text (a driver that parses it hands over a list)
        tags = json.loads(raw) if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return [str(t) for t in tags] or [none_label("tag")]
    return [none_label(dimension) if raw is None else str(raw)]


def count_values(
    engine: Engine, kpi: str, dimension: str | None, buckets: Sequence[Bucket]
) -> Values:
    """tickets_created or tickets_solved per bucket and key: one read, counted in SQL by
    bucket and stored key (a tag list is one key there, split here: a store holds a few
    hundred distinct lists)."""
    column = "t.created_at" if kpi == "tickets_created" else "t.solved_at"
    solved = " AND t.status IN ('solved', 'closed')" if kpi == "tickets_solved" else ""
    ranges = [f"{column} >= :s{i} AND {column} < :e{i}" for i in range(len(buckets))]
    which = " ".join(f"WHEN {r} THEN {i}" for i, r in enumerate(ranges))
    key = TICKET_KEY[dimension] if dimension else "NULL"
    sql = (f"SELECT CASE {which} END AS b, {key} AS k, COUNT(*) FROM ticket t "  # noqa: S608
           f"WHERE t.deleted = FALSE{solved} AND ({' OR '.join(f'({r})' for r in ranges)}) "
           f"GROUP BY b, k")  # fmt: skip
    params = {f"{e}{i}": _epoch(getattr(b, n)) for i, b in enumerate(buckets)
              for e, n in (("s", "start"), ("e", "end"))}  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    values: Values = {WHOLE: [0.0] * len(buckets)} if dimension is None else {}
    for bucket, raw, count in rows:
        for k in keys_of(raw, dimension):
            slots = values.setdefault(k, [0.0] * len(buckets))
            slots[int(bucket)] = (slots[int(bucket)] or 0.0) + count
    return values


def backlog_values(
    engine: Engine, config: Config, dimension: str | None, buckets: Sequence[Bucket],
    now: datetime,
) -> tuple[Values, Sizes]:  # fmt: skip
    """The backlog at each bucket's end (at ``now`` if that comes first)."""
    if dimension is None:
        counts = backlog_counts(engine, [min(b.end, now) for b in buckets], wall=now)
        return {WHOLE: [float(c) for c in counts]}, {}
    return measure_values(engine, config, "backlog", dimension, buckets, now)


def measure_values(
    engine: Engine, config: Config, kpi: str, dimension: str | None,
    buckets: Sequence[Bucket], now: datetime,
) -> tuple[Values, Sizes]:  # fmt: skip
    """A KPI per bucket and key through the KPI engine, and its population (n)."""
    ctx = KpiContext.from_config(config)
    values: Values = {}
    sizes: Sizes = {}
    for i, b in enumerate(buckets):
        window = Window(b.start, b.end, config.timezone, max(now, b.end))
        # Only the backlog needs the rule for a past instant (status history, the costly
        # read); for any other KPI the bucket's end passes for the present.
        wall = now if kpi == "backlog" else b.end
        report = compute(engine, window, ctx, by=dimension, wall=wall)
        entries = {WHOLE: report.kpis[kpi]} if dimension is None else {
            g.key if g.key is not None else none_label(dimension): g.kpis[kpi]
            for g in (report.by.groups if report.by else [])
        }  # fmt: skip
        for k, entry in entries.items():
            values.setdefault(k, [None] * len(buckets))[i] = entry["value"]
            n = entry.get("n", entry.get("denominator"))
            sizes.setdefault(k, [None] * len(buckets))[i] = None if n is None else int(n)
    return values, sizes


# --- the decision -----------------------------------------------------------------------


def judge(
    name: str, settings: AlertSettings, bucket: Bucket, values: Values, sizes: Sizes
) -> list[Finding]:
    """A finding per key with a value in the bucket and enough baseline to judge it."""
    found = []
    for key, series in sorted(values.items()):
        value = series[0]
        baseline: NDArray[np.float64] = np.array([v for v in series[1:] if v is not None])
        if value is None or len(baseline) < MIN_BASELINE:
            continue
        score = robust_z(float(value), baseline)
        n = sizes.get(key, [None])[0]
        if settings.kpi in ("tickets_created", "tickets_solved", "backlog"):
            fired = count_fires(float(value), baseline, settings.z, settings.min_count)
        else:
            z = -settings.z if settings.kpi in HIGHER_IS_BETTER else settings.z
            fired = measure_fires(float(value), n or 0, baseline, z, MIN_N)
        found.append(Finding(name, settings.kpi, key, bucket, float(value), score.usual,
                             score.z, n, fired, settings.by))  # fmt: skip
    return found


def evaluate(
    engine: Engine, config: Config, name: str, now: datetime, bucket: Bucket | None = None
) -> list[Finding]:
    """Every key of alert ``name`` in the bucket that ended last before ``now`` (or
    ``bucket``), judged against its baseline."""
    settings = config.alerts[name]
    bucket = bucket or last_bucket(settings.interval, config.timezone, now)
    buckets = [bucket, *baseline_buckets(bucket, settings.baseline_weeks, settings.interval)]
    sizes: Sizes = {}
    if settings.kpi in ("tickets_created", "tickets_solved"):
        values = count_values(engine, settings.kpi, settings.by, buckets)
    elif settings.kpi == "backlog":
        values, sizes = backlog_values(engine, config, settings.by, buckets, now)
    else:
        values, sizes = measure_values(engine, config, settings.kpi, settings.by, buckets, now)
    return judge(name, settings, bucket, values, sizes)
