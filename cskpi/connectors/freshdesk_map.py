"""Freshdesk API v2 objects to cskpi records: pure functions, no I/O.

Each ``map_*`` function takes one object as the API returns it and gives one record (or
``None`` for an object that is not one), raising
:class:`~cskpi.connectors.fields.BadRecordError` when a required field is missing or a
date cannot be parsed; the connector turns those into ``Skipped`` entries, so one bad record
never costs its page.

Field references (https://developers.freshdesk.com/api/): tickets ``#tickets`` (status,
priority and source codes, ``include=stats``), conversations ``#conversations``, satisfaction
ratings and surveys ``#satisfaction-ratings`` / ``#surveys``, agents ``#agents``, groups
``#groups``, companies ``#companies``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime

from cskpi.connectors import base
from cskpi.connectors.base import (
    Group,
    Message,
    Organization,
    Person,
    Rating,
    Skipped,
    StatusChange,
    Ticket,
)
from cskpi.connectors.fields import BadRecordError, Raw, maybe_when, ref, when

StatusMap = Mapping[int, base.TicketStatus]

# https://developers.freshdesk.com/api/#ticket_attributes: 2 Open, 3 Pending, 4 Resolved,
# 5 Closed; 6 and up are an account's custom statuses, mapped by the `status_map` setting.
STATUS: dict[int, base.TicketStatus] = {2: "open", 3: "pending", 4: "solved", 5: "closed"}
FIRST_CUSTOM_STATUS = 6
PRIORITY: dict[int, base.Priority] = {1: "low", 2: "normal", 3: "high", 4: "urgent"}
# `source`: 1 Email, 2 Portal, 3 Phone, 7 Chat, 9 Feedback Widget, 10 Outbound Email are the
# documented codes; 4 Forum, 5 Twitter, 6 Facebook, 8 MobiHelp, 11 Ecommerce, 12 Bot,
# 13 WhatsApp are the rest of the enumeration as accounts see it.
CHANNEL: dict[int, base.Channel] = {
    1: "email", 2: "web", 3: "phone", 4: "web", 5: "social", 6: "social", 7: "chat",
    8: "messaging", 9: "web", 10: "email", 12: "chat", 13: "messaging",
}  # fmt: skip
OUTBOUND_EMAIL = 10  # a ticket an agent started: its description is the agent's message
# Conversation `source` (https://developers.freshdesk.com/api/#conversations): 0 Reply, 2 Note,
# 5 Tweets, 6 Survey feedback, 7 Facebook, 8 Forwarded email, 9 Phone, 11 E-commerce. A note
# (even a public one, which the requester can read in the portal) and a forward (to a third
# party) answer no customer: Freshdesk's first response time ignores both.
NOT_A_REPLY = frozenset({2, 8})
# Satisfaction answers are codes: 103 Extremely happy ... 100 Neutral ... -103 Extremely
# unhappy. The classic survey answers 103 / 100 / -103; custom surveys use 5 or 7 of the
# codes, listed per question in `accepted_ratings` of GET /api/v2/surveys.
CLASSIC_SCALE = (-103, 100, 103)
SEVEN_POINT_SCALE = (-103, -102, -101, 100, 101, 102, 103)
NEUTRAL = 100
DEFAULT_QUESTION = "default_question"


# --- tickets ----------------------------------------------------------------------------


def map_ticket(raw: Raw, status_map: StatusMap, *, deleted: bool = False) -> Ticket:
    """A ticket of ``GET /tickets?include=stats``. ``deleted`` marks the ``filter=deleted``
    and ``filter=spam`` passes; a ticket that says ``deleted`` or ``spam`` itself is flagged
    too, so the store never resurrects it and KPIs leave it out."""
    code = _code(raw, "status")
    status = STATUS.get(code) or status_map.get(code)
    if status is None and code >= FIRST_CUSTOM_STATUS:
        status = "open"  # a custom status nobody mapped: work still to do
    if status is None:
        raise BadRecordError(f"status: unknown value {code!r}")
    source = raw.get("source")
    ticket = Ticket(
        external_id=_id(raw), created_at=when(raw, "created_at"),
        updated_at=when(raw, "updated_at"), status=status, raw_status=str(code),
        subject=_text(raw.get("subject")), priority=_priority(raw.get("priority")),
        channel=CHANNEL.get(source, "other") if type(source) is int else None,
        type=_text(raw.get("type")), tags=_tags(raw.get("tags")),
        requester_id=ref(raw.get("requester_id")), organization_id=ref(raw.get("company_id")),
        assignee_id=ref(raw.get("responder_id")), group_id=ref(raw.get("group_id")),
        deleted=deleted or raw.get("deleted") is True or raw.get("spam") is True,
    )  # fmt: skip
    stats = raw.get("stats")
    if isinstance(stats, dict):
        apply_stats(ticket, stats)
    return ticket


def apply_stats(ticket: Ticket, stats: Raw) -> None:
    """First reply, solves, close and reopen from ``stats``.

    Freshdesk keeps only the latest of each: ``resolved_at`` is the last resolution and
    ``reopened_at`` the last reopen, so a reopen counts once. A first solve before a reopen is
    known only to precede it: ``first_solved_at`` is then at most ``reopened_at``.
    """
    ticket.first_reply_at = maybe_when(stats, "first_responded_at")
    done = ticket.status in ("solved", "closed")
    closed = maybe_when(stats, "closed_at")
    solved = maybe_when(stats, "resolved_at") or (closed if done else None)
    if solved is None and done:
        solved = maybe_when(stats, "status_updated_at")
    reopened = maybe_when(stats, "reopened_at")
    ticket.solved_at = solved
    ticket.first_solved_at = solved if solved is None or reopened is None else min(solved, reopened)
    ticket.reopens = 0 if reopened is None else 1
    ticket.closed_at = closed if ticket.status == "closed" else None


# stats stamps -> vendor_metric names, as seconds from the ticket's created_at.
# docs/kpis.md "Vendor-native figures".
NATIVE = {
    "first_responded_at": "reply_time", "resolved_at": "full_resolution_time",
    "closed_at": "close_time",
}  # fmt: skip


def vendor_metrics(ticket: Ticket, stats: Raw) -> base.VendorMetrics:
    """Freshdesk's own stamps as durations from creation (whole seconds); a stamp that is
    missing, unparseable or before creation is left out."""
    found: list[tuple[str, int]] = []
    for key, name in NATIVE.items():
        try:
            at = maybe_when(stats, key)
        except BadRecordError:
            continue
        if at is not None and at >= ticket.created_at:
            found.append((name, int((at - ticket.created_at).total_seconds())))
    return base.VendorMetrics(ticket.external_id, found)


def status_history(ticket: Ticket, stats: Raw) -> list[StatusChange]:
    """The status changes ``stats`` shows (SPEC §3 ``status_change``), oldest first.

    Freshdesk keeps one stamp per kind of change, the latest, and a reopen clears the
    resolution and close before it (its server: ``update_ticket_states`` stamps each status
    change, ``reset_tkt_states`` empties ``resolved_at`` and ``closed_at`` on a reopen;
    github.com/Ramesh-Veeriaperumal/freshconsult, ``app/models/helpdesk/ticket.rb``,
    ``ticket_state.rb``). So what is known:

    * ``created_at``: open, Freshdesk's default for a new ticket, unless a stamp at that
      same instant says it was created otherwise (pending, resolved, closed: an outbound
      email or an API-created ticket);
    * ``reopened_at``: open again (the latest reopen), out of a resolution whose time the
      reopen erased;
    * ``pending_since``: pending (the latest time it went pending: never cleared);
    * ``resolved_at``, ``closed_at``: solved, closed, of the resolution after the last reopen;
    * ``status_updated_at``: the current status (custom ones through ``status_map``) from the
      last change on; a stamp after it (the API fills a missing one with the row's update
      time) is dropped.

    Not known: every earlier change of a kind (a second pending, a resolution a reopen
    erased), and changes between custom statuses or back to open without a reopen. The
    conversations carry no status, so they add nothing: a requester's reply that reopens a
    ticket is the ``reopened_at`` stamp already.
    """
    latest = maybe_when(stats, "status_updated_at")
    stamps: list[tuple[datetime | None, int, base.TicketStatus]] = [
        (ticket.created_at, 0, "open"),  # rank: of stamps at one instant, the higher is later
        (maybe_when(stats, "reopened_at"), 1, "open"),
        (maybe_when(stats, "pending_since"), 2, "pending"),
        (maybe_when(stats, "resolved_at"), 3, "solved"),
        (maybe_when(stats, "closed_at"), 4, "closed"),
        (latest, 5, ticket.status),
    ]
    known = sorted(
        (at, rank, status) for at, rank, status in stamps
        if at is not None and ticket.created_at <= at and (latest is None or at <= latest)
    )  # fmt: skip
    at_instant = {at: status for at, _, status in known}  # the last of an instant wins
    history: list[StatusChange] = []
    for at, status in at_instant.items():
        if not history or history[-1].status != status:
            history.append(StatusChange(ticket.external_id, at, status))
    return history


def _code(raw: Raw, key: str) -> int:
    value = raw.get(key)
    if type(value) is not int:
        raise BadRecordError(f"{key}: not a code {value!r}")
    return value


def _priority(value: object) -> base.Priority | None:
    return PRIORITY.get(value) if type(value) is int else None


def _id(raw: Raw) -> str:
    found = ref(raw.get("id"))
    if not found:
        raise BadRecordError("missing id")
    return found


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list or any(type(tag) is not str for tag in value):
        raise BadRecordError(f"tags: not a list of strings {value!r}")
    return tuple(value)


# --- conversations ----------------------------------------------------------------------


def map_thread(
    ticket: Ticket, conversations: Iterable[Raw], agents: Container[str], *, outbound: bool
) -> tuple[list[Message], list[Skipped]]:
    """A ticket's messages: its description (the first message: the customer's, or for an
    outbound email the agent's), then its conversations. Sets ``agent_replies`` to the
    public agent messages among the conversations, and the first reply from them when
    ``stats`` had none. A conversation that cannot be mapped is skipped, not the thread."""
    messages = [Message(
        external_id=f"{ticket.external_id}-description", ticket_id=ticket.external_id,
        created_at=ticket.created_at, author_role="agent" if outbound else "customer",
        author_id=ticket.assignee_id if outbound else ticket.requester_id,
    )]  # fmt: skip
    skipped: list[Skipped] = []
    for raw in conversations:
        try:
            messages.append(map_conversation(raw, ticket, agents))
        except (BadRecordError, TypeError, ValueError) as exc:
            skipped.append(Skipped(f"conversation {raw.get('id')}", str(exc)))
    replies = sorted(m.created_at for m in messages[1:] if m.author_role == "agent" and m.public)
    ticket.agent_replies = len(replies)
    if ticket.first_reply_at is None and replies:
        ticket.first_reply_at = replies[0]
    return messages, skipped


def map_conversation(raw: Raw, ticket: Ticket, agents: Container[str]) -> Message:
    """A reply or note of ``GET /tickets/{id}/conversations``: public unless ``private``; an
    agent's note or forward is not public either, as it is no reply to the customer."""
    user = ref(raw.get("user_id"))
    private = raw.get("private")
    if not isinstance(private, bool):
        raise BadRecordError(f"conversation {raw.get('id')}: missing private")
    role = author_role(user, raw.get("incoming") is True, ticket, agents)
    aside = role == "agent" and raw.get("source") in NOT_A_REPLY
    return Message(
        external_id=_id(raw), ticket_id=ticket.external_id, created_at=when(raw, "created_at"),
        author_role=role, public=not private and not aside, author_id=user,
    )  # fmt: skip


def author_role(
    user: str | None, incoming: bool, ticket: Ticket, agents: Container[str]
) -> base.AuthorRole:
    """An agent of the account, else the requester or anyone writing in from outside
    (``incoming``) is the customer; what is left was written inside the helpdesk by someone
    no longer listed as an agent (a deleted agent)."""
    if user is not None and user in agents:
        return "agent"
    if incoming or (user is not None and user == ticket.requester_id):
        return "customer"
    return "agent"


# --- ratings ----------------------------------------------------------------------------


def survey_scales(surveys: Iterable[Raw]) -> dict[str, tuple[int, ...]]:
    """Survey id -> the codes its default question accepts, lowest first (``GET /surveys``)."""
    scales: dict[str, tuple[int, ...]] = {}
    for survey in surveys:
        questions = survey.get("questions")
        for question in questions if isinstance(questions, list) else ():
            if not isinstance(question, dict):
                continue
            accepted = question.get("accepted_ratings")
            default = question.get("default") is True or question.get("id") == DEFAULT_QUESTION
            if default and isinstance(accepted, list) and accepted:
                scales[str(survey.get("id"))] = tuple(sorted(int(code) for code in accepted))
    return scales


def map_rating(raw: Raw, scales: Mapping[str, Sequence[int]]) -> Rating | None:
    """A satisfaction rating's default question on its survey's own scale: the n codes the
    survey accepts become points 1..n. A survey not listed (deleted) is read as the classic
    3-point one when the code fits it, else on the 7-point scale of every code."""
    ratings = raw.get("ratings")
    code = ratings.get(DEFAULT_QUESTION) if isinstance(ratings, dict) else None
    if code is None:
        return None  # no answer to the overall question
    if type(code) is not int:
        raise BadRecordError(f"ratings.{DEFAULT_QUESTION}: not a code {code!r}")
    scale = scales.get(str(raw.get("survey_id"))) or (
        CLASSIC_SCALE if code in CLASSIC_SCALE else SEVEN_POINT_SCALE
    )
    rated = when(raw, "created_at")
    maybe_when(raw, "updated_at")  # a malformed one makes the record suspect: skipped
    return Rating(
        external_id=_id(raw), kind="csat", score=float(scale_point(code, scale)),
        scale_min=1.0, scale_max=float(len(scale)), rated_at=rated,
        ticket_id=ref(raw.get("ticket_id")), comment=_text(raw.get("feedback")) or None,
        agent_id=ref(raw.get("agent_id")),
    )  # fmt: skip


def scale_point(code: int, scale: Sequence[int]) -> int:
    """The 1-based point of ``code`` on ``scale``; a code the scale lacks takes the nearest
    point of the same sentiment (above 100 happy, 100 neutral, below unhappy)."""
    if code in scale:
        return list(scale).index(code) + 1
    same = [point for point, c in enumerate(scale, 1) if _sentiment(c) == _sentiment(code)]
    if not same:
        raise BadRecordError(f"rating code {code} has no place on the scale {list(scale)}")
    return min(same, key=lambda point: abs(scale[point - 1] - code))


def _sentiment(code: int) -> int:
    return (code > NEUTRAL) - (code < NEUTRAL)


# --- people, groups, companies ----------------------------------------------------------


def map_agent(raw: Raw) -> Person:
    contact = raw.get("contact")
    found = contact if isinstance(contact, dict) else {}
    return Person(_id(raw), "agent", _text(found.get("name")), _text(found.get("email")))


def map_requester(raw: Raw) -> Person:
    """The ``requester`` object embedded in a ticket (``include=requester``)."""
    return Person(_id(raw), "customer", _text(raw.get("name")), _text(raw.get("email")))


def map_group(raw: Raw) -> Group:
    return Group(_id(raw), _text(raw.get("name")))


def map_company(raw: Raw) -> Organization:
    return Organization(_id(raw), _text(raw.get("name")), maybe_when(raw, "created_at"))
