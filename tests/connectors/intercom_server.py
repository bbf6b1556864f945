"""A local imitation of the Intercom REST API (2.x) endpoints the ``intercom`` connector reads.

Tests start it on 127.0.0.1 on a free port (a ``ThreadingHTTPServer`` in a thread); the
benchmark can run it in its own process (``python -m tests.connectors.intercom_server``). The
data is generated deterministically from ``seed``: admins, teams, companies, contacts and
conversations whose parts (comments, notes, assignments, closes, reopens) follow a timeline,
with ``statistics`` computed from that same timeline as Intercom computes them.

What it imitates (shapes from tests/samples/intercom and the 2.16 reference):
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
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, ClassVar

from cskpi.core.clock import Clock, SystemClock
from tests.connectors.imitation import Answer, Fault, Faults, HttpImitation, Query, serve_main
from tests.connectors.intercom_desk import (
    ADMINS,
    BOT,
    COMPANIES,
    FIRST_ADMIN,
    FIRST_TEAM,
    T0,
    TEAMS,
    TOKEN,
    Conv,
    Logged,
    Workspace,
    conversation_json,
    matches,
    starting_after,
)


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
