"""Zendesk JSON to cskpi records: pure functions, no I/O.

Each ``map_*`` function takes one object as the API returns it and gives one record (or
``None`` for an object that is not a record, such as an unanswered survey), raising
:class:`BadRecordError` when a required field is missing or a date cannot be parsed.
:func:`map_each` turns those errors into :class:`~cskpi.connectors.base.Skipped` entries, so
one bad record never costs its page.

Field references:
tickets https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/,
ticket metrics https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_metrics/,
ticket events https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/#incremental-ticket-event-export,
via types https://developer.zendesk.com/documentation/ticketing/reference-guides/via-types/,
satisfaction ratings https://developer.zendesk.com/api-reference/ticketing/ticket-management/satisfaction_ratings/,
users https://developer.zendesk.com/api-reference/ticketing/users/users/.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from datetime import datetime, timedelta

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
    VendorMetrics,
)
from cskpi.connectors.fields import (
    BadRecordError,
    Mapped,
    Raw,
    from_unix,
    maybe_when,
    ref,
    when,
)
from cskpi.connectors.fields import map_each as map_each  # re-exported: tests import it here

MERGED_TAG = "closed_by_merge"  # Zendesk tags the source tickets a merge closes
# Comments Zendesk writes itself carry author_id -1, no user's id (seen in the wild:
# https://github.com/lukeburden/django-zengo/pull/7).
SYSTEM_AUTHOR = "-1"

_STATUS: dict[str, base.TicketStatus] = {
    "new": "new", "open": "open", "pending": "pending", "hold": "on_hold",
    "solved": "solved", "closed": "closed",
}  # fmt: skip
_PRIORITY: dict[str, base.Priority] = {
    "urgent": "urgent", "high": "high", "normal": "normal", "low": "low",
}  # fmt: skip
# `via.channel` of a ticket: the "Ticket created by" column of the via types reference.
_CHANNEL: dict[str, base.Channel] = {
    "email": "email", "web": "web", "forum": "web", "api": "api", "chat": "chat",
    "voice": "phone", "twitter": "social", "facebook": "social", "native_messaging": "messaging",
}  # fmt: skip
_PERSON_ROLE: dict[str, base.PersonRole] = {
    "end-user": "customer", "agent": "agent", "admin": "agent",
}  # fmt: skip
_CSAT = {"good": 1.0, "bad": 0.0}  # legacy CSAT: two boxes, good is the top one
# Child events that set a field: Create (on a new ticket) and Change. The docs' oldest ticket
# event example has no event_type at all (None): its status key is read the same way.
_SETS_A_FIELD = frozenset({"Create", "Change", None})


def _id(raw: Raw) -> str:
    found = ref(raw.get("id"))
    if not found:
        raise BadRecordError("missing id")
    return found


def _count(raw: Raw, key: str) -> int:
    value = raw.get(key)
    if type(value) is int:
        return value
    if value is None:
        return 0
    raise BadRecordError(f"{key}: not a count {value!r}")


def _calendar(metrics: Raw, key: str) -> float | None:
    """The calendar half of a ``{calendar, business}`` pair; null while unfulfilled."""
    pair = metrics.get(key)
    value = pair.get("calendar") if type(pair) is dict else None
    return float(value) if type(value) is int or type(value) is float else None


def via_channel(via: object) -> str | None:
    """``via.channel`` (an object on tickets and comments; a bare string on some events)."""
    if isinstance(via, dict):
        via = via.get("channel")
    return via if isinstance(via, str) else None


# --- tickets ----------------------------------------------------------------------------


def map_ticket(raw: Raw, metrics: Raw | None = None) -> Ticket:
    """A ticket from the incremental export, with its metric set (side-loaded with
    ``include=metric_sets``, nested as ``metric_set`` or passed in from ``metric_sets``).

    Deleted tickets (``status: deleted``) and merged ones (tag ``closed_by_merge``) are kept
    with ``deleted`` set, so the store never resurrects them and KPIs leave them out.
    """
    raw_status = raw.get("status")
    deleted = raw_status == "deleted"
    status: base.TicketStatus | None = "closed" if deleted else _STATUS.get(str(raw_status))
    if status is None:
        raise BadRecordError(f"status: unknown value {raw_status!r}")
    tags = _tags(raw.get("tags"))
    ticket = Ticket(
        external_id=_id(raw), created_at=when(raw, "created_at"),
        updated_at=when(raw, "updated_at"), status=status, raw_status=str(raw_status),
        subject=_text(raw.get("subject")), priority=_PRIORITY.get(str(raw.get("priority"))),
        channel=_channel(raw), type=_text(raw.get("type")), tags=tags,
        requester_id=ref(raw.get("requester_id")), organization_id=ref(raw.get("organization_id")),
        assignee_id=ref(raw.get("assignee_id")), group_id=ref(raw.get("group_id")),
        deleted=deleted or MERGED_TAG in tags,
    )  # fmt: skip
    metric_set = metrics if metrics is not None else raw.get("metric_set")
    if isinstance(metric_set, dict):
        apply_metrics(ticket, metric_set)
    return ticket


def _tags(value: object) -> tuple[str, ...]:
    if type(value) is list:
        for tag in value:
            if type(tag) is not str:
                raise BadRecordError(f"tags: not a list of strings {value!r}")
        return tuple(value)
    if value is None:
        return ()
    raise BadRecordError(f"tags: not a list of strings {value!r}")


def _text(value: object) -> str | None:
    return value if type(value) is str else None


def _channel(raw: Raw) -> base.Channel:
    if raw.get("from_messaging_channel") is True:  # documented ticket flag, whatever the via
        return "messaging"
    return _CHANNEL.get(via_channel(raw.get("via")) or "", "other")


def apply_metrics(ticket: Ticket, metrics: Raw) -> None:
    """Fill the ticket's reply, solve and routing fields from its metric set.

    ``replies`` counts public agent replies; ``group_stations``/``assignee_stations`` count
    the groups/assignees a ticket passed through, so changes are one fewer. Solve times are
    exact (``solved_at``); the first reply and a first solve before a reopen are known only
    as durations from creation, in whole minutes unless ``reply_time_in_seconds`` is there
    (messaging tickets only).
    """
    ticket.agent_replies = replies = _count(metrics, "replies")
    ticket.reopens = _count(metrics, "reopens")
    groups, assignees = _count(metrics, "group_stations"), _count(metrics, "assignee_stations")
    ticket.group_changes = groups - 1 if groups > 1 else 0
    ticket.assignee_changes = assignees - 1 if assignees > 1 else 0
    ticket.solved_at = maybe_when(metrics, "solved_at")
    ticket.first_reply_at = _first_reply(ticket.created_at, metrics) if replies else None
    ticket.first_solved_at = _first_solve(ticket, metrics)
    if ticket.status == "closed" and not ticket.deleted:
        ticket.closed_at = maybe_when(metrics, "status_updated_at")  # its last status change


def _first_reply(created: datetime, metrics: Raw) -> datetime | None:
    """Only asked once a reply counts: some accounts report 0 minutes for "no reply yet"."""
    seconds = _calendar(metrics, "reply_time_in_seconds")
    if seconds is None:
        minutes = _calendar(metrics, "reply_time_in_minutes")
        seconds = None if minutes is None else minutes * 60
    return None if seconds is None else created + timedelta(seconds=seconds)


def _first_solve(ticket: Ticket, metrics: Raw) -> datetime | None:
    if ticket.reopens == 0:  # never reopened: the only solve is the latest one
        return ticket.solved_at
    minutes = _calendar(metrics, "first_resolution_time_in_minutes")
    if minutes is None:
        return ticket.solved_at
    first = ticket.created_at + timedelta(minutes=minutes)
    return first if ticket.solved_at is None else min(first, ticket.solved_at)


# metric_set pairs {calendar, business} in whole minutes -> vendor_metric names (the
# business one with ``_business``). docs/kpis.md "Vendor-native figures".
NATIVE = {
    "reply_time_in_minutes": "reply_time",
    "first_resolution_time_in_minutes": "first_resolution_time",
    "full_resolution_time_in_minutes": "full_resolution_time",
    "agent_wait_time_in_minutes": "agent_wait_time",
    "requester_wait_time_in_minutes": "requester_wait_time",
    "on_hold_time_in_minutes": "on_hold_time",
}


def vendor_metrics(raw: Raw, metrics: Raw | None = None) -> VendorMetrics | None:
    """Zendesk's own durations from a ticket's metric set, in seconds (minutes x 60); None
    for a ticket without one (deleted). A half that is null (not happened yet) or not a
    whole number of minutes is left out; the reply time only once a reply counts (see
    :func:`_first_reply`)."""
    metric_set = metrics if metrics is not None else raw.get("metric_set")
    ticket_id = ref(raw.get("id"))
    if not isinstance(metric_set, dict) or ticket_id is None:
        return None
    replied = type(metric_set.get("replies")) is int and metric_set["replies"] > 0
    found: list[tuple[str, int]] = []
    for key, name in NATIVE.items():
        pair = metric_set.get(key)
        if not isinstance(pair, dict) or (name == "reply_time" and not replied):
            continue
        for half, suffix in (("calendar", ""), ("business", "_business")):
            minutes = pair.get(half)
            if type(minutes) is int and 0 <= minutes < 2**31 // 60:
                found.append((name + suffix, minutes * 60))
    return VendorMetrics(ticket_id, found)


def newest_position(raws: Iterable[object]) -> datetime | None:
    """Where a page of an export stands: its newest ``generated_timestamp`` (moved by system
    updates too, and what the ticket export filters on), else its newest ``updated_at``."""
    objects = [raw for raw in raws if isinstance(raw, dict)]
    stamps = [g for raw in objects if type(g := raw.get("generated_timestamp")) is int]
    if stamps:
        return from_unix(max(stamps))
    updated = (_position(raw) for raw in objects)
    return max((moment for moment in updated if moment is not None), default=None)


def _position(raw: Raw) -> datetime | None:
    try:
        return maybe_when(raw, "updated_at")
    except BadRecordError:
        return None


# --- ticket events: comments and status changes -----------------------------------------


def map_event(event: Raw, agents: Container[str]) -> Mapped:
    """One ticket event of ``incremental/ticket_events``: its comments and status changes."""
    messages, bad = map_comments(event, agents)
    changes, worse = map_status_changes(event)
    return [*messages, *changes], [*bad, *worse]


def _children(event: Raw) -> list[Raw]:
    children = event.get("child_events") or ()
    return [c for c in children if isinstance(c, dict)] if isinstance(children, list) else []


def map_comments(event: Raw, agents: Container[str]) -> Mapped:
    """The comments in one ticket event of ``incremental/ticket_events`` with
    ``include=comment_events``: every child event of type ``Comment`` becomes a message."""
    messages: list[base.Record] = []
    skipped: list[Skipped] = []
    for child in _children(event):
        if child.get("event_type") != "Comment":
            continue
        try:
            messages.append(_comment(child, event, agents))
        except BadRecordError as exc:
            skipped.append(Skipped(str(child.get("id")), f"comment: {exc}"))
    return messages, skipped


def map_status_changes(event: Raw) -> Mapped:
    """The statuses one ticket event sets (SPEC §3 ``status_change``): a ``Create`` child
    gives the status the ticket was created with, a ``Change`` child each later one.

    The export names the changed field as the child's own key, ``{"status": "open",
    "previous_value": "new", "event_type": "Change"}`` (the docs' ticket event example,
    facetoe/zenpy ``specification/zendesk/ticket_event.json``: ``"status": "solved"``); the
    audit shape, ``field_name: "status"`` with ``value``, is read too. A status is
    normalised as the ticket's is (:data:`_STATUS`; ``deleted`` is ``closed``, as in
    :func:`map_ticket`). ``previous_value`` adds nothing: the change before says it.
    """
    changes: list[base.Record] = []
    skipped: list[Skipped] = []
    for child in _children(event):
        value = _status_set(child)
        if value is None:
            continue
        try:
            changes.append(_status_change(child, event, value))
        except BadRecordError as exc:
            skipped.append(Skipped(str(child.get("id")), f"status change: {exc}"))
    return changes, skipped


def _status_set(child: Raw) -> object | None:
    """The status a Create or Change child sets, else ``None``."""
    if child.get("event_type", child.get("type")) not in _SETS_A_FIELD:
        return None
    if child.get("field_name") == "status":
        return child.get("value")
    return child.get("status")


def _status_change(child: Raw, event: Raw, value: object) -> StatusChange:
    ticket_id = ref(event.get("ticket_id"))
    if ticket_id is None:
        raise BadRecordError("missing ticket_id")
    status = "closed" if value == "deleted" else _STATUS.get(str(value))
    if status is None:
        raise BadRecordError(f"status: unknown value {value!r}")
    at = maybe_when(child, "created_at") or maybe_when(event, "created_at")
    return StatusChange(ticket_id, at or when(event, "timestamp"), status)


def _comment(child: Raw, event: Raw, agents: Container[str]) -> Message:
    ticket_id = ref(event.get("ticket_id"))
    author = ref(child.get("author_id"))
    public = child.get("public")
    if ticket_id is None or author is None or not isinstance(public, bool):
        missing = "ticket_id" if ticket_id is None else "author_id" if author is None else "public"
        raise BadRecordError(f"missing {missing}")
    created = maybe_when(child, "created_at") or maybe_when(event, "created_at")
    return Message(
        external_id=_id(child),
        ticket_id=ticket_id,
        created_at=created or when(event, "timestamp"),
        author_role=author_role(author, via_channel(child.get("via")), agents),
        public=public,
        author_id=author,
    )


def author_role(author: str, channel: str | None, agents: Container[str]) -> base.AuthorRole:
    """``system`` for Zendesk itself, ``bot`` for a business rule (trigger or automation,
    via type ``rule``), ``agent`` for agents and admins, ``customer`` for everyone else."""
    if author == SYSTEM_AUTHOR:
        return "system"
    if channel == "rule":
        return "bot"
    return "agent" if author in agents else "customer"


# --- ratings, people, groups, organizations ---------------------------------------------


def map_rating(raw: Raw) -> Rating | None:
    """A legacy CSAT rating: good 1, bad 0 on a 0..1 scale, rated on its last update (the
    answer), for the ticket's assignee. The record is made when the survey is offered, so
    its ``created_at`` is ``offered_at``; an offered survey not answered yet (``score:
    offered``) is a rating with no score, rated (offered) at that time. ``unoffered`` is no
    survey at all: no rating."""
    score = raw.get("score")
    if score == "unoffered":
        return None
    offered = maybe_when(raw, "created_at")
    value = None if score == "offered" else _CSAT.get(str(score))
    if value is None and score != "offered":
        raise BadRecordError(f"score: unknown value {score!r}")
    rated = offered if value is None else maybe_when(raw, "updated_at") or offered
    if rated is None:
        raise BadRecordError("missing created_at")
    return Rating(
        external_id=_id(raw), kind="csat", score=value, scale_min=0.0, scale_max=1.0,
        rated_at=rated, ticket_id=ref(raw.get("ticket_id")),
        comment=_text(raw.get("comment")) or None, agent_id=ref(raw.get("assignee_id")),
        offered_at=offered,
    )  # fmt: skip


def map_survey_response(raw: Raw, points: int = 5) -> Rating | None:
    """A response to Zendesk's current CSAT survey (``GET /api/v2/guide/survey_responses``):
    its ``customer_satisfaction`` rating-scale answer as csat on the survey's own scale,
    1..``points`` (the ``survey_points`` setting: the list does not carry the options),
    rated when the answer was last updated, for the ticket its subject names (``zen:ticket:N``
    or ``subjects[].type`` ticket). A response with no such answer (skipped, or none yet) is
    no rating: the list gives it no time to date an offer by.
    https://developer.zendesk.com/api-reference/ticketing/ticket-management/csat_survey_responses/
    """
    answer = _satisfaction_answer(raw.get("answers"))
    if answer is None:
        return None
    rating = answer.get("rating")
    if type(rating) is not int or not 1 <= rating <= points:
        raise BadRecordError(f"answers.rating: not 1-{points} {rating!r}")
    comments = [a.get("value") for a in _objects(raw.get("answers"))
                if a.get("type") == "open_ended"]  # fmt: skip
    return Rating(
        external_id=_id(raw), kind="csat", score=float(rating), scale_min=1.0,
        scale_max=float(points),
        rated_at=maybe_when(answer, "updated_at") or when(answer, "created_at"),
        ticket_id=_subject_ticket(raw), comment=next((c for c in comments if _text(c)), None),
    )  # fmt: skip


def _objects(value: object) -> list[Raw]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _satisfaction_answer(answers: object) -> Raw | None:
    """The rating-scale answer to the customer-satisfaction question (the first rating
    answer when no question says its sub-type)."""
    ratings = [a for a in _objects(answers) if a.get("type") == "rating_scale"]
    for answer in ratings:
        question = answer.get("question")
        if isinstance(question, dict) and question.get("sub_type") == "customer_satisfaction":
            return answer
    untyped = [a for a in ratings if not isinstance(a.get("question"), dict)
               or "sub_type" not in a["question"]]  # fmt: skip
    return untyped[0] if untyped else None


def _subject_ticket(raw: Raw) -> str | None:
    """The ticket a response is about: ``subjects`` (current docs) or ``subject_zrns``
    (``zen:ticket:99``; an older example wrote ``zrn:ticket:99``)."""
    for subject in _objects(raw.get("subjects")):
        if subject.get("type") in ("ticket", "request"):
            return ref(subject.get("id"))
    zrns = raw.get("subject_zrns")
    for zrn in zrns if isinstance(zrns, list) else ():
        parts = str(zrn).split(":")
        if len(parts) == 3 and parts[1] in ("ticket", "request"):
            return parts[2] or None
    return None


def map_user(raw: Raw) -> Person:
    role = _PERSON_ROLE.get(str(raw.get("role")))
    if role is None:
        raise BadRecordError(f"role: unknown value {raw.get('role')!r}")
    return Person(_id(raw), role, _text(raw.get("name")), _text(raw.get("email")))


def map_group(raw: Raw) -> Group | None:
    """A live group; a deleted one (``deleted: true``, which ``GET /groups`` lists unless
    ``exclude_deleted`` is set) is no group to store: ``Group`` has no deleted flag."""
    if raw.get("deleted") is True:
        return None
    return Group(_id(raw), _text(raw.get("name")))


def map_organization(raw: Raw) -> Organization:
    return Organization(_id(raw), _text(raw.get("name")), maybe_when(raw, "created_at"))
