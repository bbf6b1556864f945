"""The same-slot forecast: a fixed weekly pattern comes back exactly, growth moves μ, too
little history gives a reason."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cskpi.core.plan.forecast import (
    Forecast,
    NoForecast,
    backtest_mape,
    band,
    forecast,
    momentum,
    poisson_quantile,
    project_backlog,
)

RNG = np.random.default_rng(7)
PATTERN = RNG.integers(0, 20, size=(7, 24)).astype(np.float64)


def test_fixed_weekly_pattern_comes_back_exactly() -> None:
    history = np.tile(PATTERN, (8, 1))  # 8 weeks, Monday first, ending on a Sunday
    made = forecast(history, 28)
    assert isinstance(made, Forecast)
    assert made.momentum == 1.0
    np.testing.assert_array_equal(made.hourly, np.tile(PATTERN, (4, 1)))
    np.testing.assert_array_equal(made.daily, np.tile(PATTERN.sum(axis=1), 4))
    assert backtest_mape(np.tile(PATTERN, (12, 1))) == 0.0


def test_forecast_starts_on_the_weekday_after_the_history() -> None:
    history = np.tile(PATTERN, (3, 1))[2:]  # starts on a Wednesday, ends on a Sunday
    made = forecast(history, 2)
    assert isinstance(made, Forecast)
    np.testing.assert_array_equal(made.hourly, PATTERN[:2])  # Monday, Tuesday


def test_five_percent_weekly_growth() -> None:
    weeks = [PATTERN * 1.05**w for w in range(8)]
    history = np.concatenate(weeks)
    # Σ weeks 4..7 / Σ weeks 0..3 = 1.05⁴ = 1.2155, inside [0.8, 1.25]
    assert momentum(history) == pytest.approx(1.05**4)
    made = forecast(history, 7)
    assert isinstance(made, Forecast)
    assert made.momentum == pytest.approx(1.05**4)
    expected = np.mean(weeks, axis=0) * 1.05**4
    np.testing.assert_allclose(made.hourly, expected)


def test_fast_growth_is_clipped() -> None:
    history = np.concatenate([PATTERN * 1.5**w for w in range(8)])
    made = forecast(history, 7)
    assert isinstance(made, Forecast)
    assert made.trend == pytest.approx(1.5**4)
    assert made.momentum == 1.25


def test_under_two_weeks_is_null_with_a_reason() -> None:
    made = forecast(np.tile(PATTERN, (2, 1))[:13], 28)
    assert made == NoForecast("13 days of history; a forecast needs at least 14")
    assert backtest_mape(np.tile(PATTERN, (2, 1))) is None  # no week had 2 weeks before it


def test_backlog_projection() -> None:
    created = np.array([10.0, 10.0, 2.0, 0.0])
    solved = np.array([5.0, 20.0, 30.0, 1.0])
    # 100 → 105 → 95 → 67 → 66
    assert project_backlog(100, created, solved).tolist() == [105, 95, 67, 66]
    assert project_backlog(3, np.array([0.0]), np.array([5.0])).tolist() == [0]


def test_band_of_known_means() -> None:
    low, high = band(np.array([0.0, 10.0]))
    # Poisson(10): P(X ≤ 5) = 0.067, P(X ≤ 6) = 0.130 → 10 % quantile 6; P(X ≤ 13) = 0.864,
    # P(X ≤ 14) = 0.917 → 90 % quantile 14.
    assert low.tolist() == [0, 6]
    assert high.tolist() == [0, 14]


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (21, 24), elements=st.integers(0, 50).map(float)), st.integers(1, 30))
def test_band_holds_the_mean(history: np.ndarray, days: int) -> None:
    made = forecast(history, days)
    assert isinstance(made, Forecast)
    assert np.all(made.low <= np.ceil(made.hourly))
    assert np.all(np.floor(made.hourly) <= made.high)
    assert np.all(made.daily_low <= np.ceil(made.daily))
    assert np.all(np.floor(made.daily) <= made.daily_high)
    assert 0.8 <= made.momentum <= 1.25
    np.testing.assert_allclose(made.daily, made.hourly.sum(axis=1))


@settings(deadline=None)  # the first call imports scipy.stats
@given(st.lists(st.floats(0, 2000), min_size=1, max_size=20), st.sampled_from([0.1, 0.5, 0.9]))
def test_poisson_quantile_agrees_with_scipy_stats(means: list[float], q: float) -> None:
    from scipy.stats import poisson

    values = np.array(means)
    np.testing.assert_array_equal(poisson_quantile(q, values), poisson.ppf(q, values))
