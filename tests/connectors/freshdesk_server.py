"""A local imitation of the Freshdesk API v2 endpoints the ``freshdesk`` connector reads.

Tests start it on 127.0.0.1 on a free port (a ``ThreadingHTTPServer`` in a thread); the
benchmark can run it in its own process (``python -m tests.connectors.freshdesk_server``). The
data is generated deterministically from ``seed``: agents, groups, companies, customers, and
tickets whose conversations, resolutions, reopens and closes follow a timeline, with ``stats``
computed from that same timeline. A run of tickets shares one ``updated_at`` second (a bulk
update), more than a page holds. Tests change it through :meth:`Desk.change_tickets`,
:meth:`Desk.delete_ticket` and :attr:`FreshdeskImitation.on_list` (called on every ticket-list
request, to change tickets while a sync reads the list).

What it imitates (shapes from tests/samples/freshdesk and https://developers.freshdesk.com/api/):
the ticket list (``updated_since`` inclusive, default "created in the last 30 days",
``order_by=updated_at``, ``order_type``, ``per_page`` ≤ 100, offset ``page`` ≤ ``page_cap``
else 400, ``filter=deleted|spam``, ``include=requester,stats``), conversations, agents, groups,
companies, surveys and satisfaction ratings (one with the docs' malformed timestamp), every
list paged with ``Link: <...>; rel="next"``, Basic auth ``key:X``, ``X-RateLimit-*`` headers
and scripted faults (429 with ``Retry-After``, 5xx, a dropped connection). With ``limits`` it
enforces the account's credits per minute and the ticket list's calls per minute on ``clock``
and answers 429 beyond them.
"""

from __future__ import annotations

import base64
import json
import math
import re
from bisect import bisect_left
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from cskpi.core.clock import Clock, SystemClock
from tests.connectors.freshdesk_desk import (
    _SHIFT,
    AGENTS,
    FIRST_AGENT,
    FIRST_COMPANY,
    FIRST_GROUP,
    GROUPS,
    SCALES,
    T0,
    TICKET_LIST,
    Desk,
    TicketData,
)
from tests.connectors.imitation import (
    Answer,
    Fault,
    Faults,
    HttpImitation,
    Logged,
    Query,
    iso,
    one,
    serve_main,
)


class FreshdeskImitation(HttpImitation):
    """The server: :meth:`start` it, use :attr:`url` as ``base_url``, :meth:`stop` it.

    ``limits`` = (account credits per minute, ticket-list calls per minute), enforced on
    ``clock``; ``page_cap`` is the last page the ticket list serves (Freshdesk: 300).
    """

    def __init__(
        self,
        tickets: int = 700,
        seed: int = 1,
        *,
        clock: Clock | None = None,
        limits: tuple[int, int] | None = None,
        page_cap: int = 300,
        api_key: str = "fd-test-key-1234",
        retry_after: int = 7,
    ) -> None:
        self.desk = Desk(tickets, seed)
        self.clock: Clock = clock or SystemClock()
        self.limits, self.page_cap, self.retry_after = limits, page_cap, retry_after
        self.accepted = "Basic " + base64.b64encode(f"{api_key}:X".encode()).decode()
        self.log: list[Logged] = []
        self.throttled = 0  # 429s the limits gave (scripted ones not counted)
        self.on_list: Callable[[int], None] | None = None
        self._lists = 0
        self._faults = Faults(exact=True)
        self._credits: list[tuple[float, int]] = []  # (time, credits) of answered requests
        self._listings: list[float] = []  # times of answered ticket-list requests
        self._texts: dict[tuple[int, frozenset[str]], tuple[tuple[int, str], str]] = {}
        self._threads: dict[int, list[str]] = {}

    def script(self, path: str, *faults: Fault) -> None:
        """The next requests to ``path`` get these faults, in
        order (``"ok"`` lets one through, to place a fault mid-stream)."""
        with self.desk.lock:
            self._faults.add(path, *faults)

    def requests_to(self, path: str) -> list[Logged]:
        with self.desk.lock:
            return [entry for entry in self.log if entry.path == path]

    def warm(self) -> None:
        """Render every ticket and conversation once, before a benchmark."""
        with self.desk.lock:
            for t in self.desk.tickets.values():
                self._ticket_text(t, frozenset(("requester", "stats")))
                self._thread_text(t)

    # --- request handling ---------------------------------------------------------------

    def respond(self, method: str, path: str, query: Query, body: Any, auth: str | None) -> Answer:
        return self.answer(path, query, auth)

    def answer(self, path: str, query: Query, auth: str | None) -> Answer:
        with self.desk.lock:
            now = self.clock.now()
            answer, cost = self._route(path, query, auth, now)
            self.log.append(Logged(now, path, query, answer.status))
            if answer.status < 400 or (answer.status == 400 and cost):
                self._credits.append((now, cost))
                if path == TICKET_LIST:
                    self._listings.append(now)
            answer.headers.update(self._quota_headers(now, cost))
            return answer

    def _route(self, path: str, query: Query, auth: str | None, now: float) -> tuple[Answer, int]:
        fault = self._faults.take(path)
        if fault is not None:
            return _fault(fault, self.retry_after), 0
        if auth != self.accepted:
            return Answer(
                401, {"code": "invalid_credentials", "message": "You have to be logged in"}
            ), 0
        cost = _cost(path, query)
        wait = self._limit_wait(now, cost, path == TICKET_LIST)
        if wait > 0:
            self.throttled += 1
            return _fault(429, wait), 0
        if path == TICKET_LIST:
            self._lists += 1
            if self.on_list is not None:
                self.on_list(self._lists)
            return self.ticket_list(query), cost
        if (found := re.fullmatch(r"/api/v2/tickets/(\d+)/conversations", path)) is not None:
            return self.conversations(int(found[1]), query), cost
        route = _ROUTES.get(path)
        if route is None:
            return Answer(404, {"code": "not_found", "message": "Not found"}), 0
        return route(self, query), cost

    def _limit_wait(self, now: float, cost: int, listing: bool) -> int:
        if self.limits is None:
            return 0
        account, per_list = self.limits
        recent = [(at, c) for at, c in self._credits if at > now - 60]
        wait = 0.0
        used = sum(c for _, c in recent)
        for at, c in recent:  # oldest first: until enough credits leave the window
            if used + cost <= account:
                break
            used -= c
            wait = at + 60 - now
        lists = [at for at in self._listings if at > now - 60]
        if listing and len(lists) >= per_list:
            wait = max(wait, lists[-per_list] + 60 - now)
        return math.ceil(wait) if wait > 0 else 0

    def _quota_headers(self, now: float, cost: int) -> dict[str, str]:
        total = self.limits[0] if self.limits else 200
        used = sum(c for at, c in self._credits[-1000:] if at > now - 60)
        return {
            "X-RateLimit-Total": str(total),
            "X-RateLimit-Remaining": str(max(total - used, 0)),
            "X-RateLimit-Used-CurrentRequest": str(cost),
        }

    # --- endpoints ----------------------------------------------------------------------

    def me(self, query: Query) -> Answer:
        return Answer(200, {"id": FIRST_AGENT, "contact": {"name": "Agent 1001"}})

    def ticket_list(self, query: Query) -> Answer:
        per_page, page = int(one(query, "per_page") or 30), int(one(query, "page") or 1)
        if per_page > 100 or page > self.page_cap:
            return Answer(
                400,
                {
                    "description": "Validation failed",
                    "errors": [
                        {
                            "field": "page",
                            "code": "invalid_value",
                            "message": "You cannot access tickets beyond the "
                            f"{self.page_cap}th page",
                        }
                    ],
                },
            )
        if one(query, "order_by") != "updated_at" or one(query, "order_type") != "asc":
            return Answer(400, {"description": "this imitation sorts by updated_at asc only"})
        since = one(query, "updated_since")
        keys = self.desk.keys[one(query, "filter") or ""]
        lo = bisect_left(keys, _unix(since) << _SHIFT) if since else 0
        include = frozenset((one(query, "include") or "").split(","))
        start = (page - 1) * per_page
        if since:
            chosen = keys[lo + start : lo + start + per_page + 1]  # one more: is there a next?
            picked = [self.desk.tickets[k & 0xFFFFFFFF] for k in chosen]
        else:  # without updated_since: tickets created in the last 30 days only
            recent = [self.desk.tickets[k & 0xFFFFFFFF] for k in keys]
            recent = [t for t in recent if t.created >= self.desk.now - 30 * 86400]
            picked = recent[start : start + per_page + 1]
        texts = [self._ticket_text(t, include) for t in picked[:per_page]]
        more = len(picked) > per_page
        return Answer(200, f"[{', '.join(texts)}]", self._link(TICKET_LIST, query, more))

    def _ticket_text(self, t: TicketData, include: frozenset[str]) -> str:
        """A ticket's JSON, cached until it changes (rendering would dominate a benchmark)."""
        key = (t.id, include)
        cached = self._texts.get(key)
        if cached is None or cached[0] != (t.updated, t.where):
            text = json.dumps(self.desk.ticket_json(t, set(include)))
            cached = self._texts[key] = ((t.updated, t.where), text)
        return cached[1]

    def conversations(self, ident: int, query: Query) -> Answer:
        t = self.desk.tickets.get(ident)
        if t is None or t.where:
            return Answer(404, {"code": "not_found"})
        return self._paged(f"/api/v2/tickets/{ident}/conversations", query, self._thread_text(t))

    def _thread_text(self, t: TicketData) -> list[str]:
        found = self._threads.get(t.id)
        if found is None:  # conversations never change
            found = self._threads[t.id] = [
                json.dumps(self.desk.conversation_json(t, c)) for c in t.conversations
            ]
        return found

    def agents(self, query: Query) -> Answer:
        found = [
            {
                "id": FIRST_AGENT + a,
                "available": True,
                "occasional": False,
                "contact": {
                    "name": f"Agent {FIRST_AGENT + a}",
                    "email": f"a{FIRST_AGENT + a}@acme.test",
                },
            }
            for a in range(AGENTS)
        ]
        return self._paged("/api/v2/agents", query, found)

    def groups(self, query: Query) -> Answer:
        found = [{"id": FIRST_GROUP + g, "name": f"Group {g + 1}"} for g in range(GROUPS)]
        return self._paged("/api/v2/groups", query, found)

    def companies(self, query: Query) -> Answer:
        found = [
            {"id": FIRST_COMPANY + c, "name": f"Company {c + 1}", "created_at": iso(T0 - c * 86400)}
            for c in range(self.desk.companies)
        ]
        return self._paged("/api/v2/companies", query, found)

    def surveys(self, query: Query) -> Answer:
        found = [
            {
                "id": survey,
                "title": f"{len(scale)}-point",
                "active": survey == 1,
                "questions": [
                    {
                        "id": "default_question",
                        "label": "How was it?",
                        "accepted_ratings": scale,
                        "default": True,
                    }
                ],
                "created_at": iso(T0),
                "updated_at": iso(T0),
            }
            for survey, scale in SCALES.items()
        ]
        return self._paged("/api/v2/surveys", query, found)

    def satisfaction_ratings(self, query: Query) -> Answer:
        since = one(query, "created_since")
        start = _unix(since) if since else 0
        found = [self.desk.rating_json(r) for r in self.desk.ratings if r.created >= start]
        return self._paged("/api/v2/surveys/satisfaction_ratings", query, found)

    def _paged(self, path: str, query: Query, items: list[Any]) -> Answer:
        """``page``/``per_page`` (at most 100) over objects, or over JSON texts."""
        per_page, page = min(int(one(query, "per_page") or 30), 100), int(one(query, "page") or 1)
        start = (page - 1) * per_page
        more = start + per_page < len(items)
        chosen = items[start : start + per_page]
        body = (
            json.dumps(chosen)
            if not chosen or not isinstance(chosen[0], str)
            else (f"[{', '.join(chosen)}]")
        )
        return Answer(200, body, self._link(path, query, more))

    def _link(self, path: str, query: Query, more: bool) -> dict[str, str]:
        if not more:
            return {}
        following = {k: v[0] for k, v in query.items()} | {
            "page": str(int(one(query, "page") or 1) + 1)
        }
        return {"Link": f'<{self.url}{path}?{urlencode(following)}>; rel="next"'}


def _cost(path: str, query: Query) -> int:
    """Credits: 1 a call; the ticket list 2 more for each ``include``."""
    if path != TICKET_LIST:
        return 1
    include = [part for part in (one(query, "include") or "").split(",") if part]
    return 1 + 2 * len(include)


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _fault(fault: Fault, retry_after: int) -> Answer:
    if fault == "drop":
        return Answer(0)
    status = int(fault)
    if status == 429:
        return Answer(
            429,
            {"code": "rate_limited", "message": "Call limit reached for this minute"},
            {"Retry-After": str(retry_after)},
        )
    return Answer(status, {"code": "service_unavailable" if status >= 500 else "bad_request"})


_ROUTES: dict[str, Callable[[FreshdeskImitation, Query], Answer]] = {
    "/api/v2/agents/me": FreshdeskImitation.me,
    "/api/v2/agents": FreshdeskImitation.agents,
    "/api/v2/groups": FreshdeskImitation.groups,
    "/api/v2/companies": FreshdeskImitation.companies,
    "/api/v2/surveys": FreshdeskImitation.surveys,
    "/api/v2/surveys/satisfaction_ratings": FreshdeskImitation.satisfaction_ratings,
}


def main() -> None:
    serve_main(__doc__, FreshdeskImitation, "tickets", 3000)


if __name__ == "__main__":
    main()
