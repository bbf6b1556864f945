"""Where time comes from and where waiting happens, so tests can run on a fake clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where time comes from and where waiting happens: ``now`` is monotonic seconds (for
    spacing requests), ``wall`` unix seconds (for an HTTP-date ``Retry-After`` or an epoch
    reset), ``sleep`` waits."""

    def now(self) -> float: ...
    def wall(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # noqa: TID251 - this module is the one place that sleeps


class FakeClock:
    """A clock for tests: ``sleep`` advances ``now`` at once and is recorded in ``sleeps``."""

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self.t = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self._wall_offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Let time pass without a sleep (a slow server, work between requests)."""
        self.t += seconds
