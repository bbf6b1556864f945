"""Is this bucket unusual? The robust z-score against a same-slot baseline, and the Poisson
tail a count must also clear (SPEC §8 alerts, the digest's "unusual" marks).

Plain functions over numbers and arrays; nothing here reads the store.

* m = median(baseline), MAD = median |b - m|, s = max(1.4826·MAD, 0.1·m, 1), z = (x - m)/s.
  1.4826·MAD estimates the standard deviation of normal data while one outlying week
  cannot move it; the floors 0.1·m and 1 keep a flat baseline (MAD = 0) from turning a
  change of one ticket into an alarm.
* A count also needs P(X ≥ x | X ~ Poisson(mean of the baseline)) < 0.001: a z-score of
  small counts fires on noise that a Poisson process makes all the time.

References: F. R. Hampel (1974), "The influence curve and its role in robust estimation",
JASA 69 (the MAD and its 1.4826 consistency constant); P. J. Rousseeuw and C. Croux (1993),
"Alternatives to the median absolute deviation", JASA 88; B. Iglewicz and D. C. Hoaglin,
*How to Detect and Handle Outliers* (1993), the modified z-score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

MAD_TO_SIGMA = 1.4826
RELATIVE_FLOOR = 0.1
ABSOLUTE_FLOOR = 1.0
TAIL = 0.001


@dataclass(frozen=True)
class Score:
    value: float  # x
    usual: float  # m, the baseline's median
    spread: float  # s
    z: float


def robust_z(value: float, baseline: F64) -> Score:
    """x against the baseline: z = (x - m)/s, s = max(1.4826·MAD, 0.1·|m|, 1)."""
    m = float(np.median(baseline))
    mad = float(np.median(np.abs(baseline - m)))
    s = max(MAD_TO_SIGMA * mad, RELATIVE_FLOOR * abs(m), ABSOLUTE_FLOOR)
    return Score(value, m, s, (value - m) / s)


def poisson_tail(value: float, mean: float) -> float:
    """P(X ≥ value) for X ~ Poisson(mean); 1 for value ≤ 0, and for a mean of 0 the tail of
    any positive count is 0 (nothing ever arrives)."""
    from scipy.special import pdtrc  # P(X > k); scipy.stats takes seconds to import

    if value <= 0:
        return 1.0
    return float(pdtrc(np.ceil(value) - 1, mean))


def count_fires(value: float, baseline: F64, z: float, min_count: float) -> bool:
    """A count fires when z ≥ ``z``, x ≥ ``min_count`` and its Poisson tail < 0.001."""
    score = robust_z(value, baseline)
    return (
        score.z >= z and value >= min_count and poisson_tail(value, float(np.mean(baseline))) < TAIL
    )


def measure_fires(value: float, n: int, baseline: F64, z: float, min_n: int = 20) -> bool:
    """A duration or rate fires when |z| ≥ ``z`` in the direction the caller passes as the
    sign of ``z`` (-3 for a drop), over a population of at least ``min_n``."""
    score = robust_z(value, baseline)
    beyond = score.z >= z if z > 0 else score.z <= z
    return beyond and n >= min_n
