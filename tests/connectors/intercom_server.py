"""A local imitation of the Intercom REST API (2.x) endpoints the ``intercom`` connector reads.

Tests start it on 127.0.0.1 on a free port (a ``ThreadingHTTPServer`` in a thread); the
benchmark can run it in its own process (``python -m tests.connectors.intercom_server``). The
data is generated deterministically from ``seed``: admins, teams, companies, contacts and
conversations whose parts (comments, notes, assignments, closes, reopens) follow a timeline,
with ``statistics`` computed from that same timeline as Intercom computes them.

What it imitates (shapes from ../shared/samples/intercom and the 2.16 reference):
``POST /conversations/search`` with nested AND/OR filters where ``>`` and ``<`` on dates are
inclusive ("greater (or equal)"), ``sort``, ``pagination.per_page`` (at most 150) and
``starting_after`` (base64 of ``[updated_at, id]``); ``GET /conversations/{id}`` with the 500
most recent parts; ``/admins``, ``/teams``, ``/companies/scroll`` (the same ``scroll_param``
on every page, an empty page at the end), ``/me``; Bearer auth; the rate limit enforced per
10-second window on ``clock`` with ``X-RateLimit-Limit/-Remaining/-Reset`` on every answer
and a 429 beyond it; scripted faults (429, 5xx, a dropped connection). Built-in oddities:
conversations 148-153 share one ``updated_at`` second (across the first page boundary),
conversation 42 has 620 parts, and :meth:`IntercomImitation.delete_on_fetch` makes a
conversation vanish between a search and its retrieval.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cskpi.core.clock import Clock, SystemClock
from tests.connectors.imitation import Answer, Fault, Faults, HttpImitation, Query, serve_main

T0 = 1_690_000_000  # the first conversation (2023-07-22); the data ends well before 1.7e9
SPAN = 90 * 86400
ADMINS, FIRST_ADMIN, BOT = 8, 500, 499
TEAMS, FIRST_TEAM = 3, 900
COMPANIES = 25
SAME_SECOND = range(148, 154)  # these conversations share an updated_at second
MANY_PARTS, MANY = 42, 620  # one conversation with more parts than the API returns
PARTS_SHOWN = 500
TOKEN = "ic-test-token-1234"
_CHANNELS = ("conversation",) * 5 + ("email",) * 3 + ("whatsapp", "phone_call", "facebook")


@dataclass
class Part:
    id: int
    kind: str  # part_type
    ts: int
    author: tuple[str, str]  # (type, id)
    state: str
    assigned: tuple[str, str] | None = None


@dataclass
class Conv:
    id: int
    created: int
    contact: str
    channel: str
    priority: str
    tags: list[str]
    company: int | None
    parts: list[Part] = field(default_factory=list)
    admin: int | None = None
    team: int | None = None
    state: str = "open"
    rating: tuple[int, int, str] | None = None  # (score, at, remark)
    updated: int = 0

    def stats(self) -> dict[str, Any]:
        """``statistics`` as Intercom derives them from the conversation's history."""
        first_contact = self.created
        replies = [p.ts for p in self.parts if p.kind == "comment" and p.author[0] == "admin"]
        closes = [p.ts for p in self.parts if p.kind == "close"]
        assigns = [p.ts for p in self.parts if p.kind == "assignment"]
        customer = [p.ts for p in self.parts if p.author[0] == "user"]
        last_close = closes[-1] if closes else None
        return {
            "type": "conversation_statistics",
            "time_to_assignment": assigns[0] - self.created if assigns else None,
            "time_to_admin_reply": replies[0] - first_contact if replies else None,
            "time_to_first_close": closes[0] - first_contact if closes else None,
            "time_to_last_close": last_close - first_contact if last_close else None,
            "median_time_to_reply": None,
            "first_contact_reply_at": first_contact,
            "first_assignment_at": assigns[0] if assigns else None,
            "first_admin_reply_at": replies[0] if replies else None,
            "first_close_at": closes[0] if closes else None,
            "last_assignment_at": assigns[-1] if assigns else None,
            "last_assignment_admin_reply_at": None,
            "last_contact_reply_at": customer[-1] if customer else first_contact,
            "last_admin_reply_at": replies[-1] if replies else None,
            "last_close_at": last_close,
            "last_closed_by_id": None,
            "count_reopens": sum(1 for p in self.parts if p.kind == "open"),
            "count_assignments": len(assigns),
            "count_conversation_parts": len(self.parts) + 1,
        }


class _Timeline:
    """One conversation's parts, from its own random stream."""

    def __init__(self, c: Conv, r: random.Random) -> None:
        self.c, self.r, self.ts = c, r, c.created

    def add(self, kind: str, author: tuple[str, str], delay: int, **extra: Any) -> None:
        self.ts += max(1, delay)
        state = {"close": "closed", "open": "open", "snoozed": "snoozed"}.get(kind, self.c.state)
        self.c.state = state
        self.c.parts.append(
            Part(self.c.id * 1000 + len(self.c.parts), kind, self.ts, author, state, **extra)
        )

    def build(self, parts: int = 0) -> None:
        c, r = self.c, self.r
        admin = ("admin", str(FIRST_ADMIN + r.randrange(ADMINS)))
        if r.random() < 0.3:
            self.add("comment", ("bot", str(BOT)), 2)
        if r.random() < 0.1:
            return  # nobody answered yet
        c.team, c.admin = FIRST_TEAM + r.randrange(TEAMS), int(admin[1])
        self.add(
            "assignment", ("bot", str(BOT)), r.randrange(5, 300), assigned=("team", str(c.team))
        )
        if r.random() < 0.2:
            self.add("note", admin, r.randrange(30, 600))
        for _ in range(r.choice((1, 1, 2, 3))):
            self.add("comment", admin, r.randrange(60, 6 * 3600))
            self.add("comment", ("user", c.contact), r.randrange(60, 86400))
        for _ in range(parts):  # a long chat
            self.add("comment", admin if len(c.parts) % 2 else ("user", c.contact), 30)
        if r.random() < 0.8:
            self.add("close", admin, r.randrange(60, 3600))
            if r.random() < 0.15:
                self.add("open", ("user", c.contact), r.randrange(600, 86400))
                self.add("comment", admin, r.randrange(60, 3600))
                self.add("close", admin, r.randrange(60, 3600))
        elif r.random() < 0.3:
            self.add("snoozed", admin, 60)
        if c.state == "closed" and r.random() < 0.4:
            c.rating = (r.choice((1, 3, 4, 5, 5, 5)), self.ts + 600, r.choice(("", "thanks!")))


class Workspace:
    """The workspace's data; every access holds ``lock``."""

    def __init__(self, conversations: int, seed: int) -> None:
        self.lock = threading.RLock()
        self.version = 0  # bumped by every change
        self.contacts = max(10, conversations // 3)
        self.now = T0 + SPAN + 86400  # the data's present: later changes happen after it
        self.convs: dict[int, Conv] = {}
        for i in range(1, conversations + 1):
            self.convs[i] = self._generate(i, seed, conversations)
        for i in SAME_SECOND:
            if i in self.convs:
                self.convs[i].updated = self.convs[SAME_SECOND[0]].updated
        self.order: list[tuple[int, int]] = sorted((c.updated, c.id) for c in self.convs.values())
        self.now = max(self.now, self.order[-1][0] + 3600)

    def _generate(self, i: int, seed: int, n: int) -> Conv:
        r = random.Random(f"intercom:{seed}:{i}")
        contact = f"c{r.randrange(self.contacts):06d}"
        c = Conv(
            i,
            T0 + (i - 1) * SPAN // n + r.randrange(60),
            contact,
            r.choice(_CHANNELS),
            r.choice(("none", "none", "none", "low", "medium", "high", "urgent")),
            sorted(set(r.sample(("billing", "bug", "login", "vip", "escalated"), r.randrange(3)))),
            r.randrange(COMPANIES) if r.random() < 0.7 else None,
        )
        _Timeline(c, r).build(MANY if i == MANY_PARTS else 0)
        last = c.rating[1] if c.rating else 0
        c.updated = max(last, c.parts[-1].ts if c.parts else c.created)
        return c

    def touch(self, ids: list[int], **fields: Any) -> None:
        """A teammate changes these conversations: a note each, and the given fields."""
        with self.lock:
            for ident in ids:
                c = self.convs[ident]
                self.now += 60
                for name, value in fields.items():
                    setattr(c, name, value)
                c.parts.append(
                    Part(
                        ident * 1000 + len(c.parts),
                        "note",
                        self.now,
                        ("admin", str(FIRST_ADMIN)),
                        c.state,
                    )
                )
                self.order.remove((c.updated, c.id))
                c.updated = self.now
                self.order.append((c.updated, c.id))
            self.order.sort()
            self.version += 1

    def delete(self, ident: int) -> None:
        with self.lock:
            c = self.convs.pop(ident)
            self.order.remove((c.updated, c.id))
            self.version += 1

    def part_count(self) -> int:
        """Messages the connector stores: the opening message plus comments and notes shown."""
        shown = (c.parts[-PARTS_SHOWN:] for c in self.convs.values())
        return sum(1 + sum(p.kind in ("comment", "note") for p in ps) for ps in shown)


def conversation_json(c: Conv, parts: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": "conversation",
        "id": str(c.id),
        "title": None,
        "created_at": c.created,
        "updated_at": c.updated,
        "waiting_since": None,
        "snoozed_until": None,
        "source": {
            "type": c.channel,
            "id": str(c.id + 400_000_000),
            "delivered_as": "customer_initiated",
            "subject": "",
            "body": "<p>Hi, I have a question</p>",
            "author": {
                "type": "user",
                "id": c.contact,
                "name": f"Contact {c.contact}",
                "email": f"{c.contact}@customer.test",
            },
            "attachments": [],
            "url": None,
            "redacted": False,
        },
        "contacts": {
            "type": "contact.list",
            "contacts": [{"type": "contact", "id": c.contact, "external_id": None}],
        },
        "first_contact_reply": {"created_at": c.created, "type": "conversation", "url": None},
        "admin_assignee_id": c.admin,
        "team_assignee_id": c.team,
        "open": c.state != "closed",
        "state": c.state,
        "read": True,
        "priority": c.priority,
        "company": None if c.company is None else {"type": "company", "id": f"co{c.company}"},
        "tags": {
            "type": "tag.list",
            "tags": [{"type": "tag", "id": str(abs(hash(t)) % 10**6), "name": t} for t in c.tags],
        },
        "sla_applied": None,
        "statistics": c.stats(),
        "teammates": None,
        "conversation_rating": None
        if c.rating is None
        else {
            "rating": c.rating[0],
            "remark": c.rating[2],
            "created_at": c.rating[1] - 300,
            "updated_at": c.rating[1],
            "contact": {"type": "contact", "id": c.contact},
            "teammate": {"type": "admin", "id": str(c.admin)},
        },
        "custom_attributes": {},
        "ai_agent_participated": False,
    }
    if parts:
        shown = c.parts[-PARTS_SHOWN:]
        found["conversation_parts"] = {
            "type": "conversation_part.list",
            "conversation_parts": [_part_json(p) for p in shown],
            "total_count": len(c.parts),
        }
    return found


def _part_json(p: Part) -> dict[str, Any]:
    kind, ident = p.author
    return {
        "type": "conversation_part",
        "id": str(p.id),
        "part_type": p.kind,
        "body": None,
        "created_at": p.ts,
        "updated_at": p.ts,
        "notified_at": p.ts,
        "assigned_to": None if p.assigned is None else {"type": p.assigned[0], "id": p.assigned[1]},
        "author": {
            "type": kind,
            "id": ident,
            "name": f"{kind} {ident}",
            "email": f"{ident}@customer.test" if kind == "user" else f"{ident}@acme.test",
        },
        "attachments": [],
        "external_id": None,
        "redacted": False,
        "state": p.state,
    }


def starting_after(updated: int, ident: int) -> str:
    return base64.b64encode(json.dumps([float(updated), str(ident)]).encode()).decode()


def matches(c: Conv, query: dict[str, Any]) -> bool:
    """A search filter as Intercom evaluates it: ``>``/``<`` inclusive on dates."""
    if "field" not in query:
        found = (matches(c, q) for q in query["value"])
        return all(found) if query["operator"] == "AND" else any(found)
    assert query["field"] == "updated_at", query
    value, op = int(query["value"]), query["operator"]
    ops: dict[str, Callable[[int, int], bool]] = {
        ">": int.__ge__,
        "<": int.__le__,
        "=": int.__eq__,
        "!=": int.__ne__,
    }
    return ops[op](c.updated, value)


@dataclass(frozen=True)
class Logged:
    at: float  # the clock's wall time
    method: str
    path: str
    body: Any
    status: int


class IntercomImitation(HttpImitation):
    """The server: :meth:`start` it, use :attr:`url` as ``base_url``, :meth:`stop` it.
    ``limit`` is the requests per 10-second window (Intercom's 1,000/min is 167)."""

    methods: ClassVar[frozenset[str]] = frozenset({"GET", "POST"})

    def __init__(
        self,
        conversations: int = 600,
        seed: int = 1,
        *,
        clock: Clock | None = None,
        limit: int | None = None,
        token: str = TOKEN,
    ) -> None:
        self.ws = Workspace(conversations, seed)
        self.clock: Clock = clock or SystemClock()
        self.limit, self.token = limit, token
        self.log: list[Logged] = []
        self.throttled = 0  # 429s the limit gave (scripted ones not counted)
        self._faults = Faults()
        self._vanishing: set[int] = set()
        self._window: tuple[int, int] = (0, 0)  # (window start, requests served in it)
        self._texts: dict[int, tuple[int, str]] = {}
        self._found: tuple[tuple[str, int], list[tuple[int, int]]] = (("", -1), [])

    def script(self, path_prefix: str, *faults: Fault) -> None:
        """The next requests whose path starts with ``path_prefix`` get these faults."""
        with self.ws.lock:
            self._faults.add(path_prefix, *faults)

    def delete_on_fetch(self, ident: int) -> None:
        """Search still lists the conversation; its retrieval finds it deleted."""
        with self.ws.lock:
            self._vanishing.add(ident)

    def fetched(self) -> list[int]:
        """Conversation ids retrieved with success, in order."""
        with self.ws.lock:
            return [
                int(e.path.rsplit("/", 1)[1])
                for e in self.log
                if e.path.startswith("/conversations/") and e.method == "GET" and e.status == 200
            ]

    def warm(self) -> None:
        with self.ws.lock:
            for c in self.ws.convs.values():
                self._text(c)

    # --- request handling ---------------------------------------------------------------

    def respond(self, method: str, path: str, query: Query, body: Any, auth: str | None) -> Answer:
        with self.ws.lock:
            wall = self.clock.wall()
            answer = self._route(method, path, query, body, auth, wall)
            self.log.append(Logged(wall, method, path, body, answer.status))
            return answer

    def _route(
        self,
        method: str,
        path: str,
        query: Query,
        body: Any,
        auth: str | None,
        wall: float,
    ) -> Answer:
        fault = self._faults.take(path)
        if fault == "drop":
            return Answer(0)
        if fault is not None:
            return self._limited(Answer(int(fault), _error(int(fault))), wall, False)
        if auth != f"Bearer {self.token}":
            return Answer(401, _error(401))
        start, used = self._window
        window = int(wall) // 10 * 10
        used = used if window == start else 0
        if self.limit is not None and used >= self.limit:
            self.throttled += 1
            return self._limited(Answer(429, _error(429)), wall, False)
        self._window = (window, used + 1)
        return self._limited(self._dispatch(method, path, query, body), wall, True)

    def _limited(self, answer: Answer, wall: float, counted: bool) -> Answer:
        limit = self.limit or 1667
        window, used = self._window
        if int(wall) // 10 * 10 != window:
            used = 0
        answer.headers.update(
            {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(limit - used, 0)),
                "X-RateLimit-Reset": str(int(wall) // 10 * 10 + 10),
            }
        )
        return answer

    def _dispatch(self, method: str, path: str, query: Query, body: Any) -> Answer:
        if method == "POST" and path == "/conversations/search":
            return self.search(body)
        if method == "GET" and path.startswith("/conversations/"):
            return self.conversation(path.rsplit("/", 1)[1])
        route = _ROUTES.get(path) if method == "GET" else None
        if route is None:
            return Answer(404, _error(404))
        return route(self, query)

    # --- endpoints ----------------------------------------------------------------------

    def search(self, body: Any) -> Answer:
        paging = body.get("pagination") or {}
        per_page = int(paging.get("per_page") or 20)
        if per_page > 150 or body.get("sort") != {"field": "updated_at", "order": "ascending"}:
            return Answer(400, _error(400))
        found = self._matching(body["query"])
        after = paging.get("starting_after")
        lo = 0
        if after:
            stamp, ident = json.loads(base64.b64decode(after))
            lo = bisect_right(found, (int(stamp), int(ident)))
        page, rest = found[lo : lo + per_page], len(found) - lo
        pages: dict[str, Any] = {
            "type": "pages",
            "page": 1,
            "per_page": per_page,
            "total_pages": max(1, -(-len(found) // per_page)),
        }
        if rest > per_page:
            pages["next"] = {"page": 2, "starting_after": starting_after(*page[-1])}
        items = [conversation_json(self.ws.convs[k[1]], False) for k in page]
        return Answer(
            200,
            {
                "type": "conversation.list",
                "conversations": items,
                "total_count": len(found),
                "pages": pages,
            },
        )

    def _matching(self, query: dict[str, Any]) -> list[tuple[int, int]]:
        """(updated_at, id) of the matches, sorted; kept while nothing changes (a search
        pages through the same query)."""
        key = (json.dumps(query, sort_keys=True), self.ws.version)
        if self._found[0] != key:
            found = [k for k in self.ws.order if matches(self.ws.convs[k[1]], query)]
            self._found = (key, found)
        return self._found[1]

    def conversation(self, ident: str) -> Answer:
        c = self.ws.convs.get(int(ident)) if ident.isdigit() else None
        if c is not None and c.id in self._vanishing:
            self.ws.delete(c.id)
            c = None
        if c is None:
            return Answer(
                404,
                {
                    "type": "error.list",
                    "errors": [
                        {"code": "not_found", "message": "Conversation not found. Message deleted."}
                    ],
                },
            )
        return Answer(200, self._text(c))

    def _text(self, c: Conv) -> str:
        cached = self._texts.get(c.id)
        if cached is None or cached[0] != c.updated:
            cached = self._texts[c.id] = (c.updated, json.dumps(conversation_json(c, True)))
        return cached[1]

    def me(self, query: Query) -> Answer:
        return Answer(200, {"type": "admin", "id": str(FIRST_ADMIN), "email": "ops@acme.test"})

    def admins(self, query: Query) -> Answer:
        staff = [
            {
                "type": "admin",
                "id": str(FIRST_ADMIN + a),
                "name": f"Admin {a}",
                "email": f"admin{a}@acme.test",
                "team_ids": [],
            }
            for a in range(ADMINS)
        ]
        bot = {
            "type": "admin",
            "id": str(BOT),
            "name": "Operator",
            "email": "operator+acme@intercom.io",
            "team_ids": [],
        }
        return Answer(200, {"type": "admin.list", "admins": [*staff, bot]})

    def teams(self, query: Query) -> Answer:
        found = [
            {"type": "team", "id": str(FIRST_TEAM + t), "name": f"Team {t}", "admin_ids": []}
            for t in range(TEAMS)
        ]
        return Answer(200, {"type": "team.list", "teams": found})

    def companies(self, query: Query) -> Answer:
        """10 a page; the same scroll_param throughout, then an empty page."""
        param = (query.get("scroll_param") or [""])[0]
        lo = 0 if not param else int(param.split("-")[1])
        found = [
            {
                "type": "company",
                "id": f"co{k}",
                "name": f"Company {k}",
                "created_at": T0 - k * 86400,
            }
            for k in range(lo, min(lo + 10, COMPANIES))
        ]
        # the real scroll_param stays the same; here the offset rides along to stay stateless
        return Answer(
            200,
            {
                "type": "list",
                "data": found,
                "pages": None,
                "total_count": None,
                "scroll_param": f"scroll-{lo + 10}",
            },
        )


def _error(status: int) -> dict[str, Any]:
    code = {401: "unauthorized", 404: "not_found", 429: "rate_limit_exceeded"}.get(status)
    return {"type": "error.list", "errors": [{"code": code or "server_error", "message": "x"}]}


_ROUTES: dict[str, Callable[[IntercomImitation, Query], Answer]] = {
    "/me": IntercomImitation.me,
    "/admins": IntercomImitation.admins,
    "/teams": IntercomImitation.teams,
    "/companies/scroll": IntercomImitation.companies,
}


def main() -> None:
    serve_main(__doc__, IntercomImitation, "conversations", 600)


if __name__ == "__main__":
    main()
