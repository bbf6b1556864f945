"""Mail threads and the state that keeps them across incremental syncs.

The connector is stateless and fetches only new mail, yet a reply arriving next week must join
this week's ticket and the ticket's derived fields (replies, reopens, status) must be computed
over all its mail. So the stream's cursor carries the thread index: per folder the
``UIDVALIDITY`` and last UID, and per thread a compact line per message (id, time, role,
author, resolved flag, rating) plus the Message-IDs it was referenced by. It is stored as
zlib-compressed JSON (about 30 bytes a message; see docs/email.md).

Joining, in this order (https://www.jwz.org/doc/threading.html, simplified):

1. A message whose id, References or In-Reply-To key is already in the index joins that
   thread. Referenced ids that have not arrived yet are indexed too ("phantoms"), so order of
   arrival does not matter. A message that links two threads merges them.
2. Otherwise (or when the threads it links have no customer yet: auto-replies and internal
   mail only) a reply (``Re:``/``Fwd:``/``AW:``/``SV:``... prefix) joins the latest thread with
   the same normalised subject and the same customer within ``thread_window`` (a mail without
   a prefix joins only a thread of replies whose original had not been read yet).
3. Otherwise it starts a thread.

An auto-reply (``BOT``) takes step 1 only: it never joins, starts or merges a thread by its
subject (SPEC §3b). Without a known link it waits in a thread of its own that has no subject
or customer, so nothing can join it by subject, until a mail it refers to (or that refers to
it) arrives; alone it is no ticket.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

CURSOR_PREFIX = "v1:"
# Reply and forward prefixes of common mail clients, several languages, with "Re[2]:" counts.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|tr|rif|odp|vl)(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE
)

# Entry roles: customer, agent (public reply), internal (agent to agents only), bot.
CUSTOMER, AGENT, INTERNAL, BOT = "c", "a", "i", "b"


@dataclass(slots=True)
class Entry:
    """One message of a thread, as the cursor keeps it."""

    id: str
    at: int  # unix seconds, UTC
    role: str
    author: str | None
    resolved: bool = False  # a copy sits in a resolved folder
    score: float | None = None  # a survey reply's rating

    def dump(self) -> list[Any]:
        return [self.id, self.at, self.role, self.author, int(self.resolved), self.score]

    @classmethod
    def load(cls, row: list[Any]) -> Entry:
        return cls(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


@dataclass(slots=True)
class Thread:
    no: int
    subject: str
    customer: str | None
    entries: dict[str, Entry] = field(default_factory=dict)
    phantoms: set[str] = field(default_factory=set)  # referenced ids not (yet) seen
    ticket: str | None = None  # the ticket id last emitted
    status: str | None = None  # the status last emitted
    subject_at: int | None = None  # time of the customer mail the subject is from
    solved: int | None = None  # the solve time last emitted, while the status is solved
    seen: set[int] = field(default_factory=set)  # solve times stored by earlier, whole syncs

    @property
    def first_at(self) -> int:
        return min(e.at for e in self.entries.values())

    @property
    def last_at(self) -> int:
        return max(e.at for e in self.entries.values())

    def talk_span(self) -> tuple[int, int]:
        """First and last time of its mail other than auto-replies (those join nothing)."""
        times = [e.at for e in self.entries.values() if e.role != BOT] or [self.first_at]
        return min(times), max(times)

    def dump(self) -> list[Any]:
        rows = [e.dump() for e in self.entries.values()]
        return [self.no, self.subject, self.customer, self.ticket, self.status, rows,
                sorted(self.phantoms), self.subject_at, self.solved, sorted(self.seen)]  # fmt: skip

    @classmethod
    def load(cls, row: list[Any]) -> Thread:
        entries = {r[0]: Entry.load(r) for r in row[5]}
        extra = row[8:10] if len(row) >= 10 else [None, []]  # cursors of before issue 22
        return cls(row[0], row[1], row[2], entries, set(row[6]), row[3], row[4], row[7],
                   extra[0], set(extra[1]))  # fmt: skip

    def take_subject(self, arrival: Arrival) -> None:
        """The ticket's subject is its first customer mail's (an agent's "Re:" until then)."""
        at = arrival.entry.at
        if arrival.entry.role == CUSTOMER and (self.subject_at is None or at < self.subject_at):
            self.subject, self.subject_at = arrival.subject[:300], at


def normalise_subject(subject: str) -> tuple[str, bool]:
    """The subject without reply/forward prefixes, case-folded; and whether it had one."""
    stripped = _PREFIX.sub("", subject)
    return " ".join(stripped.split()).casefold(), stripped != subject


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message to thread: its id and parents' keys, who it concerns, what it is."""

    id: str
    parents: tuple[str, ...]
    subject: str
    customer: str | None  # the sender, or for an agent's mail the first customer recipient
    entry: Entry


@dataclass
class MailState:
    """Folder positions and every thread; ``touched`` and ``retired`` collect what changed."""

    folders: dict[str, tuple[int, int]] = field(default_factory=dict)  # uidvalidity, last uid
    threads: dict[int, Thread] = field(default_factory=dict)
    next_no: int = 1
    index: dict[str, int] = field(default_factory=dict)  # message key -> thread no
    by_subject: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    authors: set[str] = field(default_factory=set)  # every sender seen
    touched: set[int] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)  # ids of messages added or moved
    retired: list[tuple[str, int]] = field(default_factory=list)  # (ticket id, thread no)

    # --- cursor ------------------------------------------------------------------------

    def dump(self) -> str:
        body = {"f": self.folders, "n": self.next_no,
                "t": [t.dump() for t in self.threads.values()]}  # fmt: skip
        packed = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)  # speed
        return CURSOR_PREFIX + base64.b64encode(packed).decode("ascii")

    @classmethod
    def load(cls, cursor: str) -> MailState:
        if not cursor.startswith(CURSOR_PREFIX):
            raise ValueError("not an email cursor; run `cskpi sync --full` for this connector")
        body = json.loads(zlib.decompress(base64.b64decode(cursor[len(CURSOR_PREFIX) :])))
        state = cls({name: (v[0], v[1]) for name, v in body["f"].items()}, next_no=body["n"])
        for row in body["t"]:
            state._register(Thread.load(row))
        return state

    def _register(self, thread: Thread) -> None:
        self.threads[thread.no] = thread
        for k in (*thread.entries, *thread.phantoms):
            self.index[k] = thread.no
        self.authors.update(e.author for e in thread.entries.values() if e.author)
        self._index_subject(thread)

    def _index_subject(self, thread: Thread) -> None:
        subject, _ = normalise_subject(thread.subject)
        if subject and thread.customer:
            self.by_subject.setdefault((subject, thread.customer), set()).add(thread.no)

    @property
    def position(self) -> int | None:
        """The newest message time (unix seconds) in any thread."""
        return max((t.last_at for t in self.threads.values() if t.entries), default=None)

    # --- joining -------------------------------------------------------------------------

    def mark_resolved(self, mail_id: str) -> bool:
        """Flag a known message as sitting in a resolved folder; False if it is not known."""
        thread = self.threads.get(self.index.get(mail_id, 0))
        entry = thread.entries.get(mail_id) if thread else None
        if thread is None or entry is None:
            return False
        if not entry.resolved:
            entry.resolved = True
            self.touched.add(thread.no)
        return True

    def add(self, arrival: Arrival, window: timedelta) -> bool:
        """Thread one message; False if it was known (then only its resolved flag counts)."""
        if arrival.entry.resolved and self.mark_resolved(arrival.id):
            return False
        known = self.threads.get(self.index.get(arrival.id, 0))
        if known is not None and arrival.id in known.entries:
            return False
        linked = {self.index[k] for k in (arrival.id, *arrival.parents) if k in self.index}
        if arrival.entry.role != BOT and not any(self.threads[n].customer for n in linked):
            # Linked to auto-replies or internal mail only (they lend no subject and no
            # customer, e.g. read from the sent folder first): the subject may still join.
            found = self._by_subject(arrival, window)
            linked |= {found.no} if found else set()
        thread = self._merge(sorted(linked)) if linked else self._new(arrival)
        self._attach(thread, arrival)
        self.touched.add(thread.no)
        return True

    def _attach(self, thread: Thread, arrival: Arrival) -> None:
        """Put the message in ``thread`` and index its id, its parents and its customer."""
        thread.entries[arrival.id] = arrival.entry
        self.fresh.add(arrival.id)
        if arrival.entry.author:
            self.authors.add(arrival.entry.author)
        thread.take_subject(arrival)
        thread.phantoms.discard(arrival.id)
        self.index[arrival.id] = thread.no
        for parent in arrival.parents:
            if parent not in self.index:
                thread.phantoms.add(parent)
                self.index[parent] = thread.no
        if arrival.entry.role == BOT:
            return  # an auto-reply lends a thread neither its subject nor its customer
        if thread.customer is None and arrival.customer:
            thread.customer = arrival.customer
        if not thread.subject:
            thread.subject = arrival.subject[:300]
        self._index_subject(thread)

    def _new(self, arrival: Arrival) -> Thread:
        bot = arrival.entry.role == BOT
        subject, customer = ("", None) if bot else (arrival.subject[:300], arrival.customer)
        thread = Thread(self.next_no, subject, customer)
        self.next_no += 1
        self._register(thread)
        return thread

    def _by_subject(self, arrival: Arrival, window: timedelta) -> Thread | None:
        """A reply joins the latest thread on its subject and customer within the window; a
        first mail also joins a thread that so far holds only replies (their original was
        read later, e.g. the sent folder before the inbox)."""
        subject, is_reply = normalise_subject(arrival.subject)
        customer = arrival.customer
        if not (subject and customer):
            return None
        span = int(window.total_seconds())
        at = arrival.entry.at
        candidates = (self.threads.get(no) for no in self.by_subject.get((subject, customer), ()))
        near: list[tuple[int, int, Thread]] = []
        for t in candidates:
            if t is None or not (is_reply or normalise_subject(t.subject)[1]):
                continue
            first, last = t.talk_span()
            if first - span <= at <= last + span:
                near.append((last, t.no, t))
        return max(near, key=lambda found: found[:2])[2] if near else None

    def _merge(self, numbers: list[int]) -> Thread:
        """One thread from several: the one whose ticket was emitted (else the oldest) stays;
        the others' tickets are retired (stored as deleted: merged)."""
        threads = sorted((self.threads[n] for n in numbers), key=lambda t: (t.ticket is None, t.no))
        keep = threads[0]
        for other in threads[1:]:
            keep.entries.update(other.entries)
            self.fresh.update(other.entries)  # their messages move to the kept ticket
            keep.phantoms |= other.phantoms
            for k in (*other.entries, *other.phantoms):
                self.index[k] = keep.no
            keep.phantoms -= keep.entries.keys()
            keep.seen |= other.seen
            if other.subject_at is not None and (
                keep.subject_at is None or other.subject_at < keep.subject_at
            ):
                keep.subject, keep.subject_at = other.subject, other.subject_at
            if other.ticket is not None:
                self.retired.append((other.ticket, keep.no))
            self._forget(other)
        return keep

    def _forget(self, thread: Thread) -> None:
        del self.threads[thread.no]
        self.touched.discard(thread.no)
        subject, _ = normalise_subject(thread.subject)
        if thread.customer:
            self.by_subject.get((subject, thread.customer), set()).discard(thread.no)

    def establish(self) -> None:
        """At the end of a whole sync: every thread stored as solved was seen solved, so a
        customer mail dated after that solve is a reopen, wherever it is filed later."""
        for thread in self.threads.values():
            if thread.status == "solved" and thread.solved is not None:
                thread.seen.add(thread.solved)

    def take_changes(self) -> tuple[list[Thread], list[tuple[str, int]], set[str]]:
        """The threads touched, the tickets retired and the messages added or moved since the
        last call; then forget them."""
        touched = [self.threads[n] for n in sorted(self.touched) if n in self.threads]
        changes = touched, self.retired, self.fresh
        self.touched, self.retired, self.fresh = set(), [], set()
        return changes


def open_threads(state: MailState) -> Iterable[Thread]:
    """Threads whose ticket is open: a quiet period may have solved them since."""
    return (t for t in state.threads.values() if t.ticket is not None and t.status == "open")
