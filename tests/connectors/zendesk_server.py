"""A local imitation of the Zendesk Support endpoints the ``zendesk`` connector reads.

Tests start it on 127.0.0.1 on a free port (a ``ThreadingHTTPServer`` in a thread); the
benchmark can run it in its own process (``python -m tests.connectors.zendesk_server``). The
data is generated deterministically from ``seed``: agents, groups, organizations, customers,
and tickets whose comments, solves, reopens and closes follow a timeline, with metric sets and
ticket events computed from that same timeline, as Zendesk computes them. Tests change it
through :meth:`ZendeskImitation.change_tickets` and :meth:`ZendeskImitation.delete_ticket`.

What it imitates (shapes from ../shared/samples/zendesk and the API reference):
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
import random
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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
SPAN = 120 * 86400  # tickets are created over 120 days
NOW = T0 + SPAN + 10 * 86400  # the data's present; every event lies before it
CLOSE_AFTER = 4 * 86400  # solved tickets close after four quiet days
ADMIN, FIRST_AGENT, AGENTS = 1000, 1001, 12
GROUPS, FIRST_GROUP = 4, 2000
FIRST_ORG, FIRST_CUSTOMER = 3000, 100_000
_ID_SHIFT = 32  # index keys: time << 32 | id
_EXPORTS = "/api/v2/incremental/"
# (via.channel, from_messaging_channel), weighted by repetition
_CHANNELS = (("email", False),) * 4 + (("web", False),) * 3 + (
    ("api", False), ("chat", False), ("voice", False), ("native_messaging", True),
    ("native_messaging", True),
)  # fmt: skip
_PRIORITIES = ("urgent", "high", "normal", "normal", "low", None)
_TYPES = ("question", "incident", "problem", "task", None)
_TAGS = ("billing", "bug", "login", "refund", "shipping", "escalated", "vip")


def export_cursor(ts: int, ident: int) -> str:
    return base64.b64encode(f"{ts}.0||{ident}|".encode()).decode()


def _cursor_key(cursor: str) -> int:
    stamp, _, rest = base64.b64decode(cursor).decode().partition("||")
    return int(float(stamp)) << _ID_SHIFT | int(rest.rstrip("|"))


@dataclass
class Comment:
    id: int
    ts: int
    author: int
    public: bool
    via: str


@dataclass
class Audit:
    """One ticket event: a comment, or a field change (``change`` = field, old, new)."""

    id: int
    ts: int
    updater: int
    via: str
    comment: Comment | None = None
    change: tuple[str, str | None, str] | None = None


@dataclass
class Rating:
    id: int
    ticket: int
    assignee: int | None
    score: str
    created: int
    updated: int


@dataclass
class TicketData:
    id: int
    created: int
    requester: int
    via: str
    messaging: bool
    priority: str | None
    type: str | None
    tags: list[str]
    org: int | None
    group: int | None = None
    assignee: int | None = None
    group_stations: int = 0
    assignee_stations: int = 0
    comments: list[Comment] = field(default_factory=list)
    solves: list[int] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)
    status: str = "new"
    closed: int | None = None
    updated: int = 0
    gts: int = 0

    def is_agent_reply(self, c: Comment) -> bool:
        return c.public and c.via != "rule" and ADMIN <= c.author < FIRST_AGENT + AGENTS


@dataclass(frozen=True)
class Logged:
    at: float
    path: str
    query: Query
    status: int


class _Timeline:
    """Builds one ticket's comments, solves and status from its own random stream."""

    def __init__(self, t: TicketData, r: random.Random) -> None:
        self.t, self.r, self.ts = t, r, t.created

    def add(self, delay: int, author: int, public: bool = True, via: str | None = None) -> None:
        self.ts += max(1, delay)
        k = len(self.t.comments)
        self.t.comments.append(Comment(self.t.id * 1000 + 500 + k, self.ts, author, public,
                                       via or self.t.via))  # fmt: skip

    def reply_delay(self) -> int:
        if self.t.messaging:
            return self.r.randrange(10, 900)
        return int(self.r.lognormvariate(math.log(4 * 3600), 1.0))

    def build(self) -> None:
        t, r = self.t, self.r
        t.comments.append(Comment(t.id * 1000 + 500, t.created, t.requester, True, t.via))
        if r.random() < 0.05:  # a trigger's auto-reply
            self.add(1, ADMIN, via="rule")
        if r.random() < 0.1:  # nobody has answered yet
            t.status = "new" if len(t.comments) == 1 else "open"
            return
        self._assign()
        if r.random() < 0.2:
            self.add(r.randrange(30, 600), t.assignee or ADMIN, public=False)
        self.add(self.reply_delay(), t.assignee or ADMIN)
        for _ in range(r.choice((0, 0, 1, 1, 2))):
            self.add(r.randrange(600, 86400), t.requester)
            self.add(self.reply_delay(), t.assignee or ADMIN)
        if r.random() < 0.85:
            self._solve()
        else:
            t.status = "pending"

    def _assign(self) -> None:
        t, r = self.t, self.r
        t.group, t.group_stations = FIRST_GROUP + r.randrange(GROUPS), 1
        t.assignee, t.assignee_stations = FIRST_AGENT + r.randrange(AGENTS), 1
        if r.random() < 0.15:  # escalated to another group and agent
            t.group = FIRST_GROUP + (t.group - FIRST_GROUP + 1) % GROUPS
            t.assignee = FIRST_AGENT + (t.assignee - FIRST_AGENT + 1) % AGENTS
            t.group_stations = t.assignee_stations = 2

    def _solve(self) -> None:
        t, r = self.t, self.r
        self.ts += r.choice((0, r.randrange(60, 86400)))
        t.solves.append(self.ts)
        if r.random() < 0.12:  # the customer writes back: a reopen
            self.add(r.randrange(3600, 2 * 86400), t.requester)
            self.add(self.reply_delay(), t.assignee or ADMIN)
            t.solves.append(self.ts)
        t.status = "solved"
        if t.solves[-1] + CLOSE_AFTER <= NOW:
            t.status, t.closed = "closed", t.solves[-1] + CLOSE_AFTER


class Desk:
    """The account's data and its indexes; every access holds ``lock``."""

    def __init__(self, tickets: int, seed: int, bad_created: Iterable[int] = ()) -> None:
        self.lock = threading.RLock()
        self.n, self.seed = tickets, seed
        self.customers = max(10, tickets // 2)
        self.orgs = max(3, tickets // 50)
        self.now = NOW
        self.tickets: dict[int, TicketData] = {}
        self.ratings: list[Rating] = []
        self.bad_created = set(bad_created)  # tickets whose created_at cannot be parsed
        for i in range(tickets):
            self._generate(i)
        self._preset()
        self.ticket_keys = array(
            "q", sorted(t.gts << _ID_SHIFT | t.id for t in self.tickets.values())
        )
        self.event_keys = array("q", sorted(
            a.ts << _ID_SHIFT | a.id for t in self.tickets.values() for a in t.audits
        ))  # fmt: skip
        self.users = self._users()
        self.user_keys = array("q", sorted(u["_key"] for u in self.users.values()))

    def _generate(self, i: int) -> None:
        r = random.Random(f"zendesk:{self.seed}:{i}")
        via, messaging = r.choice(_CHANNELS)
        requester = FIRST_CUSTOMER + int(self.customers * r.random() ** 2)
        t = TicketData(
            id=i + 1, created=T0 + i * SPAN // self.n + r.randrange(600), requester=requester,
            via=via, messaging=messaging, priority=r.choice(_PRIORITIES), type=r.choice(_TYPES),
            tags=sorted(set(r.sample(_TAGS, r.choice((0, 1, 1, 2))))),
            org=FIRST_ORG + requester % self.orgs if requester % 3 else None,
        )  # fmt: skip
        _Timeline(t, r).build()
        self._audits(t)
        t.updated = t.gts = max(a.ts for a in t.audits)
        self.tickets[t.id] = t
        if t.solves and r.random() < 0.35:
            self._rate(t, r)

    def _preset(self) -> None:
        """Ticket 5 was deleted, ticket 9 was merged into another (closed, tagged)."""
        if 5 in self.tickets:
            self.tickets[5].status = "deleted"
        if 9 in self.tickets:
            merged = self.tickets[9]
            merged.status, merged.tags = "closed", [*merged.tags, "closed_by_merge"]

    def _audits(self, t: TicketData) -> None:
        steps: list[tuple[int, int, str, Comment | None, tuple[str, str | None, str] | None]] = [
            (c.ts, c.author, c.via, c, None) for c in t.comments
        ]
        steps += [(s, t.assignee or ADMIN, "web", None, ("status", "open", "solved"))
                  for s in t.solves]  # fmt: skip
        if t.closed:
            steps.append((t.closed, ADMIN, "rule", None, ("status", "solved", "closed")))
        for k, (ts, who, via, comment, change) in enumerate(sorted(steps, key=lambda s: s[0])):
            t.audits.append(Audit(t.id * 1000 + k, ts, who, via, comment, change))

    def _rate(self, t: TicketData, r: random.Random) -> None:
        offered = t.solves[-1] + 3600
        answered = offered + r.randrange(600, 3 * 86400)
        score = "offered" if r.random() < 0.1 else "good" if r.random() < 0.8 else "bad"
        updated = offered if score == "offered" else answered
        self.ratings.append(Rating(t.id * 10 + 1, t.id, t.assignee, score, offered, updated))

    def _users(self) -> dict[int, dict[str, Any]]:
        users: dict[int, dict[str, Any]] = {}
        staff = [(ADMIN, "admin")] + [(FIRST_AGENT + a, "agent") for a in range(AGENTS)]
        for ident, role in staff:
            users[ident] = _user(ident, role, T0 - 30 * 86400)
        for k in range(self.customers):
            users[FIRST_CUSTOMER + k] = _user(
                FIRST_CUSTOMER + k, "end-user", T0 + k * SPAN // self.customers
            )
        return users

    # --- changes a test makes ---------------------------------------------------------

    def change_tickets(self, ids: Iterable[int], **fields: Any) -> None:
        """Change fields (priority, subject, tags, status...) of tickets, as an agent would."""
        with self.lock:
            for ident in ids:
                t = self.tickets[ident]
                for name, value in fields.items():
                    setattr(t, name, value)
                self._touch(t, ("priority", None, str(fields)))

    def delete_ticket(self, ident: int) -> None:
        with self.lock:
            t = self.tickets[ident]
            previous, t.status = t.status, "deleted"
            self._touch(t, ("status", previous, "deleted"))

    def _touch(self, t: TicketData, change: tuple[str, str | None, str]) -> None:
        old = t.gts << _ID_SHIFT | t.id
        del self.ticket_keys[bisect_left(self.ticket_keys, old)]
        self.now += 60
        audit = Audit(t.id * 1000 + len(t.audits), self.now, ADMIN, "web", None, change)
        t.audits.append(audit)
        t.updated = t.gts = self.now
        self.ticket_keys.append(t.gts << _ID_SHIFT | t.id)
        self.event_keys.append(audit.ts << _ID_SHIFT | audit.id)

    # --- what the API shows -----------------------------------------------------------

    def comment_count(self) -> int:
        return sum(len(t.comments) for t in self.tickets.values())

    def ticket_json(self, t: TicketData, base: str) -> dict[str, Any]:
        created = "2026-02-30T25:61:00Z" if t.id in self.bad_created else iso(t.created)
        found = {
            "url": f"{base}/api/v2/tickets/{t.id}.json", "id": t.id, "external_id": None,
            "via": {"channel": t.via, "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": created, "updated_at": iso(t.updated), "type": t.type,
            "subject": f"Ticket {t.id}", "raw_subject": f"Ticket {t.id}",
            "description": "Hi, something is wrong.", "priority": t.priority, "status": t.status,
            "recipient": None, "requester_id": t.requester, "submitter_id": t.requester,
            "assignee_id": t.assignee, "organization_id": t.org, "group_id": t.group,
            "collaborator_ids": [], "follower_ids": [], "email_cc_ids": [], "forum_topic_id": None,
            "problem_id": None, "has_incidents": False, "is_public": True, "due_at": None,
            "tags": list(t.tags), "custom_fields": [], "satisfaction_rating": None,
            "sharing_agreement_ids": [], "custom_status_id": 1, "fields": [], "followup_ids": [],
            "ticket_form_id": 1, "brand_id": 1, "allow_channelback": False,
            "allow_attachments": True, "from_messaging_channel": t.messaging,
            "generated_timestamp": t.gts,
        }  # fmt: skip
        if t.status != "deleted":  # deleted tickets have no metrics
            found["metric_set"] = self.metric_json(t, base)
        return found

    def metric_json(self, t: TicketData, base: str) -> dict[str, Any]:
        """The ticket's metric set, computed from its timeline as Zendesk would."""
        replies = [c for c in t.comments if t.is_agent_reply(c)]
        first_reply = replies[0].ts - t.created if replies else None
        first_solve = t.solves[0] - t.created if t.solves else None
        full = t.solves[-1] - t.created if t.solves else None
        status_at = t.closed or (t.solves[-1] if t.solves else t.comments[-1].ts)
        found = {
            "url": f"{base}/api/v2/ticket_metrics/{t.id}.json", "id": t.id, "ticket_id": t.id,
            "created_at": iso(t.created), "updated_at": iso(t.updated),
            "group_stations": t.group_stations, "assignee_stations": t.assignee_stations,
            "reopens": max(len(t.solves) - 1, 0), "replies": len(replies),
            "assignee_updated_at": iso(replies[-1].ts) if replies else None,
            "requester_updated_at": iso(t.comments[-1].ts), "status_updated_at": iso(status_at),
            "initially_assigned_at": iso(t.created + 60) if t.assignee else None,
            "assigned_at": iso(t.created + 60) if t.assignee else None,
            "solved_at": iso(t.solves[-1]) if t.solves else None,
            "latest_comment_added_at": iso(t.comments[-1].ts),
            "reply_time_in_minutes": _minutes(first_reply),
            "first_resolution_time_in_minutes": _minutes(first_solve),
            "full_resolution_time_in_minutes": _minutes(full),
            "agent_wait_time_in_minutes": _minutes(None),
            "requester_wait_time_in_minutes": _minutes(None),
            "on_hold_time_in_minutes": {"calendar": 0, "business": 0},
            "custom_status_updated_at": iso(status_at),
        }  # fmt: skip
        if t.messaging:  # documented as only available for messaging tickets
            found["reply_time_in_seconds"] = {"calendar": first_reply}
        return found

    def event_json(self, audit_id: int) -> dict[str, Any]:
        t = self.tickets[audit_id // 1000]
        a = t.audits[audit_id % 1000]
        child: dict[str, Any]
        if a.comment is not None:
            c = a.comment
            via = {"channel": c.via, "source": {"from": {}, "to": {}, "rel": None}}
            child = {
                "id": c.id, "via": via, "via_reference_id": None, "type": "Comment",
                "author_id": c.author, "body": "Thanks!", "html_body": "<p>Thanks!</p>",
                "public": c.public, "attachments": [], "audit_id": a.id,
                "created_at": iso(c.ts), "event_type": "Comment",
            }  # fmt: skip
        else:
            assert a.change is not None
            name, old, new = a.change
            child = {"id": a.id * 10, "via": a.via, "via_reference_id": None, name: new,
                     "previous_value": old, "event_type": "Change"}  # fmt: skip
        return {
            "id": a.id, "ticket_id": t.id, "timestamp": a.ts, "created_at": iso(a.ts),
            "updater_id": a.updater, "via": a.via, "system": {"client": "imitation"},
            "event_type": "Audit", "child_events": [child],
        }  # fmt: skip


def _minutes(seconds: int | None) -> dict[str, int | None]:
    value = None if seconds is None else seconds // 60
    return {"calendar": value, "business": value}


def _user(ident: int, role: str, updated: int) -> dict[str, Any]:
    return {
        "id": ident, "url": f"/api/v2/users/{ident}.json", "name": f"User {ident}",
        "email": f"user{ident}@example.test", "created_at": iso(updated - 86400),
        "updated_at": iso(updated), "time_zone": "UTC", "iana_time_zone": "Etc/UTC",
        "role": role, "active": True, "verified": True, "suspended": False,
        "_key": updated << _ID_SHIFT | ident,
    }  # fmt: skip


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
