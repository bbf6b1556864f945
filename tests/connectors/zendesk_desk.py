"""The Zendesk imitation's account: deterministic data from a seed, as the API shows it.

Agents, groups, organizations, customers and tickets whose comments, solves, reopens and
closes follow a timeline, with metric sets and ticket events computed from that same
timeline, as Zendesk computes them. Served over HTTP by :mod:`tests.connectors.zendesk_server`.
"""

from __future__ import annotations

import base64
import math
import random
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.connectors.imitation import (
    iso,
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
    """One ticket event: a comment, or a field change (``change`` = field, old, new; old
    ``None`` on the ticket's creation, a ``Create`` child)."""

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
    history: list[tuple[int, str]] = field(default_factory=list)  # (time, status) changes
    status: str = "new"
    closed: int | None = None
    updated: int = 0
    gts: int = 0

    def is_agent_reply(self, c: Comment) -> bool:
        return c.public and c.via != "rule" and ADMIN <= c.author < FIRST_AGENT + AGENTS


class _Timeline:
    """Builds one ticket's comments, solves and status from its own random stream."""

    def __init__(self, t: TicketData, r: random.Random) -> None:
        self.t, self.r, self.ts = t, r, t.created

    def add(self, delay: int, author: int, public: bool = True, via: str | None = None) -> None:
        self.ts += max(1, delay)
        k = len(self.t.comments)
        self.t.comments.append(Comment(self.t.id * 1000 + 500 + k, self.ts, author, public,
                                       via or self.t.via))  # fmt: skip

    def to(self, status: str) -> None:
        """The status from now on; one update that changes it twice is one change."""
        history = self.t.history
        if len(history) > 1 and history[-1][0] == self.ts:
            history.pop()
        if history[-1][1] != status:
            history.append((self.ts, status))

    def reply_delay(self) -> int:
        if self.t.messaging:
            return self.r.randrange(10, 900)
        return int(self.r.lognormvariate(math.log(4 * 3600), 1.0))

    def build(self) -> None:
        t, r = self.t, self.r
        t.comments.append(Comment(t.id * 1000 + 500, t.created, t.requester, True, t.via))
        t.history.append((t.created, "new"))
        if r.random() < 0.05:  # a trigger's auto-reply
            self.add(1, ADMIN, via="rule")
            self.to("open")
        if r.random() < 0.1:  # nobody has answered yet
            t.status = "new" if len(t.comments) == 1 else "open"
            return
        self._assign()
        if r.random() < 0.2:
            self.add(r.randrange(30, 600), t.assignee or ADMIN, public=False)
            self.to("open")
        self.add(self.reply_delay(), t.assignee or ADMIN)
        self.to("open")
        for _ in range(r.choice((0, 0, 1, 1, 2))):
            self.add(r.randrange(600, 86400), t.requester)
            self.add(self.reply_delay(), t.assignee or ADMIN)
        if r.random() < 0.85:
            self._solve()
        else:
            t.status = "pending"
            self.to("pending")

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
        self.to("solved")
        if r.random() < 0.12:  # the customer writes back: a reopen
            self.add(r.randrange(3600, 2 * 86400), t.requester)
            self.to("open")
            self.add(self.reply_delay(), t.assignee or ADMIN)
            t.solves.append(self.ts)
            self.to("solved")
        t.status = "solved"
        if t.solves[-1] + CLOSE_AFTER <= NOW:
            t.status, t.closed = "closed", t.solves[-1] + CLOSE_AFTER
            self.ts = t.closed
            self.to("closed")


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
        (created, first), *changes = t.history
        steps.append((created, t.requester, "web", None, ("status", None, first)))
        steps += [(ts, ADMIN if new == "closed" else t.assignee or ADMIN,
                   "rule" if new == "closed" else "web", None, ("status", old, new))
                  for (_, old), (ts, new) in zip(t.history, changes, strict=False)]  # fmt: skip
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
                before = str(t.priority)
                for name, value in fields.items():
                    setattr(t, name, value)
                self._touch(t, ("priority", before, str(fields)))

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
        if change[0] == "status":
            t.history.append((audit.ts, change[2]))
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
            if old is None:  # a new ticket's fields: Create children, nothing before them
                del child["previous_value"]
                child["event_type"] = "Create"
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
