"""Epoch seconds placed on the local calendar: (day, hour) cells in the config's time zone."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
EPOCH_DAY = date(1970, 1, 1)


def local_seconds(stamps: F64, tz: ZoneInfo) -> I64:
    """Epoch seconds shifted by the zone's offset at each instant. Offsets change at most
    every quarter hour, so each distinct quarter hour is converted once."""
    seconds = stamps.astype(np.int64)
    if len(seconds) == 0:
        return seconds
    quarters, index = np.unique(seconds // 900, return_inverse=True)
    offsets = np.array(
        [datetime.fromtimestamp(int(q) * 900, tz).utcoffset() or timedelta() for q in quarters],
        dtype="timedelta64[s]",
    ).astype(np.int64)
    shifted: I64 = seconds + offsets[index]
    return shifted


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
