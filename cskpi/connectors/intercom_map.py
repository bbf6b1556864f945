"""Intercom API objects (version 2.x) to cskpi records: pure functions, no I/O.

A conversation is a ticket. Its ``statistics`` object carries Intercom's own first admin
reply, first and last close, reopen and assignment counts; its parts (``GET
/conversations/{id}`` only, the 500 most recent) carry the messages and the state changes
(:func:`state_history`). Where the parts are complete they also give the public agent
replies, the first reply and the closes exactly; where they are cut at 500, the statistics
stand in (see :func:`map_conversation`).

Field references (``descriptions/2.16/api.intercom.io.yaml`` in intercom/Intercom-OpenAPI):
conversation https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/conversation,
statistics https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/retrieveconversation,
admins https://developers.intercom.com/docs/references/rest-api/api.intercom.io/admins/listadmins,
teams https://developers.intercom.com/docs/references/rest-api/api.intercom.io/teams/listteams,
companies https://developers.intercom.com/docs/references/rest-api/api.intercom.io/companies/scrollovercallcompanies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from cskpi.connectors import base
from cskpi.connectors.base import (
    Group,
    Message,
    Organization,
    Person,
    Rating,
    StatusChange,
    Ticket,
    VendorMetrics,
)
from cskpi.connectors.fields import BadRecordError, Raw, maybe_when, ref, when

PARTS_LIMIT = 500  # "we will return the 500 most recent conversation parts"

_STATUS: dict[str, base.TicketStatus] = {"open": "open", "snoozed": "pending", "closed": "solved"}
# Up to 2.15 a flag, "priority" / "not_priority", mapped as SPEC §3b says (priority → high,
# else normal); 2.16 has levels none/low/medium/high/urgent (`conversation.priority` in
# descriptions/2.16/api.intercom.io.yaml), where "none" says no priority was set: null.
_PRIORITY: dict[str, base.Priority] = {
    "priority": "high", "not_priority": "normal",
    "urgent": "urgent", "high": "high", "medium": "normal", "low": "low",
}  # fmt: skip
# `source.type`, the search reference's "Accepted fields" list.
_CHANNEL: dict[str, base.Channel] = {
    "conversation": "chat", "email": "email", "facebook": "social", "instagram": "social",
    "twitter": "social", "phone_call": "phone", "phone_switch": "phone", "sms": "messaging",
    "whatsapp": "messaging", "push": "messaging",
}  # fmt: skip
# Author types: contacts are users or leads; bots and campaigns write on behalf of admins.
_ROLE: dict[str, base.AuthorRole] = {
    "user": "customer", "lead": "customer", "contact": "customer", "admin": "agent",
    "team": "agent", "bot": "bot",
}  # fmt: skip
_CUSTOMERS = frozenset({"user", "lead", "contact"})
_MESSAGES = {"comment": True, "note": False}  # part_type -> public
_STATES = frozenset({"open", "closed", "snoozed"})
# The state a part of this type leaves the conversation in, where the part does not record
# it (``state``, from 2.13): the Conversation Part Types table of
# https://developers.intercom.com/docs/references/2.0/rest-api/conversations/conversation-model/,
# and assign_and_reopen from 2.16's "Manage a conversation" examples. Other parts change
# nothing.
_PART_STATES = {
    "open": "open", "close": "closed", "snoozed": "snoozed", "unsnoozed": "open",
    "timer_unsnooze": "open", "assign_and_unsnooze": "open", "note_and_unsnooze": "open",
    "note_and_reopen": "open", "assign_and_reopen": "open",
}  # fmt: skip


@dataclass
class Conversation:
    """Everything one retrieved conversation gives: its ticket, messages, rating, contacts."""

    ticket: Ticket
    messages: list[Message] = field(default_factory=list)
    rating: Rating | None = None
    people: list[Person] = field(default_factory=list)
    truncated: bool = False
    history: list[StatusChange] = field(default_factory=list)
    metrics: VendorMetrics | None = None

    def records(self) -> list[base.Record]:
        found: list[base.Record] = [self.ticket, *self.messages, *self.people, *self.history]
        found += [r for r in (self.metrics, self.rating) if r is not None]
        return found


# --- fields -----------------------------------------------------------------------------


def _text(value: object) -> str | None:
    return value if type(value) is str and value else None


def _object(raw: Raw, key: str) -> Raw:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _listed(value: object, key: str) -> list[Raw]:
    """``{"type": "x.list", key: [...]}`` (2.x) or a bare list (the 2.0-era shape)."""
    items = value.get(key) if isinstance(value, dict) else value
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _assigned(value: object) -> str | None:
    """An assignee id; Intercom writes 0 (or null) for "not assigned"."""
    found = ref(value)
    return None if found in (None, "0", "") else found


def _count(raw: Raw, key: str) -> int:
    value = raw.get(key)
    if value is None:
        return 0
    if type(value) is not int:
        raise BadRecordError(f"statistics.{key}: not a count {value!r}")
    return value


# --- tickets ----------------------------------------------------------------------------


def map_ticket(raw: Raw) -> Ticket:
    """A conversation as search returns it: state, priority, channel, tags, people and the
    ``statistics`` object (null on some conversations; then those fields stay empty)."""
    state = raw.get("state")
    if state is None and isinstance(raw.get("open"), bool):  # before `state` existed
        state = "open" if raw["open"] else "closed"
    status = _STATUS.get(str(state))
    if status is None:
        raise BadRecordError(f"state: unknown value {state!r}")
    source = _object(raw, "source")
    ticket = Ticket(
        external_id=_id(raw), created_at=when(raw, "created_at"),
        updated_at=when(raw, "updated_at"), status=status, raw_status=str(state),
        subject=_text(raw.get("title")) or _text(source.get("subject")),
        priority=_PRIORITY.get(str(raw.get("priority"))),
        channel=_CHANNEL.get(str(source.get("type")), "other"), tags=_tags(raw.get("tags")),
        requester_id=_requester(raw, source),
        organization_id=ref(_object(raw, "company").get("id")),
        assignee_id=_admin_assignee(raw), group_id=_assigned(raw.get("team_assignee_id")),
    )  # fmt: skip
    apply_statistics(ticket, _object(raw, "statistics"))
    return ticket


def _id(raw: Raw) -> str:
    found = ref(raw.get("id"))
    if not found:
        raise BadRecordError("missing id")
    return found


def _tags(value: object) -> tuple[str, ...]:
    names = (t.get("name") for t in _listed(value, "tags"))
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str)))  # once each, in order


def _requester(raw: Raw, source: Raw) -> str | None:
    contacts = _listed(raw.get("contacts"), "contacts")
    if contacts:
        return ref(contacts[0].get("id"))
    author = _object(source, "author")
    return ref(author.get("id")) if author.get("type") in _CUSTOMERS else None


def _admin_assignee(raw: Raw) -> str | None:
    if "admin_assignee_id" in raw:
        return _assigned(raw.get("admin_assignee_id"))
    assignee = _object(raw, "assignee")  # the 2.0-era shape: {"type": "admin", "id": ...}
    return _assigned(assignee.get("id")) if assignee.get("type") == "admin" else None


# statistics durations (seconds, outside office hours subtracted) -> vendor_metric names;
# handling_time only from Intercom-Version 2.13. docs/kpis.md "Vendor-native figures".
NATIVE = {
    "time_to_admin_reply": "reply_time", "time_to_first_close": "first_resolution_time",
    "time_to_last_close": "full_resolution_time", "handling_time": "handling_time",
    "time_to_assignment": "assignment_time",
}  # fmt: skip


def vendor_metrics(ticket_id: str, stats: Raw) -> VendorMetrics | None:
    """Intercom's own durations from ``statistics``; None where it has no statistics. A
    value that is not whole seconds (null: not happened yet) is left out."""
    if not stats:
        return None
    found = [(name, seconds) for key, name in NATIVE.items()
             if (seconds := _seconds(stats.get(key))) is not None]  # fmt: skip
    return VendorMetrics(ticket_id, found)


def _seconds(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if 0 <= value < 2**31 else None


def apply_statistics(ticket: Ticket, stats: Raw) -> None:
    """First admin reply, first and last close, reopens and assignments, as Intercom counts
    them (from the first contact reply on). A conversation open again keeps its first close
    but has no latest solve."""
    if not stats:
        return
    ticket.first_reply_at = maybe_when(stats, "first_admin_reply_at")
    ticket.first_solved_at = maybe_when(stats, "first_close_at")
    last_close = maybe_when(stats, "last_close_at")
    ticket.solved_at = last_close if ticket.status == "solved" else None
    ticket.reopens = _count(stats, "count_reopens")
    ticket.assignee_changes = max(_count(stats, "count_assignments") - 1, 0)


# --- a retrieved conversation: parts ---------------------------------------------------


def map_conversation(raw: Raw) -> Conversation:
    """A conversation from ``GET /conversations/{id}``: the ticket, its messages (the opening
    ``source`` message and every comment and note), its rating and the contacts who wrote.

    With every part present, the replies, the first reply and the closes come from the parts
    (the same rules as Intercom's statistics: the first public admin comment after the first
    customer message). With the parts cut at 500, only the statistics are trusted for those
    times, and ``truncated`` says so.
    """
    ticket = map_ticket(raw)
    listing = _object(raw, "conversation_parts")
    parts = _listed(listing, "conversation_parts")
    total = listing.get("total_count")
    truncated = len(parts) >= PARTS_LIMIT or (type(total) is int and total > len(parts))
    found = Conversation(ticket, truncated=truncated)
    opening = _source_message(raw, ticket)
    found.messages = [m for m in (opening, *_messages(parts, ticket.external_id)) if m]
    found.people = _contacts([_object(_object(raw, "source"), "author"), *_authors(parts)])
    found.rating = map_rating(raw)
    found.metrics = vendor_metrics(ticket.external_id, _object(raw, "statistics"))
    states = state_history(raw, parts)
    found.history = [StatusChange(ticket.external_id, at, _STATUS[s]) for at, s in states]
    _apply_thread(ticket, found.messages, parts, truncated, states)
    return found


def _source_message(raw: Raw, ticket: Ticket) -> Message | None:
    source = _object(raw, "source")
    author = _object(source, "author")
    if not source or not author:
        return None
    return Message(
        external_id=f"{ticket.external_id}-source", ticket_id=ticket.external_id,
        created_at=ticket.created_at, author_role=_role(author), public=True,
        author_id=ref(author.get("id")),
    )  # fmt: skip


def _messages(parts: list[Raw], ticket_id: str) -> Iterable[Message]:
    for part in parts:
        public = _MESSAGES.get(str(part.get("part_type")))
        if public is None:  # an assignment, a close, an attribute change: an event, no message
            continue
        author = _object(part, "author")
        yield Message(
            external_id=_id(part), ticket_id=ticket_id, created_at=when(part, "created_at"),
            author_role=_role(author), public=public, author_id=ref(author.get("id")),
        )  # fmt: skip


def _role(author: Raw) -> base.AuthorRole:
    """Fin and Operator write as admins (2.16's `conversation_part_author` example: type
    admin, name Operator, email operator+abcd1234@intercom.io): bots, never agent replies."""
    if author.get("from_ai_agent") is True or is_operator(_text(author.get("email"))):
        return "bot"
    return _ROLE.get(str(author.get("type")), "system")


def is_operator(email: str | None) -> bool:
    """Intercom's own bot identities (Operator, Fin) write from ``operator+...@intercom.io``."""
    return email is not None and email.startswith("operator+") and email.endswith("@intercom.io")


def _authors(parts: list[Raw]) -> Iterable[Raw]:
    return (_object(part, "author") for part in parts)


def _contacts(authors: Iterable[Raw]) -> list[Person]:
    """Contacts who wrote (name and email as the parts show them); admins come from /admins."""
    found: dict[str, Person] = {}
    for author in authors:
        ident = ref(author.get("id"))
        if ident and author.get("type") in _CUSTOMERS:
            found[ident] = Person(
                ident, "customer", _text(author.get("name")), _text(author.get("email"))
            )
    return list(found.values())


def _apply_thread(
    ticket: Ticket, messages: list[Message], parts: list[Raw], cut: bool,
    states: list[tuple[datetime, str]],
) -> None:  # fmt: skip
    agent = [m for m in messages if m.author_role == "agent" and m.public]
    customer = [m.created_at for m in messages if m.author_role == "customer"]
    ticket.agent_replies = len([m for m in agent if not m.external_id.endswith("-source")])
    ticket.group_changes = _team_changes(parts)
    if cut:
        return
    after = customer[0] if customer else None
    replies = [m.created_at for m in agent if after is not None and m.created_at >= after]
    ticket.first_reply_at = min(replies, default=ticket.first_reply_at)
    closes = [at for at, state in states if state == "closed"]
    if closes:
        ticket.first_solved_at = closes[0]
        ticket.solved_at = closes[-1] if ticket.status == "solved" else None
        ticket.reopens = max(ticket.reopens, _reopens(states))


def state_history(raw: Raw, parts: list[Raw]) -> list[tuple[datetime, str]]:
    """Each change of the conversation's state (open, closed, snoozed), oldest first.

    A conversation a contact started is open from ``created_at`` (one an admin started, an
    outbound message, has no state the API shows until its first part says one). Then each
    part: the state it records (``part.state``, 2.13+: "the current state of conversation
    when the conversation part was created"), else the state its ``part_type`` leaves
    (:data:`_PART_STATES`), else no change. Parts cut off (beyond the 500 most recent) are
    changes nobody can see.
    """
    state = "open" if _started_by_contact(raw) else None
    history = [(when(raw, "created_at"), "open")] if state else []
    for part in parts:
        recorded = part.get("state")
        now = recorded if recorded in _STATES else _PART_STATES.get(str(part.get("part_type")))
        if now is not None and now != state:
            history.append((when(part, "created_at"), str(now)))
            state = now
    return history


def _started_by_contact(raw: Raw) -> bool:
    source = _object(raw, "source")
    if "delivered_as" in source:
        return source.get("delivered_as") == "customer_initiated"
    return _object(source, "author").get("type") in _CUSTOMERS


def _reopens(states: list[tuple[datetime, str]]) -> int:
    """Changes out of closed: a reopen each."""
    return sum(1 for (_, before), _ in pairwise(states) if before == "closed")


def _team_changes(parts: list[Raw]) -> int:
    teams = [ref(_object(p, "assigned_to").get("id")) for p in parts if _to_team(p)]
    moves = [t for prev, t in zip([None, *teams], teams, strict=False) if t != prev]
    return max(len(moves) - 1, 0)


def _to_team(part: Raw) -> bool:
    return _object(part, "assigned_to").get("type") == "team"


# --- ratings, people, groups, organizations ---------------------------------------------


def map_rating(raw: Raw) -> Rating | None:
    """``conversation_rating``: 1-5 from the contact, with an optional remark, for the rated
    teammate; csat on a 5-point scale. Null (not rated yet) is no rating."""
    rating = raw.get("conversation_rating")
    if not isinstance(rating, dict) or rating.get("rating") is None:
        return None
    score = rating["rating"]
    if type(score) is not int or not 1 <= score <= 5:
        raise BadRecordError(f"conversation_rating.rating: not 1-5 {score!r}")
    return Rating(
        external_id=_id(raw), kind="csat", score=float(score), scale_min=1.0, scale_max=5.0,
        rated_at=maybe_when(rating, "updated_at") or when(rating, "created_at"),
        ticket_id=_id(raw), comment=_text(rating.get("remark")),
        agent_id=ref(_object(rating, "teammate").get("id")),
    )  # fmt: skip


def map_admin(raw: Raw) -> Person:
    """An admin (teammate) is an agent; Intercom's own bot identities (Operator, Fin) are
    listed as admins with an ``operator+...@intercom.io`` address and are bots."""
    email = _text(raw.get("email"))
    return Person(_id(raw), "bot" if is_operator(email) else "agent", _text(raw.get("name")), email)


def map_team(raw: Raw) -> Group:
    return Group(_id(raw), _text(raw.get("name")))


def map_company(raw: Raw) -> Organization:
    return Organization(_id(raw), _text(raw.get("name")), maybe_when(raw, "created_at"))


def unix_of(raw: Any, key: str = "updated_at") -> int | None:
    """A conversation's ``updated_at`` as unix seconds, where search sorts and filters on it."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if type(value) is int else None
