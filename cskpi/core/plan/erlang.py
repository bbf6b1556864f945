"""Erlang C staffing for live channels and the workload rule for async ones (SPEC §8).

Plain functions over numbers and numpy arrays; nothing here reads the store.

Notation: A = λ·AHT, the offered load in Erlangs (λ arrivals per second, AHT the mean
handle time in seconds); N agents; T the answer-time target in seconds.

* Erlang B by the recursion B(0) = 1, 1/B(k) = 1 + (k/A)·(1/B(k-1)), which never forms
  A^N or N! and so stays exact for hundreds of agents.
* Erlang C, the chance a contact waits: C(N, A) = N·B(N, A) / (N - A·(1 - B(N, A))).
* Service level, the share answered within T: SL(N) = 1 - C(N, A)·exp(-(N - A)·T/AHT).

References: A. K. Erlang (1917), "Solution of some problems in the theory of probabilities
of significance in automatic telephone exchanges"; the recursion and the C-from-B identity
as in G. Koole, *Call Center Optimization* (2013), ch. 5, and in pyworkforce's
``pyworkforce/queuing/erlang.py``, whose figures the tests reproduce (SPEC §8 test vector:
A = 10, T = 20 s, AHT = 180 s gives SL(13) = 0.7956, SL(14) = 0.8884).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# A target no finite staff reaches (SL < 1 for every N, or rounding): stop looking here.
_MOST_AGENTS_OVER_LOAD = 1000


def erlang_b(n: int, load: float) -> float:
    """Blocking probability of ``n`` servers offered ``load`` Erlangs, by the recursion."""
    if load <= 0:
        return 0.0 if n > 0 else 1.0
    b = 1.0
    for k in range(1, n + 1):
        b = load * b / (k + load * b)  # 1/B(k) = 1 + (k/A)·(1/B(k-1)), rearranged
    return b


def erlang_c(n: int, load: float) -> float:
    """Probability that a contact waits: C(N, A) = N·B / (N - A(1 - B)); 1 when N ≤ A
    (the queue grows without bound)."""
    if load <= 0:
        return 0.0
    if n <= load:
        return 1.0
    b = erlang_b(n, load)
    return n * b / (n - load * (1 - b))


def service_level(n: int, load: float, target_seconds: float, aht: float) -> float:
    """Share of contacts answered within ``target_seconds``:
    SL(N) = 1 - C(N, A)·exp(-(N - A)·T/AHT); 0 when N ≤ A."""
    if load <= 0:
        return 1.0
    if n <= load:
        return 0.0
    return 1 - erlang_c(n, load) * math.exp(-(n - load) * target_seconds / aht)


def live_agents(
    load: float, share: float, target_seconds: float, aht: float, max_occupancy: float
) -> int:
    """N*: the least N > A with SL(N) ≥ ``share`` and A/N ≤ ``max_occupancy``; 0 without load."""
    if load <= 0:
        return 0
    n = max(math.floor(load) + 1, math.ceil(load / max_occupancy))
    limit = n + _MOST_AGENTS_OVER_LOAD
    while n < limit and service_level(n, load, target_seconds, aht) < share:
        n += 1
    return n


def async_agents(rate: float, aht: float, max_occupancy: float) -> int:
    """Async channels (email, web) queue for hours, not seconds: the workload rule
    N* = ⌈λ·AHT / max_occupancy⌉ (agents busy ``max_occupancy`` of their time)."""
    return math.ceil(rate * aht / max_occupancy - 1e-9) if rate > 0 else 0


def with_shrinkage(agents: I64, shrinkage: float) -> I64:
    """Rostered agents: ⌈N* / (1 - shrinkage)⌉ (shrinkage: the share of paid time off the
    queue — breaks, training, meetings)."""
    needed: I64 = np.ceil(agents / (1 - shrinkage) - 1e-9).astype(np.int64)
    return needed


def required_live(
    rates: F64, aht: float, share: float, target_seconds: float, max_occupancy: float,
    shrinkage: float,
) -> I64:  # fmt: skip
    """Rostered agents per cell of ``rates`` (arrivals per second) for a live channel."""
    agents = np.array(
        [live_agents(r * aht, share, target_seconds, aht, max_occupancy) for r in rates.ravel()],
        dtype=np.int64,
    ).reshape(rates.shape)
    return with_shrinkage(agents, shrinkage)


def required_async(rates: F64, aht: float, max_occupancy: float, shrinkage: float) -> I64:
    """Rostered agents per cell of ``rates`` (arrivals per second) for an async channel."""
    agents = np.array(
        [async_agents(r, aht, max_occupancy) for r in rates.ravel()], dtype=np.int64
    ).reshape(rates.shape)
    return with_shrinkage(agents, shrinkage)
