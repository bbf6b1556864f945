"""The Intercom imitation's workspace: deterministic data from a seed, as the API shows it.

Admins, teams, companies, contacts and conversations whose parts follow a timeline, with
``statistics`` computed from that same timeline. Served over HTTP by
:mod:`tests.connectors.intercom_server`.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    malformed: bool = False  # retrieved with a created_at no client can read

    def history(self) -> list[tuple[int, str]]:
        """(time, state) at each change: open when the contact wrote in, then the parts'."""
        found = [(self.created, "open")]
        for p in self.parts:
            if p.state != found[-1][1]:
                found.append((p.ts, p.state))
        return found

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
        state = {"close": "closed", "open": "open", "snoozed": "snoozed",
                 "timer_unsnooze": "open"}.get(kind, self.c.state)  # fmt: skip
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
            if r.random() < 0.5:  # the snooze ran out
                self.add("timer_unsnooze", ("bot", str(BOT)), r.randrange(3600, 86400))
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
    if parts and c.malformed:
        found["created_at"] = "yesterday"
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
