"""A local imitation of the Freshdesk API v2 endpoints the ``freshdesk`` connector reads.

Tests start it on 127.0.0.1 on a free port (a ``ThreadingHTTPServer`` in a thread); the
benchmark can run it in its own process (``python -m tests.connectors.freshdesk_server``). The
data is generated deterministically from ``seed``: agents, groups, companies, customers, and
tickets whose conversations, resolutions, reopens and closes follow a timeline, with ``stats``
computed from that same timeline. A run of tickets shares one ``updated_at`` second (a bulk
update), more than a page holds. Tests change it through :meth:`Desk.change_tickets`,
:meth:`Desk.delete_ticket` and :attr:`FreshdeskImitation.on_list` (called on every ticket-list
request, to change tickets while a sync reads the list).

What it imitates (shapes from ../shared/samples/freshdesk and https://developers.freshdesk.com/api/):
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
import random
import re
import threading
from array import array
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from cskpi.core.clock import Clock, SystemClock
from tests.connectors.imitation import (
    Answer,
    Fault,
    Faults,
    HttpImitation,
    Query,
    iso,
    one,
    serve_main,
)

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z: the first ticket
SPAN = 120 * 86400
NOW = T0 + SPAN + 10 * 86400
CLOSE_AFTER = 4 * 86400
FIRST_AGENT, AGENTS = 1001, 12
FIRST_GROUP, GROUPS = 2000, 4
FIRST_COMPANY, FIRST_CUSTOMER = 3000, 100_000
DELETED, SPAM = (5, 6), (9,)  # ticket ids in the trash and in spam
TIE = range(50, 171)  # tickets a bulk update gave one updated_at second: more than a page
MALFORMED_RATING_TICKET = 40  # its rating carries the docs' "2015-08-28T010:08:16Z" shape
SCALES = {
    1: [-103, 100, 103],
    2: [-103, -102, 100, 102, 103],
    3: [-103, -102, -101, 100, 101, 102, 103],
}
_SHIFT = 32
_SOURCES = (1, 1, 1, 1, 2, 2, 3, 7, 7, 9, 10)
_TAGS = ("billing", "bug", "login", "refund", "shipping", "escalated", "vip")


@dataclass
class Conversation:
    id: int
    ts: int
    user: int
    incoming: bool
    private: bool


@dataclass
class RatingData:
    id: int
    ticket: int
    survey: int
    code: int
    agent: int | None
    group: int | None
    created: int


@dataclass
class TicketData:
    id: int
    created: int
    requester: int
    source: int
    priority: int
    type: str | None
    tags: list[str]
    company: int | None
    group: int | None = None
    responder: int | None = None
    status: int = 2
    conversations: list[Conversation] = field(default_factory=list)
    first_reply: int | None = None
    resolved: int | None = None
    reopened: int | None = None
    closed: int | None = None
    updated: int = 0
    where: str = ""  # "", "deleted" or "spam"

    def public_agent_replies(self) -> list[Conversation]:
        return [c for c in self.conversations if not c.incoming and not c.private]


@dataclass(frozen=True)
class Logged:
    at: float
    path: str
    query: Query
    status: int


class _Timeline:
    def __init__(self, t: TicketData, r: random.Random) -> None:
        self.t, self.r, self.ts = t, r, t.created

    def add(self, delay: int, user: int, incoming: bool, private: bool = False) -> None:
        self.ts += max(1, delay)
        k = len(self.t.conversations)
        self.t.conversations.append(
            Conversation(self.t.id * 100 + k, self.ts, user, incoming, private)
        )

    def build(self) -> None:
        t, r = self.t, self.r
        if r.random() < 0.1:  # nobody has answered yet
            t.status = 6 if r.random() < 0.5 else 2  # 6: a custom status
            return
        t.group, t.responder = FIRST_GROUP + r.randrange(GROUPS), FIRST_AGENT + r.randrange(AGENTS)
        if r.random() < 0.2:
            self.add(r.randrange(30, 600), t.responder, False, private=True)
        self.add(int(r.lognormvariate(math.log(4 * 3600), 1.0)), t.responder, False)
        t.first_reply = self.ts
        for _ in range(r.choice((0, 0, 1, 2))):
            self.add(r.randrange(600, 86400), t.requester, True)
            self.add(r.randrange(600, 86400), t.responder, False)
        if r.random() < 0.85:
            self._resolve()
        else:
            t.status = 3

    def _resolve(self) -> None:
        t, r = self.t, self.r
        self.ts += r.randrange(60, 86400)
        t.resolved = self.ts
        if r.random() < 0.12:  # the customer writes back: a reopen, then a second resolution
            self.add(r.randrange(3600, 86400), t.requester, True)
            t.reopened = self.ts
            self.add(r.randrange(600, 7200), t.responder or FIRST_AGENT, False)
            self.ts += 60
            t.resolved = self.ts
        t.status = 4
        if t.resolved + CLOSE_AFTER <= NOW:
            t.status, t.closed = 5, t.resolved + CLOSE_AFTER


class Desk:
    """The account's data and its indexes; every access holds ``lock``."""

    def __init__(self, tickets: int, seed: int) -> None:
        self.lock = threading.RLock()
        self.n, self.seed, self.now = tickets, seed, NOW
        self.customers = max(10, tickets // 2)
        self.companies = max(3, tickets // 50)
        self.tickets: dict[int, TicketData] = {}
        self.ratings: list[RatingData] = []
        for i in range(tickets):
            self._generate(i)
        if MALFORMED_RATING_TICKET in self.tickets and not any(
            r.ticket == MALFORMED_RATING_TICKET for r in self.ratings
        ):
            t = self.tickets[MALFORMED_RATING_TICKET]
            self.ratings.append(RatingData(t.id * 10, t.id, 1, 103, t.responder, t.group, NOW))
        tied = [self.tickets[i] for i in TIE if i in self.tickets]
        bulk = max((t.updated for t in tied), default=0) + 1
        for t in tied:
            t.updated = bulk
        for ident in (*DELETED, *SPAM):
            if ident in self.tickets:
                self.tickets[ident].where = "deleted" if ident in DELETED else "spam"
        self.keys: dict[str, array[int]] = {
            "": array("q"),
            "deleted": array("q"),
            "spam": array("q"),
        }
        for t in sorted(self.tickets.values(), key=lambda t: (t.updated, t.id)):
            self.keys[t.where].append(t.updated << _SHIFT | t.id)

    def _generate(self, i: int) -> None:
        r = random.Random(f"freshdesk:{self.seed}:{i}")
        requester = FIRST_CUSTOMER + int(self.customers * r.random() ** 2)
        t = TicketData(
            id=i + 1,
            created=T0 + i * SPAN // self.n + r.randrange(600),
            requester=requester,
            source=r.choice(_SOURCES),
            priority=r.choice((1, 2, 2, 3, 4)),
            type=r.choice(("Question", "Incident", "Problem", None)),
            tags=sorted(set(r.sample(_TAGS, r.choice((0, 1, 1, 2))))),
            company=FIRST_COMPANY + requester % self.companies if requester % 3 else None,
        )
        _Timeline(t, r).build()
        t.updated = max(
            [t.created, *(c.ts for c in t.conversations), t.resolved or 0, t.closed or 0]
        )
        self.tickets[t.id] = t
        if t.resolved and r.random() < 0.35:
            survey = r.choice((1, 1, 2, 3))
            code = r.choice(SCALES[survey])
            created = t.resolved + r.randrange(600, 86400)
            self.ratings.append(
                RatingData(t.id * 10, t.id, survey, code, t.responder, t.group, created)
            )

    # --- changes a test makes ---------------------------------------------------------

    def change_tickets(self, ids: Iterable[int], **fields: Any) -> None:
        """Change fields (priority, tags, status...) of tickets, as an agent would."""
        with self.lock:
            for ident in ids:
                t = self.tickets[ident]
                for name, value in fields.items():
                    setattr(t, name, value)
                self._touch(t, t.where)

    def delete_ticket(self, ident: int) -> None:
        with self.lock:
            self._touch(self.tickets[ident], "deleted")

    def _touch(self, t: TicketData, where: str) -> None:
        keys = self.keys[t.where]
        del keys[bisect_left(keys, t.updated << _SHIFT | t.id)]
        self.now += 60
        t.updated, t.where = self.now, where
        insort(self.keys[where], t.updated << _SHIFT | t.id)

    # --- what the API shows -----------------------------------------------------------

    def listed(self) -> list[TicketData]:
        return [t for t in self.tickets.values() if not t.where]

    def ticket_json(self, t: TicketData, include: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = {
            "cc_emails": [],
            "fwd_emails": [],
            "reply_cc_emails": [],
            "ticket_cc_emails": [],
            "fr_escalated": False,
            "spam": t.where == "spam",
            "email_config_id": None,
            "group_id": t.group,
            "priority": t.priority,
            "requester_id": t.requester,
            "responder_id": t.responder,
            "source": t.source,
            "company_id": t.company,
            "status": t.status,
            "subject": f"Ticket {t.id}",
            "association_type": None,
            "support_email": None,
            "to_emails": None,
            "product_id": None,
            "id": t.id,
            "type": t.type,
            "due_by": iso(t.created + 3 * 86400),
            "fr_due_by": iso(t.created + 86400),
            "is_escalated": False,
            "custom_fields": {},
            "created_at": iso(t.created),
            "updated_at": iso(t.updated),
            "tags": list(t.tags),
            "structured_description": None,
            "nr_due_by": None,
            "nr_escalated": False,
        }
        if t.where == "deleted":
            found["deleted"] = True
        if "requester" in include:
            found["requester"] = {
                "id": t.requester,
                "name": f"Customer {t.requester}",
                "email": f"c{t.requester}@example.test",
                "mobile": None,
                "phone": None,
            }
        if "stats" in include:
            found["stats"] = self.stats_json(t)
        return found

    def stats_json(self, t: TicketData) -> dict[str, Any]:
        last = t.conversations[-1] if t.conversations else None
        status_at = t.closed or t.resolved or (last.ts if last else t.created)
        return {
            "agent_responded_at": _iso(t.first_reply),
            "requester_responded_at": None,
            "first_responded_at": _iso(t.first_reply),
            "status_updated_at": iso(status_at),
            "reopened_at": _iso(t.reopened),
            "resolved_at": _iso(t.resolved),
            "closed_at": _iso(t.closed),
            "pending_since": None,
        }

    def conversation_json(self, t: TicketData, c: Conversation) -> dict[str, Any]:
        return {
            "body": "<div>Thanks!</div>",
            "body_text": "Thanks!",
            "id": c.id,
            "incoming": c.incoming,
            "private": c.private,
            "user_id": c.user,
            "support_email": None,
            "source": 2 if c.private else 0,
            "category": 2,
            "ticket_id": t.id,
            "to_emails": [],
            "from_email": None,
            "cc_emails": [],
            "bcc_emails": [],
            "created_at": iso(c.ts),
            "updated_at": iso(c.ts),
            "attachments": [],
        }

    def rating_json(self, rating: RatingData) -> dict[str, Any]:
        created = iso(rating.created)
        if rating.ticket == MALFORMED_RATING_TICKET:  # "T09:..." written as "T009:..."
            created = created.replace("T", "T0")
        return {
            "id": rating.id,
            "survey_id": rating.survey,
            "user_id": None,
            "agent_id": rating.agent,
            "feedback": "Thanks",
            "group_id": rating.group,
            "ticket_id": rating.ticket,
            "ratings": {"default_question": rating.code},
            "created_at": created,
            "updated_at": created,
        }


def _iso(ts: int | None) -> str | None:
    return None if ts is None else iso(ts)


TICKET_LIST = "/api/v2/tickets"


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
