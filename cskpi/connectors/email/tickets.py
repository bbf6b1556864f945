"""A thread's records: its ticket with every derived field, its messages and ratings.

Everything is recomputed from all of a thread's messages whenever one joins (ticket rows are
upserted keep-newer by ``updated_at``, which is the newest message's time, so the recomputed
row replaces the stored one).

The resolution rule works on *rounds*: one or more customer messages and the agent replies
that follow them. A round is resolved when its last customer message (or a reply after it)
sits in a resolved folder, or when it ends with an agent's reply followed by ``resolve_after``
of quiet (until the next customer message, or until now). A round resolves at its last
message's time (IMAP records no move time). A customer message after a resolved round is a
reopen. Bot mail, internal agent mail and survey replies take no part in rounds.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cskpi.connectors import base
from cskpi.connectors.email.threads import AGENT, BOT, CUSTOMER, INTERNAL, Entry, Thread

_ROLES: dict[str, base.AuthorRole] = {
    CUSTOMER: "customer", AGENT: "agent", INTERNAL: "agent", BOT: "bot"
}  # fmt: skip
# Consumer mail providers: their users share a domain but not an organization.
FREE_MAIL = frozenset((
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
    "yahoo.com", "ymail.com", "icloud.com", "me.com", "aol.com", "gmx.de", "gmx.net", "web.de",
    "proton.me", "protonmail.com", "yandex.ru", "mail.ru", "qq.com", "163.com",
))  # fmt: skip


@dataclass(frozen=True)
class Rules:
    resolve_after: timedelta | None
    rating_kind: base.RatingKind
    rating_scale: tuple[float, float]


@dataclass(frozen=True)
class _Round:
    start: Entry  # its first customer message
    last: Entry
    flagged: bool


def when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def organization_of(address: str | None) -> str | None:
    domain = address.rpartition("@")[2] if address else ""
    return domain if domain and domain not in FREE_MAIL else None


def ticket_of(thread: Thread, rules: Rules, now: datetime) -> base.Ticket | None:
    """The thread's ticket, or None while it has no customer message (outbound, internal)."""
    timeline = sorted(thread.entries.values(), key=lambda e: (e.at, e.id))
    customers = [e for e in timeline if e.role == CUSTOMER and e.score is None]
    if not customers:
        return None
    first = customers[0]
    after = timeline[timeline.index(first) :]
    replies = [e for e in after if e.role == AGENT]
    rounds = _rounds(after)
    resolved = _resolved(rounds, rules, now)
    solves = [r.last.at for r, done in zip(rounds, resolved, strict=True) if done]
    last_solved = resolved[-1]
    status: base.TicketStatus = "solved" if last_solved else "open"
    return base.Ticket(
        external_id=first.id, created_at=when(first.at), updated_at=when(timeline[-1].at),
        status=status, raw_status=_raw_status(rounds, last_solved), subject=thread.subject,
        channel="email", requester_id=first.author, organization_id=organization_of(first.author),
        assignee_id=replies[-1].author if replies else None,
        first_reply_at=when(replies[0].at) if replies else None,
        first_solved_at=when(solves[0]) if solves else None,
        solved_at=when(solves[-1]) if solves else None,
        agent_replies=len(replies), reopens=len(solves) - (1 if last_solved else 0),
    )  # fmt: skip


def _rounds(timeline: list[Entry]) -> list[_Round]:
    rounds: list[_Round] = []
    start: Entry | None = None
    last: Entry | None = None
    flagged = False
    for entry in timeline:
        if entry.role not in (CUSTOMER, AGENT) or entry.score is not None:
            continue
        if entry.role == CUSTOMER and last is not None and last.role == AGENT:
            assert start is not None
            rounds.append(_Round(start, last, flagged))
            start = None
        if entry.role == CUSTOMER:
            start = start or entry
            flagged = entry.resolved  # the round's last customer message decides
        else:
            flagged = flagged or entry.resolved
        last = entry
    if start is not None and last is not None:
        rounds.append(_Round(start, last, flagged))
    return rounds


def _resolved(rounds: list[_Round], rules: Rules, now: datetime) -> list[bool]:
    """Per round: resolved by its folder flag, or by an agent's last word and quiet."""
    quiet = rules.resolve_after.total_seconds() if rules.resolve_after else None
    done: list[bool] = []
    for i, round_ in enumerate(rounds):
        next_at = rounds[i + 1].start.at if i + 1 < len(rounds) else now.timestamp()
        answered = round_.last.role == AGENT
        calm = quiet is not None and answered and next_at - round_.last.at >= quiet
        done.append(round_.flagged or calm)
    return done


def _raw_status(rounds: list[_Round], solved: bool) -> str:
    if solved:
        return "resolved_folder" if rounds[-1].flagged else "resolved_after"
    return "answered" if rounds and rounds[-1].last.role == AGENT else "open"


def records_of(
    thread: Thread, ticket: base.Ticket, rules: Rules, only: Container[str] | None = None
) -> list[base.Record]:
    """The ticket with its messages and ratings (those in ``only`` when given: a message
    already stored under this ticket need not be written again)."""
    records: list[base.Record] = [ticket]
    low, high = rules.rating_scale
    tid = ticket.external_id
    for e in sorted(thread.entries.values(), key=lambda e: (e.at, e.id)):
        if only is not None and e.id not in only:
            continue
        at = when(e.at)
        records.append(base.Message(e.id, tid, at, _ROLES[e.role], e.role != INTERNAL, e.author))
        if e.score is not None:
            kind = rules.rating_kind
            rating = base.Rating(e.id, kind, e.score, low, high, at, tid, None, ticket.assignee_id)
            records.append(rating)
    if ticket.organization_id and only is None:
        records.append(base.Organization(ticket.organization_id, ticket.organization_id))
    return records


def retired_ticket(ticket_id: str, survivor: base.Ticket) -> base.Ticket:
    """A ticket merged into ``survivor``: stored as deleted, so it never counts again."""
    return replace(survivor, external_id=ticket_id, deleted=True)
