"""Epoch seconds placed on the local calendar: (day, hour) cells in the config's time zone."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from cskpi.core.kpis.populations import local_seconds  # one rule for local time

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
EPOCH_DAY = date(1970, 1, 1)

__all__ = ["EPOCH_DAY", "day_hours", "local_seconds", "week_hours"]


def day_hours(stamps: F64, tz: ZoneInfo, first: date, days: int, weights: F64 | None = None) -> F64:
    """(days, 24) counts of ``stamps`` (each ``weights`` times) by local day (``first`` is
    row 0) and local hour."""
    local = local_seconds(stamps, tz)
    row = local // 86400 - (first - EPOCH_DAY).days
    cell = row * 24 + local % 86400 // 3600
    inside = (row >= 0) & (row < days)
    weight = None if weights is None else weights[inside]
    counts = np.bincount(cell[inside], weights=weight, minlength=days * 24)
    return counts.astype(np.float64).reshape(days, 24)


def week_hours(stamps: F64, tz: ZoneInfo, weights: F64 | None = None) -> F64:
    """(7, 24) counts by local weekday (Monday first) and hour."""
    local = local_seconds(stamps, tz)
    cell = ((local // 86400 + 3) % 7) * 24 + local % 86400 // 3600  # 1 Jan 1970: a Thursday
    return np.bincount(cell, weights=weights, minlength=168).astype(np.float64).reshape(7, 24)
