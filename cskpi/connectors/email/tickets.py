"""A thread's records: its ticket with every derived field, its messages and ratings.

Everything is recomputed from all of a thread's messages whenever one joins (ticket rows are
upserted keep-newer by ``updated_at``, which is the newest message's time, so the recomputed
row replaces the stored one).

The resolution rule (SPEC §3b). Where mail sits tells only the thread's state *now*: it is
solved when its latest customer mail sits in a resolved folder, or, with ``resolve_after``,
when an agent wrote last and it has been quiet that long; the solve time is the latest
message's, of customer mail and public replies (IMAP records no move time). Earlier solves
are only those the connector has established, each followed by a customer mail, which is its
reopen:

- the thread was seen solved by an earlier whole sync (:attr:`Thread.seen`);
- an agent wrote last and it stayed quiet for ``resolve_after`` before the customer wrote;
- a customer mail in a resolved folder is followed by a customer mail outside one (the thread
  was filed before that mail came).

Mail of earlier rounds filed together with the latest is no earlier solve. Between two
customer mails there is at most one solve, at the latest of its established times. "Customer
mail" leaves out survey replies; auto-replies and internal mail take no part at all.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

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
class Life:
    """A thread's course: ``solves[i]`` is followed by the reopen at ``reopens[i]``, and the
    last solve, when ``solved`` is true, by nothing (the thread is solved now)."""

    created: Entry  # its first customer mail
    replies: list[Entry]  # public agent replies after it
    solves: list[int]
    reopens: list[int]
    solved: bool
    raw_status: str  # open | answered | resolved_folder | resolved_after


def when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def organization_of(address: str | None) -> str | None:
    domain = address.rpartition("@")[2] if address else ""
    return domain if domain and domain not in FREE_MAIL else None


def _asks(entry: Entry) -> bool:
    return entry.role == CUSTOMER and entry.score is None


def life_of(thread: Thread, rules: Rules, now: datetime) -> Life | None:
    """The thread's course, or None while it has no customer mail (outbound, internal)."""
    timeline = sorted(thread.entries.values(), key=lambda e: (e.at, e.id))
    first = next((e for e in timeline if _asks(e)), None)
    if first is None:
        return None
    talk = [e for e in timeline[timeline.index(first) :] if _asks(e) or e.role == AGENT]
    rounds = _rounds(talk)
    solves: list[int] = []
    reopens: list[int] = []
    quiet = rules.resolve_after.total_seconds() if rules.resolve_after else None
    for (asked, last), (again, _) in pairwise(rounds):
        calm = quiet is not None and last.role == AGENT and again.at - last.at >= quiet
        seen = [s for s in thread.seen if asked.at <= s < again.at]
        times = seen + ([last.at] if calm or (asked.resolved and not again.resolved) else [])
        if times:
            solves.append(max(times))
            reopens.append(again.at)
    asked, last = rounds[-1]
    calm = quiet is not None and last.role == AGENT and now.timestamp() - last.at >= quiet
    if asked.resolved or calm:
        solves.append(last.at)
    raw = "resolved_folder" if asked.resolved else "resolved_after" if calm else None
    raw = raw or ("answered" if last.role == AGENT else "open")
    replies = [e for e in talk if e.role == AGENT]
    return Life(first, replies, solves, reopens, asked.resolved or calm, raw)


def _rounds(talk: list[Entry]) -> list[tuple[Entry, Entry]]:
    """(customer mail, the last of it and the agent replies before the next customer mail)."""
    rounds: list[tuple[Entry, Entry]] = []
    for entry in talk:
        if entry.role == CUSTOMER:
            rounds.append((entry, entry))
        else:
            rounds[-1] = (rounds[-1][0], entry)
    return rounds


def ticket_of(thread: Thread, rules: Rules, now: datetime) -> base.Ticket | None:
    """The thread's ticket, or None while it has no customer message (outbound, internal)."""
    life = life_of(thread, rules, now)
    if life is None:
        return None
    first, replies, solves = life.created, life.replies, life.solves
    status: base.TicketStatus = "solved" if life.solved else "open"
    return base.Ticket(
        external_id=first.id, created_at=when(first.at),
        updated_at=when(max(e.at for e in thread.entries.values())),
        status=status, raw_status=life.raw_status, subject=thread.subject,
        channel="email", requester_id=first.author, organization_id=organization_of(first.author),
        assignee_id=replies[-1].author if replies else None,
        first_reply_at=when(replies[0].at) if replies else None,
        first_solved_at=when(solves[0]) if solves else None,
        solved_at=when(solves[-1]) if solves else None,
        agent_replies=len(replies), reopens=len(life.reopens),
    )  # fmt: skip


def status_history(
    thread: Thread, rules: Rules, now: datetime
) -> list[tuple[datetime, base.TicketStatus]]:
    """The thread's status changes in time order, for ``status_change``: ``open`` at its
    creation, ``solved`` at each established solve, ``open`` at each reopen. The first and
    last ``solved`` are the ticket's first_solved_at and solved_at, the ``open`` after the
    first its reopens, the last entry its status; empty while the thread is no ticket."""
    life = life_of(thread, rules, now)
    if life is None:
        return []
    changes: list[tuple[datetime, base.TicketStatus]] = [(when(life.created.at), "open")]
    for i, solve in enumerate(life.solves):
        changes.append((when(solve), "solved"))
        if i < len(life.reopens):
            changes.append((when(life.reopens[i]), "open"))
    return changes


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
