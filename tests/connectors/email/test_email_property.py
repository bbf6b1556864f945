"""Property: random mailboxes with a known truth, through a real Dovecot, over two syncs.

Hypothesis draws threads (customer mail and agent replies in rounds, one long pause at
most), how each mail threads (In-Reply-To only, References only, both, or subject only),
where it sits (customer mail in INBOX or Resolved, some filed between the syncs; agent replies
in Sent, some with a Cc'd copy in INBOX or Resolved), auto-acknowledgements and
out-of-office replies (linked by headers or not at all), internal forwards, missing Message-IDs,
missing, unparseable or obsolete-zone dates, broken MIME and charsets, senders in another
letter case, and ``resolve_after`` or not. The mailbox is loaded over IMAP; mail dated before
the first sync is there for it, the rest arrives before the second.

The truth is worked out here from what was generated, never from the connector's parsing or
threading: which mails form a thread, which are one message, who wrote them and where they sit
are known by construction, and SPEC §3b's sentences are applied to that. After each sync
every ticket's fields and message counts must equal it.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient

from cskpi.core.store.engine import open_engine
from tests.connectors.email import test_email as corpus
from tests.connectors.email.dovecot import Dovecot, available
from tests.connectors.email.test_email import connector, query, sync

server, password = corpus.server, corpus.password

pytestmark = [
    pytest.mark.skipif(not available(), reason="Dovecot is not installed (apt dovecot-imapd)"),
    pytest.mark.usefixtures("no_real_sleep"),
]

BASE = datetime(2026, 11, 2, tzinfo=UTC)
NOW1 = BASE + timedelta(days=4)  # the first sync
NOW2 = BASE + timedelta(days=14)  # the second, after every mail
HOUR = timedelta(hours=1)
SUPPORT = "support@acme.test"
AGENTS = ("ana@acme.test", "bob@acme.test")
FOLDERS = ("INBOX", "Sent", "Resolved")
QUIET = timedelta(hours=48)
AUTO_MARKS = (
    "Auto-Submitted: auto-replied", "Auto-Submitted: auto-generated", "X-Autoreply: yes",
    "X-Autorespond: on vacation", "Precedence: auto_reply", "Precedence: bulk",
)  # fmt: skip


@dataclass
class Mail:
    """One generated mail, stored once or twice, and what is known of it by construction."""

    n: int  # X-Test-Id, to find it again over IMAP
    thread: int
    kind: str  # customer | agent | internal | bot
    at: datetime
    mid: str | None  # its Message-ID
    author: str  # the address, lower case
    lines: list[str]  # its header lines but the Date
    date: str  # utc | est | missing | garbage
    body: str  # plain | latin1 | broken | unknown
    folder: str  # where it sits in the end
    first_folder: str  # where it sat at the first sync (dated before it)
    copy: str | None = None  # a second folder holding the same message
    stored: bool = True  # a bot linked to nothing is no thread's

    @property
    def early(self) -> bool:
        return self.at < NOW1


@dataclass
class Box:
    mails: list[Mail] = field(default_factory=list)
    customers: dict[int, tuple[str, str]] = field(default_factory=dict)  # address, subject
    quiet: timedelta | None = None
    page_size: int = 4


# --- generating -------------------------------------------------------------------------


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    box = Box(quiet=draw(st.sampled_from([None, QUIET])), page_size=draw(st.integers(2, 9)))
    for k in range(draw(st.integers(1, 5))):
        _thread(draw, box, k)
    return box


def _thread(draw: st.DrawFn, box: Box, k: int) -> None:
    """Rounds of customer mail and agent replies; one pause of 49-70 hours at most."""
    customer, subject = f"cust{k}@c{k}.test", draw(st.sampled_from(["Help", "Invoice", "Login"]))
    box.customers[k] = customer, subject
    at = BASE + draw(st.integers(0, 150)) * HOUR + k * timedelta(minutes=1)
    filing = draw(st.sampled_from(["all", "none", "head", "random"]))
    head = draw(st.integers(1, 4))
    long_pause = draw(st.booleans())  # one, before a round, so that the thread spans < 7 days
    asked = 0
    for r in range(draw(st.integers(1, 3))):
        for i in range(draw(st.integers(1, 2))):
            if long_pause and r > 0 and i == 0 and draw(st.booleans()):
                at += draw(st.integers(49, 70)) * HOUR
                long_pause = False
            elif asked:
                at += draw(st.integers(1, 8)) * HOUR
            filed = {"all": True, "none": False, "head": asked < head}.get(filing)
            _customer_mail(draw, box, k, at, draw(st.booleans()) if filed is None else filed)
            asked += 1
        for _ in range(draw(st.integers(0, 2))):
            at += draw(st.integers(1, 8)) * HOUR
            _agent_mail(draw, box, k, at)


def _common(draw: st.DrawFn, box: Box, k: int, kind: str, at: datetime) -> dict[str, Any]:
    n = len(box.mails) + 1
    domain = "acme.test" if kind != "customer" else f"c{k}.test"
    mid = f"m{n}.t{k}@{domain}" if kind == "bot" or draw(st.integers(0, 6)) else None
    return {
        "n": n, "thread": k, "kind": kind, "at": at, "mid": mid,
        "date": draw(st.sampled_from(["utc", "utc", "utc", "est", "missing", "garbage"])),
        "body": draw(st.sampled_from(["plain", "plain", "latin1", "broken", "unknown"])),
    }  # fmt: skip


def _reply_headers(draw: st.DrawFn, box: Box, k: int) -> list[str]:
    """Threading headers citing the thread's conversation so far (subject only without ids)."""
    ids = [m.mid for m in box.mails if m.thread == k and m.kind in ("customer", "agent") and m.mid]
    style = draw(st.sampled_from(["in-reply-to", "references", "both", "subject"]))
    if not ids or style == "subject":
        return []
    lines = [] if style == "references" else [f"In-Reply-To: <{ids[-1]}>"]
    return lines + ([] if style == "in-reply-to" else [f"References: {_refs(ids)}"])


def _refs(ids: list[str]) -> str:
    return " ".join(f"<{i}>" for i in ids)


def _customer_mail(draw: st.DrawFn, box: Box, k: int, at: datetime, filed: bool) -> None:
    customer, subject = box.customers[k]
    first = not any(m.thread == k and m.kind == "customer" for m in box.mails)
    shown = customer.upper() if draw(st.booleans()) else customer
    lines = [f"From: Cust {k} <{shown}>", f"To: {SUPPORT}"]
    if first:
        lines.append(f"Subject: {subject}")
    else:
        prefix = draw(st.sampled_from(["Re", "RE", "AW"]))
        lines += [f"Subject: {prefix}: {subject}", *_reply_headers(draw, box, k)]
    folder = "Resolved" if filed else "INBOX"
    moved = filed and at < NOW1 and draw(st.booleans())  # filed between the two syncs
    common = _common(draw, box, k, "customer", at)
    mail = Mail(author=customer, lines=lines, folder=folder,
                first_folder="INBOX" if moved else folder, **common)  # fmt: skip
    box.mails.append(mail)
    if draw(st.integers(0, 3)) == 0:
        _auto_acknowledgement(draw, box, k, mail)


def _agent_mail(draw: st.DrawFn, box: Box, k: int, at: datetime) -> None:
    customer, subject = box.customers[k]
    agent = draw(st.sampled_from(AGENTS))
    copy = draw(st.sampled_from([None, None, "INBOX", "Resolved"]))
    lines = [f"From: {agent.partition('@')[0].title()} <{agent}>", f"To: {customer}"]
    lines += [f"Cc: {SUPPORT}"] if copy else []
    lines += [f"Subject: Re: {subject}", *_reply_headers(draw, box, k)]
    common = _common(draw, box, k, "agent", at)
    mail = Mail(author=agent, lines=lines, folder="Sent", first_folder="Sent", copy=copy, **common)
    box.mails.append(mail)
    roll = draw(st.integers(0, 5))
    if roll == 0:
        _out_of_office(draw, box, k, mail)
    elif roll == 1:
        _internal_forward(draw, box, k, mail)


def _auto_acknowledgement(draw: st.DrawFn, box: Box, k: int, to: Mail) -> None:
    customer, subject = box.customers[k]
    linked = to.mid is not None and draw(st.booleans())
    lines = [f"From: Acme Support <{SUPPORT}>", f"To: {customer}", f"Subject: Re: {subject}",
             draw(st.sampled_from(AUTO_MARKS[:2]))]  # fmt: skip
    lines += [f"In-Reply-To: <{to.mid}>"] if linked else []
    folder = draw(st.sampled_from(["Sent", "INBOX"]))
    common = _common(draw, box, k, "bot", to.at + timedelta(seconds=30))
    box.mails.append(Mail(author=SUPPORT, lines=lines, folder=folder, first_folder=folder,
                          stored=linked, **common))  # fmt: skip


def _out_of_office(draw: st.DrawFn, box: Box, k: int, to: Mail) -> None:
    customer, subject = box.customers[k]
    linked = to.mid is not None and draw(st.booleans())
    prefix = draw(st.sampled_from(["Automatic reply: Re", "Re"]))
    lines = [f"From: {customer}", f"To: {to.author}", f"Subject: {prefix}: {subject}",
             draw(st.sampled_from(AUTO_MARKS))]  # fmt: skip
    lines += [f"In-Reply-To: <{to.mid}>", f"References: <{to.mid}>"] if linked else []
    folder = draw(st.sampled_from(["INBOX", "Resolved"]))
    common = _common(draw, box, k, "bot", to.at + timedelta(seconds=30))
    box.mails.append(Mail(author=customer, lines=lines, folder=folder, first_folder=folder,
                          stored=linked, **common))  # fmt: skip


def _internal_forward(draw: st.DrawFn, box: Box, k: int, after: Mail) -> None:
    ids = [m.mid for m in box.mails if m.thread == k and m.kind == "customer" and m.mid]
    if not ids:
        return
    _, subject = box.customers[k]
    to = next(a for a in AGENTS if a != after.author)
    lines = [f"From: {after.author}", f"To: {to}", f"Subject: Fwd: {subject}",
             f"References: {_refs(ids)}"]  # fmt: skip
    common = _common(draw, box, k, "internal", after.at + timedelta(seconds=45))
    box.mails.append(Mail(author=after.author, lines=lines, folder="Sent", first_folder="Sent",
                          **common))  # fmt: skip


# --- rendering and loading ----------------------------------------------------------------

_BODIES = {
    "plain": b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello, thanks.\r\n",
    "latin1": b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe aus K\xf6ln\r\n",
    "broken": b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain; "
    b"charset=bogus\r\n\r\n\xff\xfe broken\r\n",
    "unknown": b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n\xe9t\xe9\r\n",
}


def render(mail: Mail) -> bytes:
    lines = [*mail.lines, f"X-Test-Id: <t{mail.n}>"]
    lines += [f"Message-ID: <{mail.mid}>"] if mail.mid else []
    if mail.date == "utc":
        lines.append(f"Date: {mail.at:%a, %d %b %Y %H:%M:%S} +0000")
    elif mail.date == "est":
        lines.append(f"Date: {mail.at - timedelta(hours=5):%a, %d %b %Y %H:%M:%S} EST")
    elif mail.date == "garbage":
        lines.append("Date: sometime next week")
    return "\r\n".join(lines).encode() + b"\r\n" + _BODIES[mail.body]


def load(imap: IMAPClient, mails: list[Mail], first: bool) -> None:
    """APPEND the mails (with INTERNALDATE = their time) where they sit at that sync."""
    for mail in sorted(mails, key=lambda m: (m.at, m.n)):
        raw = render(mail)
        folder = mail.first_folder if first else mail.folder
        for where in [folder] + ([mail.copy] if mail.copy else []):
            imap.append(where, raw, msg_time=mail.at)


def file_away(imap: IMAPClient, mails: list[Mail]) -> None:
    """Move into Resolved what was filed between the syncs."""
    imap.select_folder("INBOX")
    for mail in mails:
        imap.move(imap.search(["HEADER", "X-Test-Id", f"<t{mail.n}>"]), "Resolved")
    imap.close_folder()


def empty(imap: IMAPClient) -> None:
    for folder in FOLDERS:
        imap.select_folder(folder)
        found = imap.search("ALL")
        if found:
            imap.delete_messages(found)
            imap.expunge()
        imap.close_folder()


# --- the truth ------------------------------------------------------------------------------


def stamp(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def truth(
    box: Box, mails: list[Mail], filed: Callable[[Mail], bool], now: datetime,
    seen: dict[int, datetime],
) -> dict[str, tuple[Any, ...]]:  # fmt: skip
    """Per requester: (subject, status, raw_status, created_at, first_reply_at,
    first_solved_at, solved_at, agent_replies, reopens), by SPEC §3b's sentences."""
    found: dict[str, tuple[Any, ...]] = {}
    for k, (customer, subject) in box.customers.items():
        talk = sorted((m for m in mails if m.thread == k and m.kind in ("customer", "agent")),
                      key=lambda m: m.at)  # fmt: skip
        if talk:
            found[customer] = (subject, *_course(talk, filed, now, box.quiet, seen.get(k)))
    return found


def _course(
    talk: list[Mail], filed: Callable[[Mail], bool], now: datetime, quiet: timedelta | None,
    seen: datetime | None,
) -> tuple[Any, ...]:  # fmt: skip
    asks = [m for m in talk if m.kind == "customer"]
    replies = [m for m in talk if m.kind == "agent"]
    solves: list[datetime] = []
    reopens = 0
    for ask, again in pairwise(asks):
        # "A reopen is a customer mail dated after a solve the connector has established."
        last = [m for m in talk if m.at < again.at][-1]
        established = []
        if seen is not None and ask.at <= seen < again.at:
            established.append(seen)  # the thread seen solved by an earlier sync
        if quiet and last.kind == "agent" and again.at - last.at >= quiet:
            established.append(last.at)  # a resolve_after quiet period
        if filed(ask) and not filed(again):
            established.append(last.at)  # filed, then customer mail outside the folder
        if established:
            solves.append(max(established))
            reopens += 1
    last = talk[-1]
    calm = quiet is not None and last.kind == "agent" and now - last.at >= quiet
    solved = filed(asks[-1]) or calm  # "its latest customer mail sits in a resolved folder"
    solves += [last.at] if solved else []
    raw = "resolved_folder" if filed(asks[-1]) else "resolved_after" if calm else None
    raw = raw or ("answered" if last.kind == "agent" else "open")
    return (
        "solved" if solved else "open", raw, stamp(asks[0].at),
        stamp(replies[0].at if replies else None), stamp(solves[0] if solves else None),
        stamp(solves[-1] if solves else None), len(replies), reopens,
    )  # fmt: skip


def message_truth(box: Box, mails: list[Mail]) -> dict[str, Counter[tuple[str, int]]]:
    counts: dict[str, Counter[tuple[str, int]]] = {}
    for k, (customer, _) in box.customers.items():
        mine = [m for m in mails if m.thread == k and m.stored]
        if any(m.kind == "customer" for m in mine):
            roles = {"customer": "customer", "agent": "agent", "internal": "agent", "bot": "bot"}
            counts[customer] = Counter((roles[m.kind], int(m.kind != "internal")) for m in mine)
    return counts


# --- the test ---------------------------------------------------------------------------------


def stored_tickets(engine: Any) -> dict[str, tuple[Any, ...]]:
    rows = query(engine, "SELECT requester_id, subject, status, raw_status, created_at, "
                 "first_reply_at, first_solved_at, solved_at, agent_replies, reopens "
                 "FROM ticket WHERE deleted = 0")  # fmt: skip
    return {str(r[0]).removeprefix("box:"): tuple(r[1:]) for r in rows}


def stored_messages(engine: Any) -> dict[str, Counter[tuple[str, int]]]:
    rows = query(
        engine,
        "SELECT t.requester_id, m.author_role, m.public, count(*) FROM message m "
        "JOIN ticket t ON t.id = m.ticket_id WHERE t.deleted = 0 GROUP BY 1, 2, 3",
    )
    counts: dict[str, Counter[tuple[str, int]]] = {}
    for requester, role, public, n in rows:
        counts.setdefault(str(requester).removeprefix("box:"), Counter())[(role, public)] = n
    return counts


@pytest.fixture(scope="module")
def box_server(server: Dovecot) -> Dovecot:
    """One mailbox for every example: each starts by emptying it."""
    return server.mailbox()


@settings(
    max_examples=15, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(box=boxes())
def test_random_mailboxes_sync_to_their_truth(box_server: Dovecot, box: Box) -> None:
    early = [m for m in box.mails if m.early]
    with box_server.client() as imap:
        empty(imap)
        load(imap, early, first=True)
    extra = {"page_size": box.page_size, "resolve_after": "48h" if box.quiet else None}
    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{Path(folder) / 'mail.db'}")
        sync(engine, connector(box_server, NOW1, **extra))
        first = truth(box, early, lambda m: m.first_folder == "Resolved", NOW1, {})
        assert stored_tickets(engine) == first
        assert stored_messages(engine) == message_truth(box, early)

        with box_server.client() as imap:
            file_away(imap, [m for m in early if m.first_folder != m.folder])
            load(imap, [m for m in box.mails if not m.early], first=False)
        sync(engine, connector(box_server, NOW2, **extra))
        seen = {k: datetime.fromtimestamp(t[6], UTC) for k, t in _by_thread(box, first).items()
                if t[1] == "solved"}  # fmt: skip
        assert stored_tickets(engine) == truth(
            box, box.mails, lambda m: m.folder == "Resolved", NOW2, seen
        )
        assert stored_messages(engine) == message_truth(box, box.mails)
        engine.dispose()


def _by_thread(box: Box, rows: dict[str, tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    return {k: rows[c] for k, (c, _) in box.customers.items() if c in rows}
