"""The arrivals forecast: the same-slot average of the last eight weeks with momentum
(SPEC §8), its 80 % band, the backlog it projects and its backtest error.

Plain functions over an hourly history: ``history[i, h]`` is the count in local hour ``h``
of day ``i``, the newest day last, the day just before the first forecast day. Nothing here
reads the store.

* Forecast for future day d, hour h: f(d, h) = mean over j = 1…8 of x(d - 7j, h) x μ — the
  8 latest observed days of the same weekday. For d a week or more ahead x(d - 7j) would be
  a forecast itself; taking the same observed weeks instead makes every future week repeat
  the pattern, with μ applied once, not compounded week after week.
* Momentum μ = Σ last 4 weeks / Σ the 4 weeks before, clipped to [0.8, 1.25] (with fewer
  than 8 whole weeks: the last k weeks against the k before, k = ⌊weeks/2⌋; 1 when the
  earlier weeks hold nothing).
* Band: the 10 % and 90 % quantiles of Poisson(f), per hour and per day (a sum of
  independent Poisson counts is Poisson with the summed mean).
* Backlog: B(t+1) = max(0, B(t) + created(t) - solved(t)).
* Backtest: each of the last 4 weeks forecast from the history before it, daily totals
  against what arrived; MAPE = 100 · mean |f - x| / x over the days with x > 0.

Reference: the baseline Zendesk documents for its WFM forecast ("an average of the same
time slot in the previous weeks, adjusted by the recent trend"),
https://support.zendesk.com/hc/en-us/articles/6443365725210; R. J. Hyndman and
G. Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed., 2021), §5.2 (seasonal
average methods) and §5.8 (MAPE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

SAME_SLOT_WEEKS = 8
MOMENTUM_WEEKS = 4
MOMENTUM_CLIP = (0.8, 1.25)
BAND = (0.10, 0.90)
QUANTILE_BLOCK = 64  # means whose quantiles poisson_quantile computes at once
MIN_HISTORY_DAYS = 14
BACKTEST_WEEKS = 4


@dataclass(frozen=True)
class Forecast:
    hourly: F64  # (days, 24): expected arrivals
    low: F64  # (days, 24): Poisson 10 % quantile of ``hourly``
    high: F64  # (days, 24): Poisson 90 % quantile
    daily: F64  # (days,): sum over the hours
    daily_low: F64
    daily_high: F64
    momentum: float  # μ as applied (clipped)
    trend: float  # μ before clipping


@dataclass(frozen=True)
class NoForecast:
    reason: str


def momentum(history: F64) -> float:
    """μ before clipping: the last k whole weeks' total over the k weeks before them."""
    k = min(MOMENTUM_WEEKS, len(history) // 7 // 2)
    if k == 0:
        return 1.0
    days = 7 * k
    recent = float(history[-days:].sum())
    before = float(history[-2 * days : -days].sum())
    return recent / before if before > 0 else 1.0


def same_slot_mean(history: F64, days: int) -> F64:
    """(days, 24): for each future day, the mean of the latest ``SAME_SLOT_WEEKS`` observed
    days of the same weekday."""
    n = len(history)
    out = np.zeros((days, 24))
    for d in range(days):
        latest = n + d % 7 - 7  # the newest observed day of d's weekday
        rows = np.arange(latest, latest - 7 * SAME_SLOT_WEEKS, -7)
        out[d] = history[rows[rows >= 0]].mean(axis=0)
    return out


def poisson_quantile(q: float, mean: F64) -> F64:
    """The least k with P(X <= k) >= q for X ~ Poisson(mean), per mean (what
    ``scipy.stats.poisson.ppf`` gives; the tests check it against that); 0 for a mean of 0.
    The CDF summed from its terms, each exp(k ln m - m - ln k!), up to 12 standard
    deviations past the mean (the tail beyond is below 1e-30), for a block of means of
    about the same size at once. Not scipy: importing even ``scipy.special`` took half a
    second of a `cskpi forecast`, which has two to answer in."""
    means = np.asarray(mean, dtype=np.float64)
    flat = np.where(means > 0, means, 0.0).ravel()  # NaN and 0: 0
    order = np.argsort(flat)
    found = np.zeros(len(flat))
    for start in range(0, len(flat), QUANTILE_BLOCK):
        rows = order[start : start + QUANTILE_BLOCK]
        m = flat[rows, None]
        top = float(m[-1, 0])
        ks = np.arange(int(top + 12 * math.sqrt(top) + 20) + 1, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):  # log 0: the zero means
            terms = np.exp(ks * np.log(m) - m - _log_factorials(len(ks)))
        below = np.cumsum(np.nan_to_num(terms), axis=1) < q
        found[rows] = np.where(m[:, 0] > 0, below.sum(axis=1), 0)
    quantiles: F64 = found.reshape(means.shape)
    return quantiles


@cache
def _log_factorial_table(size: int) -> F64:
    return np.array([math.lgamma(k + 1) for k in range(size)], dtype=np.float64)


def _log_factorials(n: int) -> F64:
    """ln k! for k = 0…n-1, from a table made once per power of two."""
    table = _log_factorial_table(1 << max(n - 1, 1).bit_length())
    return table[:n]


def band(mean: F64) -> tuple[F64, F64]:
    """The Poisson 10 % and 90 % quantiles of each mean: an 80 % interval for a count."""
    return poisson_quantile(BAND[0], mean), poisson_quantile(BAND[1], mean)


def forecast(history: F64, days: int) -> Forecast | NoForecast:
    """The next ``days`` days by hour; :class:`NoForecast` under two weeks of history."""
    if len(history) < MIN_HISTORY_DAYS:
        return NoForecast(
            f"{len(history)} days of history; a forecast needs at least {MIN_HISTORY_DAYS}"
        )
    trend = momentum(history)
    mu = float(np.clip(trend, *MOMENTUM_CLIP))
    hourly = same_slot_mean(history, days) * mu
    daily = hourly.sum(axis=1)
    low, high = band(hourly)
    daily_low, daily_high = band(daily)
    return Forecast(hourly, low, high, daily, daily_low, daily_high, mu, trend)


def project_backlog(start: float, created: F64, solved: F64) -> F64:
    """Backlog after each step: B(t+1) = max(0, B(t) + created(t) - solved(t))."""
    out = np.empty(len(created))
    b = start
    for t, (c, s) in enumerate(zip(created, solved, strict=True)):
        b = max(0.0, b + c - s)
        out[t] = b
    return out


def backtest_mape(history: F64, weeks: int = BACKTEST_WEEKS) -> float | None:
    """MAPE (%) of daily totals over the last ``weeks`` weeks, each forecast a week ahead from
    the history before it; ``None`` when no week had two weeks of history before it or no
    day had arrivals."""
    errors: list[F64] = []
    for k in range(1, weeks + 1):
        cut = len(history) - 7 * k
        made = forecast(history[:cut], 7) if cut >= 0 else None
        if not isinstance(made, Forecast):
            continue
        actual = history[cut : cut + 7].sum(axis=1)
        seen = actual > 0
        errors.append(np.abs(made.daily[seen] - actual[seen]) / actual[seen])
    joined = np.concatenate(errors) if errors else np.zeros(0)
    return float(100 * joined.mean()) if len(joined) else None
