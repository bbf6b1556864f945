"""Pacing requests to a vendor's quota: a sliding-window budget plus the vendor's own
rate-limit headers, so a long backfill runs at the ceiling without provoking 429s."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import requests

from cskpi.core.clock import Clock, SystemClock

MAX_RETRY_AFTER = 900.0  # never wait longer than this for one request, whatever a server says


@dataclass(frozen=True)
class Budget:
    """At most ``requests`` in any ``per_seconds`` window (e.g. Zendesk exports: 10 per 60)."""

    requests: int
    per_seconds: float = 60.0


class Quota(NamedTuple):
    """One rate-limit reading from a response's headers."""

    remaining: int
    limit: int | None
    reset_in: float | None


@dataclass(frozen=True)
class RateLimitHeaders:
    """Which headers carry a vendor's quota; the first present name of each tuple wins."""

    remaining: tuple[str, ...]
    limit: tuple[str, ...] = ()
    reset: tuple[str, ...] = ()
    reset_kind: Literal["seconds", "epoch"] = "seconds"
    structured_prefix: str | None = None  # headers like "total=100; remaining=99; resets=41"
    unknown_reset: float = 60.0  # the window to assume when no header says when it resets
    reset_granularity: float = 1.0  # a reset in whole seconds may be read up to 1 s early
    # With no reset header, "nothing left" says nothing of when room returns, but a budget
    # of the same size knows when its own requests leave the window: while the headers show
    # no more use than the budget counts (no other app on the account), the budget paces.
    defer_to_budget: bool = False

    def read(self, headers: Mapping[str, str], wall_now: float) -> list[Quota]:
        """Every quota reading present in ``headers`` (case-insensitive names)."""
        found = {k.lower(): v for k, v in headers.items()}
        quotas = [_structured(v) for k, v in found.items() if self._is_structured(k)]
        remaining = header_number(_first(found, self.remaining))
        if remaining is not None:
            reset = header_number(_first(found, self.reset))
            if reset is not None and self.reset_kind == "epoch":
                reset -= wall_now
            limit = header_number(_first(found, self.limit))
            quotas.append(Quota(int(remaining), None if limit is None else int(limit), reset))
        return [q for q in quotas if q is not None]

    def _is_structured(self, name: str) -> bool:
        return self.structured_prefix is not None and name.startswith(self.structured_prefix)


# https://developer.zendesk.com/api-reference/introduction/rate-limits/ and the recorded
# headers in samples/zendesk/response_headers_*.json (ratelimit-*, rate-limit-*, x-rate-limit-*;
# reset in seconds), plus per-endpoint "zendesk-ratelimit-<name>: total=; remaining=; resets=".
ZENDESK_HEADERS = RateLimitHeaders(
    remaining=("ratelimit-remaining", "rate-limit-remaining", "x-rate-limit-remaining"),
    limit=("ratelimit-limit", "rate-limit", "x-rate-limit"),
    reset=("ratelimit-reset", "rate-limit-reset"),
    structured_prefix="zendesk-ratelimit-",
)
# https://developers.freshdesk.com/api/#ratelimit: per-minute quota (in credits), no reset header.
FRESHDESK_HEADERS = RateLimitHeaders(
    remaining=("x-ratelimit-remaining",), limit=("x-ratelimit-total",), defer_to_budget=True
)
# https://developers.intercom.com/docs/references/2.17/rest-api/errors/rate-limiting: the
# per-minute limit is enforced in 10 s windows; reset is a unix timestamp.
INTERCOM_HEADERS = RateLimitHeaders(
    remaining=("x-ratelimit-remaining",),
    limit=("x-ratelimit-limit",),
    reset=("x-ratelimit-reset",),
    reset_kind="epoch",
    unknown_reset=10.0,
    reset_granularity=0.0,  # an instant, not a rounded count of seconds
)


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((headers[n] for n in names if n in headers), None)


def header_number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _structured(value: str) -> Quota | None:
    pairs = (part.strip().partition("=") for part in value.split(";"))
    fields = {key.strip().lower(): val.strip() for key, _, val in pairs}
    remaining, total = header_number(fields.get("remaining")), header_number(fields.get("total"))
    if remaining is None:
        return None
    return Quota(
        int(remaining), None if total is None else int(total), header_number(fields.get("resets"))
    )


class Slot:
    """A request's place in the budget window: when it was sent, then when it finished
    (``done``); ``cost`` is what it counts against the budget, ``outer`` its slot in an
    enclosing limiter."""

    __slots__ = ("at", "cost", "done", "outer")

    def __init__(self, at: float, cost: int = 1, outer: Slot | None = None) -> None:
        self.at, self.cost, self.outer = at, cost, outer
        self.done = False


class RateLimiter:
    """Paces requests to a vendor's quota: a sliding-window budget plus the vendor's headers.

    Before each request it waits until the request fits in the budget (no more than
    ``budget.requests`` in any ``budget.per_seconds``, counted from each response's arrival,
    which the server saw later than the send) and until any header-derived time: when the
    headers say nothing is left it waits for the reset (plus ``reset_granularity``, as a
    count of whole seconds may be rounded down); otherwise it spreads what remains evenly
    before the reset. One limiter may be shared by the streams (and threads) of one account.

    An endpoint with its own, lower quota inside the account's (Freshdesk's ticket list: 20 a
    minute within 200 credits) gets a limiter ``within`` the account's: each of its requests
    takes a slot in both, counting ``cost`` against the account (a list with ``include=`` costs
    Freshdesk 3 credits). The account's budget then counts credits, not requests.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        headers: RateLimitHeaders | None = None,
        *,
        clock: Clock | None = None,
        margin: float = 0.1,
        within: RateLimiter | None = None,
        cost: int = 1,
    ) -> None:
        self.budget, self.headers, self.margin = budget, headers, margin
        self.within, self.cost = within, cost
        self.clock: Clock = clock or SystemClock()
        self._slots: list[Slot] = []
        self._not_before = -math.inf
        self._changed = threading.Condition()

    def acquire(self, cost: int = 1) -> Slot:
        """Wait until one more request (counting ``cost``) fits here and in the enclosing
        limiter; return its slot for :meth:`release`.

        A slot is taken only when the request goes out, at the time it goes out (a plan made
        before a sleep could be overtaken by the sleep running long). A request still in
        flight leaves the window only a window after it finishes, as the server may have
        counted it as late as that: when the budget waits on one, this waits for its answer.
        """
        while True:
            with self._changed:
                now = self.clock.now()
                opens = self._budget_opens(now, cost)
                if opens is None:  # the budget frees up only once a request in flight ends
                    self._changed.wait(timeout=1.0)
                    continue
                at = max(now, self._not_before, opens)
                if at <= now:
                    slot = Slot(now, cost)
                    self._slots.append(slot)
                    break
            self.clock.sleep(at - now)
        if self.within is not None:
            slot.outer = self.within.acquire(self.cost)
        return slot

    def release(self, slot: Slot, response: requests.Response | None) -> None:
        """Record that the request finished and learn from the response's quota headers."""
        if self.within is not None and slot.outer is not None:
            self.within.release(slot.outer, response)
        with self._changed:
            now = self.clock.now()
            slot.at, slot.done = max(slot.at, now), True
            self._changed.notify_all()
            if response is None or self.headers is None:
                return
            for quota in self.headers.read(response.headers, self.clock.wall()):
                if self._budget_knows(quota, now):
                    continue
                self._not_before = max(self._not_before, now + self._quota_wait(quota))

    def pause(self) -> float:
        """How long the next request must wait for the quota, here or in the enclosing
        limiter (the client refuses to wait longer than its ``longest_wait``)."""
        with self._changed:
            here = max(0.0, self._not_before - self.clock.now())
        return max(here, self.within.pause()) if self.within is not None else here

    def _budget_knows(self, quota: Quota, now: float) -> bool:
        """The headers report this budget's own quota and no use beyond what it counts."""
        budget, headers = self.budget, self.headers
        if budget is None or headers is None or not headers.defer_to_budget:
            return False
        if quota.reset_in is not None or quota.limit != budget.requests:
            return False
        used = sum(s.cost for s in self._slots if s.at + budget.per_seconds > now)
        return quota.remaining >= budget.requests - used

    def _budget_opens(self, now: float, cost: int = 1) -> float | None:
        """When ``cost`` more fits in the budget; None when that waits on a request in flight."""
        if self.budget is None:
            return now
        window = self.budget.per_seconds
        self._slots = [s for s in self._slots if not s.done or s.at + window > now]
        excess = sum(s.cost for s in self._slots) + cost - self.budget.requests
        if excess <= 0:
            return now
        finished = sorted((s for s in self._slots if s.done), key=lambda s: s.at)
        for slot in finished:  # the oldest leave the window first
            excess -= slot.cost
            if excess <= 0:
                return slot.at + window + self.margin
        if len(finished) < len(self._slots):
            return None
        # costlier than the whole budget: alone in the window is the best it can get
        return max((s.at + window + self.margin for s in self._slots), default=now)

    def _quota_wait(self, quota: Quota) -> float:
        assert self.headers is not None
        reset = quota.reset_in
        if quota.remaining <= 0:
            if reset is None:
                return self.headers.unknown_reset + self.margin
            return max(0.0, reset) + self.headers.reset_granularity + self.margin
        if reset is not None:  # spread what is left so that the last one lands before the reset
            return max(0.0, reset) / (quota.remaining + 1)
        if quota.limit and quota.remaining * 10 < quota.limit:  # nearly out, reset unknown
            return self.headers.unknown_reset / quota.limit
        return 0.0
