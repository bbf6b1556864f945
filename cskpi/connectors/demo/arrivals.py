"""The demo helpdesk's calendar: when tickets arrive and when people answer.

Arrivals follow an hourly intensity skewed to weekdays 08-18 UTC, with day-to-day noise and
slow growth; agents answer after a log-normal delay counted from the next business hour
(Mon-Fri 08-18 UTC); customers' and pending waits are log-normal and capped. Times are integer
Unix seconds throughout, the form the store keeps. Kept apart from ``desk`` (who writes,
what a ticket's life looks like, how records are built) because this is its model of time alone:
it knows no tickets or people, and the desk draws on it. Every draw takes a ``Uniform``
handed in by the desk, so the order of draws, and so the data for a seed, is the desk's to keep.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from statistics import NormalDist

Uniform = Callable[[], float]
"""A seeded draw in [0, 1): the desk passes ``random.Random.random`` of a block of tickets."""

DAY = 86400
# Customers reopen and rate within this, before a solved ticket closes on its own
# (``desk._CLOSE_AFTER``, 4 days), so neither needs a follow-up.
_MAX_WAIT = 3 * DAY

# A log-normal (sigma 1.1, median 1) by table lookup: far cheaper than lognormvariate.
_LOGN = tuple(math.exp(1.1 * NormalDist().inv_cdf((k + 0.5) / 1024)) for k in range(1024))
_OPEN = [how // 24 < 5 and 8 <= how % 24 < 18 for how in range(168)]  # hours of a UTC week
# Seconds from the start of an hour of the week to the next business hour (0 if open).
_OPENING_WAIT = tuple(
    next(k for k in range(168) if _OPEN[(how + k) % 168]) * 3600 for how in range(168)
)


def _arrival_weight(how: int) -> float:
    day, hour = divmod(how, 24)
    if day >= 5:
        return 2.5 if 10 <= hour < 18 else 1.0
    return 10.0 if _OPEN[how] else 4.0 if 6 <= hour < 22 else 1.5


def answer(r: Uniform, ts: int, median: float) -> int:
    """When an agent answers what arrived at ``ts``: a log-normal delay from the next
    business hour."""
    wait = _OPENING_WAIT[(ts // 3600 + 72) % 168]  # 1970-01-01 00:00 was Thursday, hour 72
    return (ts - ts % 3600 + wait if wait else ts) + 1 + int(median * _LOGN[int(r() * 1024)])


def later(r: Uniform, ts: int, median: float) -> int:
    """``ts`` plus a log-normal delay of at least a second and at most ``_MAX_WAIT``."""
    wait = 1 + int(median * _LOGN[int(r() * 1024)])
    return ts + (wait if wait < _MAX_WAIT else _MAX_WAIT)  # not min(): this runs per message


class Arrivals:
    """Creation times as quantiles of an hourly arrival intensity, so that ticket i's time
    needs no other ticket and never falls as i rises."""

    def __init__(self, start: int, days: int, seed: int) -> None:
        noise = random.Random(f"demo-days:{seed}")
        self.start, self.end = start, start + days * DAY
        self.cum: list[float] = []
        self.scale: list[float] = []  # seconds per unit of intensity, hour by hour
        total = 0.0
        for hour in range(days * 24):
            if hour % 24 == 0:  # day-to-day noise and slow growth, for period comparisons
                factor = math.exp(0.15 * noise.gauss(0.0, 1.0)) * (0.9 + 0.2 * hour / 24 / days)
            weight = _arrival_weight((start // 3600 + hour + 72) % 168) * factor
            total += weight
            self.cum.append(total)
            self.scale.append(3600 / weight)
        self.low = [0.0, *self.cum[:-1]]
        self.total = total

    def at(self, u: float) -> int:
        """The time (unix seconds, at most the span's end) at quantile ``0 <= u <= 1``."""
        x = u * self.total
        h = bisect_right(self.cum, x)
        if h == len(self.cum):
            return self.end
        return self.start + h * 3600 + int((x - self.low[h]) * self.scale[h])
