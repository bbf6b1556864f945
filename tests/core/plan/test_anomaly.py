"""The robust z and the Poisson tail, with figures worked by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cskpi.core.plan.anomaly import count_fires, measure_fires, poisson_tail, robust_z


def test_robust_z_by_hand() -> None:
    baseline = np.array([10, 12, 11, 13, 9, 10, 12, 40], dtype=float)
    # median 11.5; |b - m| = 1.5 .5 .5 1.5 2.5 1.5 .5 28.5 → MAD 1.5; s = max(2.2239, 1.15, 1)
    score = robust_z(30, baseline)
    assert score.usual == 11.5
    assert score.spread == pytest.approx(1.4826 * 1.5)
    assert score.z == pytest.approx((30 - 11.5) / (1.4826 * 1.5))


def test_flat_baseline_uses_the_floors() -> None:
    assert robust_z(3, np.zeros(8)).spread == 1.0  # MAD 0, m 0: the floor of one
    assert robust_z(130, np.full(8, 100.0)).spread == 10.0  # 0.1·m


def test_poisson_tail_by_hand() -> None:
    # P(X ≥ 2 | 1) = 1 - e⁻¹(1 + 1) = 1 - 2/e
    assert poisson_tail(2, 1.0) == pytest.approx(1 - 2 / math.e)
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 0.0) == 0.0


def test_count_rules() -> None:
    baseline = np.array([10, 12, 11, 9, 10, 11, 10, 12], dtype=float)
    assert count_fires(30, baseline, 3, 10)
    assert not count_fires(30, baseline, 3, 31)  # under min_count
    small = np.array([1, 0, 2, 1, 0, 1, 1, 0], dtype=float)
    assert not count_fires(4, small, 3, 1)  # z = 3, but P(X ≥ 4 | 0.75) = 0.007
    assert measure_fires(5000, 25, np.full(8, 3600.0), 3)
    assert not measure_fires(5000, 19, np.full(8, 3600.0), 3)
    assert measure_fires(50, 30, np.full(8, 90.0), -3)  # a drop in CSAT


@given(st.lists(st.integers(0, 500), min_size=1, max_size=12), st.integers(0, 1000))
def test_z_sign_follows_the_median(values: list[int], x: int) -> None:
    baseline = np.array(values, dtype=float)
    score = robust_z(x, baseline)
    assert score.spread >= 1
    assert (score.z > 0) == (x > np.median(baseline))
    assert poisson_tail(x + 1, float(baseline.mean())) <= poisson_tail(x, float(baseline.mean()))


@settings(deadline=None)  # the first call imports scipy.stats
@given(st.integers(0, 300), st.floats(0, 200))
def test_poisson_tail_agrees_with_scipy_stats(x: int, mean: float) -> None:
    from scipy.stats import poisson

    assert poisson_tail(x, mean) == pytest.approx(float(poisson.sf(x - 1, mean)), abs=1e-12)
