"""Erlang C against SPEC §8's vector and two cases worked by hand."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cskpi.core.plan.erlang import (
    async_agents,
    erlang_b,
    erlang_c,
    live_agents,
    required_async,
    required_live,
    service_level,
)


def test_spec_vector() -> None:
    # 100 contacts in 30 min, AHT 180 s: A = 100/1800 · 180 = 10; T = 20 s.
    assert erlang_c(13, 10.0) == pytest.approx(0.2853, abs=5e-5)
    assert service_level(13, 10.0, 20, 180) == pytest.approx(0.7956, abs=5e-5)
    assert service_level(14, 10.0, 20, 180) == pytest.approx(0.8884, abs=5e-5)
    assert live_agents(10.0, 0.80, 20, 180, 1.0) == 14


def test_one_erlang_two_agents_by_hand() -> None:
    # B(1) = 1/2, B(2) = (1·1/2)/(2 + 1/2) = 1/5; C = 2·(1/5)/(2 - 1·(4/5)) = 1/3.
    assert erlang_b(2, 1.0) == pytest.approx(1 / 5)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # SL = 1 - (1/3)·exp(-(2 - 1)·30/60)
    assert service_level(2, 1.0, 30, 60) == pytest.approx(1 - math.exp(-0.5) / 3)


def test_two_erlangs_three_agents_by_hand() -> None:
    # B(1) = 2/3, B(2) = (4/3)/(10/3) = 2/5, B(3) = (4/5)/(19/5) = 4/19;
    # C = 3·(4/19)/(3 - 2·15/19) = (12/19)/(27/19) = 4/9.
    assert erlang_b(3, 2.0) == pytest.approx(4 / 19)
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    sl = 1 - (4 / 9) * math.exp(-0.5)  # 0.7304: below 80 %, so 80 % in 60 s needs 4
    assert service_level(3, 2.0, 60, 120) == pytest.approx(sl)
    assert live_agents(2.0, 0.80, 60, 120, 1.0) == 4


def test_occupancy_cap_raises_the_staff() -> None:
    # A = 10 at 14 agents is 71 % busy; a cap of 60 % needs ⌈10/0.6⌉ = 17.
    assert live_agents(10.0, 0.80, 20, 180, 0.6) == 17


def test_async_workload_and_shrinkage() -> None:
    # 30 emails an hour x 8 min = 4 Erlangs of work; at 80 % occupancy ⌈5⌉ = 5 agents,
    # with 30 % shrinkage ⌈5/0.7⌉ = 8.
    rate = 30 / 3600
    assert async_agents(rate, 480, 0.8) == 5
    assert required_async(np.array([rate, 0.0]), 480, 0.8, 0.3).tolist() == [8, 0]
    assert required_live(np.array([100 / 1800]), 180, 0.8, 20, 1.0, 0.3).tolist() == [20]


@given(st.floats(0.1, 60), st.integers(1, 40), st.floats(1, 300), st.floats(30, 900))
def test_service_level_grows_with_agents(load: float, extra: int, t: float, aht: float) -> None:
    n = math.floor(load) + 1
    levels = [service_level(k, load, t, aht) for k in range(n, n + extra + 1)]
    assert all(0 <= v <= 1 for v in levels)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(levels))


@given(st.floats(0.1, 80), st.floats(0.5, 0.95), st.floats(5, 120), st.floats(0.5, 1.0))
def test_least_agents_is_least(load: float, share: float, t: float, occupancy: float) -> None:
    aht = 300.0
    n = live_agents(load, share, t, aht, occupancy)
    assert n > load
    assert load / n <= occupancy + 1e-12
    assert service_level(n, load, t, aht) >= share
    fewer = n - 1
    assert fewer <= load or load / fewer > occupancy or service_level(fewer, load, t, aht) < share
