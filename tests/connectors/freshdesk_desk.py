"""The Freshdesk imitation's helpdesk: deterministic data from a seed, as the API shows it.

Agents, groups, companies, customers, and tickets whose conversations, resolutions, reopens
and closes follow a timeline, with ``stats`` computed from that same timeline. Served over
HTTP by :mod:`tests.connectors.freshdesk_server`.
"""

from __future__ import annotations

import math
import random
import threading
from array import array
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.connectors.imitation import (
    iso,
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
    history: list[tuple[int, int]] = field(default_factory=list)  # (time, status code)

    def public_agent_replies(self) -> list[Conversation]:
        return [c for c in self.conversations if not c.incoming and not c.private]


class _Timeline:
    def __init__(self, t: TicketData, r: random.Random) -> None:
        self.t, self.r, self.ts = t, r, t.created

    def add(self, delay: int, user: int, incoming: bool, private: bool = False) -> None:
        self.ts += max(1, delay)
        k = len(self.t.conversations)
        self.t.conversations.append(
            Conversation(self.t.id * 100 + k, self.ts, user, incoming, private)
        )

    def to(self, code: int, ts: int | None = None) -> None:
        self.t.status = code
        self.t.history.append((self.ts if ts is None else ts, code))

    def build(self) -> None:
        t, r = self.t, self.r
        if r.random() < 0.1:  # nobody has answered yet
            self.to(6 if r.random() < 0.5 else 2)  # 6: a custom status, set on creation
            return
        self.to(2)
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
            self.to(3)

    def _resolve(self) -> None:
        t, r = self.t, self.r
        self.ts += r.randrange(60, 86400)
        t.resolved = self.ts
        self.to(4)
        if r.random() < 0.12:  # the customer writes back: a reopen, then a second resolution
            self.add(r.randrange(3600, 86400), t.requester, True)
            t.reopened = self.ts
            self.to(2)
            self.add(r.randrange(600, 7200), t.responder or FIRST_AGENT, False)
            self.ts += 60
            t.resolved = self.ts
            self.to(4)
        if t.resolved + CLOSE_AFTER <= NOW:
            t.closed = t.resolved + CLOSE_AFTER
            self.to(5, t.closed)


class Desk:
    """The account's data and its indexes; every access holds ``lock``."""

    def __init__(self, tickets: int, seed: int) -> None:
        self.lock = threading.RLock()
        self.n, self.seed, self.now = tickets, seed, NOW
        self.customers = max(10, tickets // 2)
        self.companies = max(3, tickets // 50)
        self.tickets: dict[int, TicketData] = {}
        self.ratings: list[RatingData] = []
        self.malformed = {MALFORMED_RATING_TICKET}  # tickets whose rating has a bad timestamp
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
        stamps = _stamps(t.history)
        return {
            "agent_responded_at": _iso(t.first_reply),
            "requester_responded_at": None,
            "first_responded_at": _iso(t.first_reply),
            **{key: _iso(ts) for key, ts in stamps.items()},
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
        if rating.ticket in self.malformed:  # "T09:..." written as "T009:..."
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


def _stamps(history: list[tuple[int, int]]) -> dict[str, int | None]:
    """The status stamps of ``stats`` as Freshdesk's server keeps them (freshconsult
    ``Helpdesk::Ticket#update_ticket_states``, ``TicketState#reset_tkt_states``): the latest
    of each; a reopen (out of 4 or 5) empties the resolution and the close."""
    stamps: dict[str, int | None] = dict.fromkeys(
        ("status_updated_at", "reopened_at", "resolved_at", "closed_at", "pending_since")
    )
    before = None
    for ts, code in history:
        if before in (4, 5) and code not in (4, 5):
            stamps.update(reopened_at=ts, resolved_at=None, closed_at=None)
        if code == 3:
            stamps["pending_since"] = ts
        if code in (4, 5):
            stamps["resolved_at"] = ts if code == 4 else stamps["resolved_at"] or ts
        if code == 5:
            stamps["closed_at"] = ts
        stamps["status_updated_at"], before = ts, code
    return stamps


def _iso(ts: int | None) -> str | None:
    return None if ts is None else iso(ts)


TICKET_LIST = "/api/v2/tickets"
