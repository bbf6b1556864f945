"""A local imitation of the Zendesk Support endpoints the ``zendesk`` connector reads.

Tests start it on 127.0.0.1 on a free port (a ``ThreadingHTTPServer`` in a thread); the
benchmark can run it in its own process (``python -m tests.connectors.zendesk_server``). The
data is generated deterministically from ``seed``: agents, groups, organizations, customers,
and tickets whose comments, solves, reopens and closes follow a timeline, with metric sets and
ticket events computed from that same timeline, as Zendesk computes them. Tests change it
through :meth:`ZendeskImitation.change_tickets` and :meth:`ZendeskImitation.delete_ticket`.

What it imitates (shapes from tests/samples/zendesk and the API reference):
cursor exports (``after_cursor`` = base64 ``"<generated_timestamp>.0||<id>|"``, kept at
``end_of_stream``), the time-based ticket events export (``end_time``, every event of the
last second on the same page, ``include=comment_events``), cursor pagination for lists
(``page[size]``, ``page[after]``, ``meta``, ``links``), account rate-limit headers, basic and
bearer auth, and scripted faults (429 with ``Retry-After``, 5xx, a dropped connection). With
``export_limit`` it enforces the incremental endpoints' requests-per-minute on ``clock``.
"""

from __future__ import annotations

import base64
import json
import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from typing import Any

from cskpi.core.clock import Clock, SystemClock
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
from tests.connectors.zendesk_desk import (
    _EXPORTS,
    _ID_SHIFT,
    ADMIN,
    FIRST_GROUP,
    FIRST_ORG,
    GROUPS,
    T0,
    Desk,
    Rating,
    TicketData,
    _cursor_key,
    export_cursor,
)


class ZendeskImitation(HttpImitation):
    """The server: :meth:`start` it, use :attr:`url` as ``base_url``, :meth:`stop` it."""

    def __init__(
        self,
        tickets: int = 3000,
        seed: int = 1,
        *,
        clock: Clock | None = None,
        export_limit: int | None = None,
        email: str = "ops@acme.test",
        token: str = "zd-test-token-1234",
        retry_after: int = 7,
        bad_created: Iterable[int] = (17,),
    ) -> None:
        self.desk = Desk(tickets, seed, bad_created)
        self.clock: Clock = clock or SystemClock()
        self.export_limit, self.retry_after = export_limit, retry_after
        self.accepted = {
            "Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode(),
            f"Bearer {token}",
        }
        self.log: list[Logged] = []
        self.throttled = 0  # 429s the export limit gave (scripted ones not counted)
        self._faults = Faults()
        self._served: list[tuple[float, bool]] = []  # (time, an export?) of answered requests
        self._texts: dict[tuple[int, bool], tuple[int, str]] = {}
        self._rated: dict[tuple[int, bool], list[Rating]] = {}  # ratings never change

    def script(self, path_prefix: str, *faults: Fault) -> None:
        """The next requests whose path starts with ``path_prefix`` get these faults, in
        order (``"ok"`` lets one through, to place a fault mid-stream)."""
        with self.desk.lock:
            self._faults.add(path_prefix, *faults)

    def requests_to(self, prefix: str) -> list[Logged]:
        with self.desk.lock:
            return [entry for entry in self.log if entry.path.startswith(prefix)]

    # --- request handling ---------------------------------------------------------------

    def respond(self, method: str, path: str, query: Query, body: Any, auth: str | None) -> Answer:
        return self.answer(path, query, auth)

    def answer(self, path: str, query: Query, auth: str | None) -> Answer:
        with self.desk.lock:
            now = self.clock.now()
            answer = self._route(path, query, auth, now)
            self.log.append(Logged(now, path, query, answer.status))
            if answer.status < 400:
                self._served.append((now, path.startswith(_EXPORTS)))
            answer.headers.update(self._quota_headers(now))
            return answer

    def _route(self, path: str, query: Query, auth: str | None, now: float) -> Answer:
        fault = self._faults.take(path)
        if fault is not None:
            return _fault(fault, self.retry_after)
        if auth not in self.accepted:
            return Answer(401, {"error": "Couldn't authenticate you"})
        wait = self._export_wait(now) if path.startswith(_EXPORTS) else 0
        if wait > 0:
            self.throttled += 1
            return _fault(429, wait)
        route = _ROUTES.get(path)
        if route is None:
            return Answer(404, {"error": "InvalidEndpoint", "description": "Not found"})
        return route(self, query)

    def _export_wait(self, now: float) -> int:
        """Seconds until an export request fits the limit again; 0 if it fits now."""
        if self.export_limit is None:
            return 0
        recent = [at for at, export in self._served if export and at > now - 60]
        if len(recent) < self.export_limit:
            return 0
        return math.ceil(recent[-self.export_limit] + 60 - now)

    def _quota_headers(self, now: float) -> dict[str, str]:
        used = sum(1 for at, _ in self._served[-700:] if at > now - 60)
        remaining, reset = str(max(700 - used, 0)), str(60 - int(now) % 60)
        return {
            "x-rate-limit": "700", "x-rate-limit-remaining": remaining,
            "ratelimit-limit": "700", "ratelimit-remaining": remaining, "ratelimit-reset": reset,
        }  # fmt: skip

    # --- endpoints ----------------------------------------------------------------------

    def me(self, query: Query) -> Answer:
        return Answer(200, {"user": {"id": ADMIN, "name": "User 1000", "role": "admin"}})

    def ticket_export(self, query: Query) -> Answer:
        metrics = "metric_sets" in (one(query, "include") or "")

        def render(key: int) -> str:
            return self._ticket_text(self.desk.tickets[key & 0xFFFFFFFF], metrics)

        return self._cursor_export(query, self.desk.ticket_keys, "tickets", render)

    def _ticket_text(self, t: TicketData, metrics: bool) -> str:
        """A ticket's JSON, cached until it changes (rendering would dominate a benchmark)."""
        cached = self._texts.get((t.id, metrics))
        if cached is None or cached[0] != t.gts:
            found = self.desk.ticket_json(t, self.url)
            if not metrics:
                found.pop("metric_set", None)
            cached = self._texts[(t.id, metrics)] = (t.gts, json.dumps(found))
        return cached[1]

    def _event_text(self, audit_id: int) -> str:
        cached = self._texts.get((-audit_id, True))  # events never change
        if cached is None:
            cached = self._texts[(-audit_id, True)] = (
                0,
                json.dumps(self.desk.event_json(audit_id)),
            )
        return cached[1]

    def warm(self) -> None:
        """Render every ticket (with metric sets) and event once, before a benchmark."""
        with self.desk.lock:
            for t in self.desk.tickets.values():
                self._ticket_text(t, True)
            for key in self.desk.event_keys:
                self._event_text(key & 0xFFFFFFFF)

    def user_export(self, query: Query) -> Answer:
        def render(key: int) -> str:
            user = self.desk.users[key & 0xFFFFFFFF]
            return json.dumps({k: v for k, v in user.items() if k != "_key"})

        return self._cursor_export(query, self.desk.user_keys, "users", render)

    def _cursor_export(
        self, query: Query, keys: array[int], name: str, render: Callable[[int], str]
    ) -> Answer:
        per_page = int(one(query, "per_page") or 1000)
        cursor, start = one(query, "cursor"), one(query, "start_time")
        if per_page > 1000 or (cursor is None and start is None):
            return Answer(400, {"error": "InvalidPaginationParameter"})
        lo = (
            bisect_right(keys, _cursor_key(cursor))
            if cursor
            else bisect_left(keys, int(start or 0) << _ID_SHIFT)
        )
        page = keys[lo : lo + per_page]
        after = export_cursor(page[-1] >> _ID_SHIFT, page[-1] & 0xFFFFFFFF) if page else cursor
        return _joined(name, [render(key) for key in page], {
            "after_url": f"{self.url}/api/v2/incremental/{name}/cursor.json?cursor={after}",
            "after_cursor": after, "before_url": None, "before_cursor": None,
            "end_of_stream": lo + per_page >= len(keys),
        })  # fmt: skip

    def event_export(self, query: Query) -> Answer:
        """Time-based: up to 1000 events from ``start_time`` (inclusive), extended to every
        event of the last second, so ``end_time`` is the next ``start_time``."""
        start = int(one(query, "start_time") or -1)
        if start < 0:
            return Answer(400, {"error": "InvalidValue", "description": "start_time is required"})
        keys = self.desk.event_keys
        lo = bisect_left(keys, start << _ID_SHIFT)
        hi = min(lo + 1000, len(keys))
        if hi > lo:
            hi = bisect_left(keys, ((keys[hi - 1] >> _ID_SHIFT) + 1) << _ID_SHIFT)
        end = keys[hi - 1] >> _ID_SHIFT if hi > lo else start
        if "comment_events" in (one(query, "include") or ""):
            events = [self._event_text(key & 0xFFFFFFFF) for key in keys[lo:hi]]
        else:  # without the side-load, only flags describe a comment
            events = [json.dumps(_flags(self.desk.event_json(key & 0xFFFFFFFF)))
                      for key in keys[lo:hi]]  # fmt: skip
        return _joined("ticket_events", events, {
            "count": len(events), "end_time": end,
            "next_page": f"{self.url}/api/v2/incremental/ticket_events.json?start_time={end}",
            "end_of_stream": hi >= len(keys),
        })  # fmt: skip

    def agents(self, query: Query) -> Answer:
        roles = set(query.get("role[]", [])) or {"end-user", "agent", "admin"}
        users = [u for u in self.desk.users.values() if u["role"] in roles]
        return self._listing(
            query, "users", [{k: v for k, v in u.items() if k != "_key"} for u in users]
        )

    def groups(self, query: Query) -> Answer:
        found = [
            {"id": FIRST_GROUP + g, "name": f"Group {g + 1}", "deleted": False}
            for g in range(GROUPS)
        ]
        return self._listing(query, "groups", found)

    def organizations(self, query: Query) -> Answer:
        found = [{"id": FIRST_ORG + o, "name": f"Org {o + 1}", "created_at": iso(T0 - o * 86400)}
                 for o in range(self.desk.orgs)]  # fmt: skip
        return self._listing(query, "organizations", found)

    def satisfaction_ratings(self, query: Query) -> Answer:
        start = int(one(query, "start_time") or 0)
        answered = one(query, "score") == "received"
        found = self._rated.get((start, answered))
        if found is None:  # kept per filter: paging 100 at a time re-asks the same question
            found = self._rated[(start, answered)] = [
                r for r in self.desk.ratings
                if r.created >= start and not (answered and r.score in ("offered", "unoffered"))
            ]  # fmt: skip

        def render(r: Rating) -> dict[str, Any]:
            return {
                "id": r.id, "url": f"{self.url}/api/v2/satisfaction_ratings/{r.id}.json",
                "assignee_id": r.assignee, "group_id": None, "requester_id": None,
                "ticket_id": r.ticket, "score": r.score, "comment": "", "reason": None,
                "created_at": iso(r.created), "updated_at": iso(r.updated),
            }  # fmt: skip

        return self._listing(query, "satisfaction_ratings", found, render)

    def _listing(
        self,
        query: Query,
        name: str,
        items: list[Any],
        render: Callable[[Any], Any] = lambda item: item,
    ) -> Answer:
        """Cursor pagination: ``page[size]`` (at most 100), ``page[after]``."""
        size = min(int(one(query, "page[size]") or 100), 100)
        after = one(query, "page[after]")
        lo = int(base64.b64decode(after).decode()) if after else 0
        hi = min(lo + size, len(items))
        more = hi < len(items)
        token = base64.b64encode(str(hi).encode()).decode()
        link = f"{self.url}/api/v2/{name}.json?page[size]={size}&page[after]={token}"
        return Answer(200, {
            name: [render(item) for item in items[lo:hi]],
            "meta": {"has_more": more, "after_cursor": token if more else None,
                     "before_cursor": None},
            "links": {"next": link if more else None, "prev": None},
        })  # fmt: skip


def _joined(name: str, texts: list[str], rest: dict[str, Any]) -> Answer:
    """A JSON body from records already rendered as JSON text, and the page's other keys."""
    return Answer(200, f'{{"{name}": [{", ".join(texts)}], {json.dumps(rest)[1:]}')


def _fault(fault: Fault, retry_after: int) -> Answer:
    if fault == "drop":
        return Answer(0)
    status = int(fault)
    if status == 429:  # edge protection answers without a JSON body
        return Answer(429, "Rate limited by Zendesk edge protection",
                       {"Retry-After": str(retry_after)}, "text/plain")  # fmt: skip
    return Answer(status, {"error": "ServiceUnavailable" if status >= 500 else "BadRequest"})


def _flags(event: dict[str, Any]) -> dict[str, Any]:
    event["child_events"] = [
        {"id": c["id"], "event_type": "Comment", "comment_present": True,
         "comment_public": c["public"]} if c.get("event_type") == "Comment" else c
        for c in event["child_events"]
    ]  # fmt: skip
    return event


_ROUTES: dict[str, Callable[[ZendeskImitation, Query], Answer]] = {
    "/api/v2/users/me.json": ZendeskImitation.me,
    "/api/v2/incremental/tickets/cursor.json": ZendeskImitation.ticket_export,
    "/api/v2/incremental/users/cursor.json": ZendeskImitation.user_export,
    "/api/v2/incremental/ticket_events.json": ZendeskImitation.event_export,
    "/api/v2/users.json": ZendeskImitation.agents,
    "/api/v2/groups.json": ZendeskImitation.groups,
    "/api/v2/organizations.json": ZendeskImitation.organizations,
    "/api/v2/satisfaction_ratings.json": ZendeskImitation.satisfaction_ratings,
}


def main() -> None:
    serve_main(__doc__, ZendeskImitation, "tickets", 3000)


if __name__ == "__main__":
    main()
