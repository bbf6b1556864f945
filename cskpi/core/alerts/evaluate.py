"""Is the bucket that just ended unusual? An alert's KPI in the bucket and in the same slot of
the earlier weeks, per key of its ``by`` dimension, judged by ``core/plan/anomaly.py``
(SPEC §8; docs/planning.md).

The values come from ``reads.py``: one query per alert whatever the number of buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine

from cskpi.core.alerts.reads import (
    WHOLE,
    Bucket,
    Sizes,
    Values,
    backlog_values,
    count_values,
    keys_of,
    measure_values,
)
from cskpi.core.config.file import AlertSettings, Config
from cskpi.core.kpis.filters import Where, resolve
from cskpi.core.kpis.formulas import KpiContext
from cskpi.core.plan.anomaly import count_fires, measure_fires, robust_z

__all__ = ["WHOLE", "Bucket", "Finding", "evaluate", "keys_of", "last_bucket"]

# Higher is better for these: an alert on them fires on a drop.
HIGHER_IS_BETTER = frozenset({"fcr_rate", "sla_first_response", "sla_resolution", "csat"})
MIN_N = 20  # a duration or rate needs this population in the bucket (SPEC §8)
MIN_BASELINE = 2  # baseline buckets with a value needed to judge at all


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
    where = alert_where(engine, config, name)
    if settings.kpi in ("tickets_created", "tickets_solved"):
        values = count_values(engine, settings.kpi, settings.by, buckets, where)
    elif settings.kpi == "backlog":
        values = backlog_values(engine, settings.by, buckets, now, where)
    else:
        ctx = KpiContext.from_config(config)
        values, sizes = measure_values(engine, ctx, settings.kpi, settings.by, buckets, now, where)
    return judge(name, settings, bucket, values, sizes)


def alert_where(engine: Engine, config: Config, name: str) -> Where:
    """The alert's ``where`` as stored values; a FilterError names the alert and the first
    dimension or value that is unknown or ambiguous."""
    raw: dict[str, Sequence[str]] = dict(config.alerts[name].where.items())
    return resolve(engine, raw, list(config.connectors),
                   f"{config.path.name}: [alerts.{name}] where")  # fmt: skip
