"""The ``email`` connector: a shared support mailbox over IMAP, measured like a helpdesk.

One stream, ``mail``, yields tickets (one per thread), messages, ratings (survey replies
matching ``rating_pattern``), people and organizations. Modules, in the order mail flows:
:mod:`.imap` (connect, sign in with a password or, through :mod:`.oauth2` and :mod:`.sasl`,
an OAuth2 access token; fetch new UIDs read-only), :mod:`.parse` (headers to facts,
best-effort), :mod:`.threads` (threads, and the state kept in the cursor), :mod:`.tickets`
(derived fields and the resolution rule). docs/email.md has the rules.

Cursor semantics: per folder ``UIDVALIDITY`` and the last stored UID, plus the thread index
(see :mod:`.threads`). Every page checkpoints: its cursor holds the folders read so far and
exactly the threads built from them; the last page's also marks the solves the sync stored
as seen (reopens count from them). A changed ``UIDVALIDITY`` rescans that folder from UID 1;
the rescanned mail re-derives the same ids and is recognised, so nothing doubles. ``since``
(``--since``, ``--full``, a first sync from ``start_date``) rebuilds the state from the whole
mailbox, as threads need every message, and emits threads active since then.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal, Self

from imapclient import IMAPClient
from pydantic import Field, field_validator, model_validator

from cskpi.connectors import base
from cskpi.connectors.base import ConnectorSettings, Page, PagesStream, StatusHistory, own_settings
from cskpi.connectors.email.imap import Fetched, Login, check_folders, examine, new_mail, session
from cskpi.connectors.email.imap import sent_folder as find_sent_folder
from cskpi.connectors.email.oauth2 import OAuth2Settings, TokenSource
from cskpi.connectors.email.parse import Mail, parse_mail
from cskpi.connectors.email.threads import (
    AGENT,
    BOT,
    CUSTOMER,
    INTERNAL,
    Arrival,
    Entry,
    MailState,
    Thread,
    open_threads,
)
from cskpi.connectors.email.tickets import (
    Rules,
    records_of,
    retired_ticket,
    status_history,
    ticket_of,
)
from cskpi.core.clock import Clock, SystemClock
from cskpi.core.config.hosts import is_loopback
from cskpi.core.config.secrets import Secret
from cskpi.core.config.timespec import PositiveDuration

log = logging.getLogger("cskpi.connectors.email.connector")

_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


class EmailSettings(ConnectorSettings):
    """Settings of a ``[connectors.NAME]`` table with ``type = "email"``."""

    type: str = "email"
    host: str = Field(description="IMAP server host name.")
    port: int | None = Field(default=None, ge=1, le=65535, description="993 (ssl), else 143.")
    tls: Literal["ssl", "starttls", "none"] = Field(
        default="ssl", description="ssl | starttls | none (none only for 127.0.0.1)."
    )
    username: str = Field(description="The mailbox login.")
    password: Secret | None = Field(
        default=None, description="The mailbox password (a secret reference); or oauth2."
    )
    oauth2: OAuth2Settings | None = Field(
        default=None, description="Sign in with an OAuth2 refresh token instead of password."
    )
    ca_bundle: str | None = Field(default=None, description="CA bundle to verify the server.")
    folders: list[str] = Field(default=["INBOX"], min_length=1, description="Folders of mail.")
    sent_folder: str | None = Field(
        default=None, description="Where agent replies are kept; default: the \\Sent folder."
    )
    agent_addresses: list[str] = Field(
        min_length=1, description='Agents\' addresses and "*@domain" patterns.'
    )
    resolved_folders: list[str] = Field(default=[], description="A thread filed here is solved.")
    resolve_after: PositiveDuration | None = Field(
        default=None, description="Solved when an agent wrote last and it stayed quiet this long."
    )
    thread_window: PositiveDuration = Field(
        default=timedelta(days=7), description="How far apart a subject-only reply may join."
    )
    rating_pattern: str | None = Field(
        default=None, description='Regex for survey replies, e.g. "Rating: (\\d)/5".'
    )
    rating_kind: base.RatingKind = "csat"
    rating_scale: tuple[float, float] = Field(default=(1, 5), description="Scale of the score.")
    page_size: int = Field(default=500, ge=1, le=5000, description="Messages per page.")

    @field_validator("rating_pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if compiled.groups < 1:
            raise ValueError("needs a group around the score, e.g. Rating: (\\d)/5")
        return value

    @model_validator(mode="after")
    def _plain_only_onis_loopback(self) -> Self:
        if self.tls == "none" and not is_loopback(self.host):
            raise ValueError('tls = "none" is allowed only for 127.0.0.1: use ssl or starttls')
        return self

    @model_validator(mode="after")
    def _one_sign_in(self) -> Self:
        if self.password is None and self.oauth2 is None:
            raise ValueError("needs password or oauth2 (an OAuth2 refresh token) to sign in")
        if self.password is not None and self.oauth2 is not None:
            raise ValueError("give either password or oauth2, not both")
        return self


@dataclass(frozen=True)
class _Agents:
    addresses: frozenset[str]
    domains: frozenset[str]

    @classmethod
    def of(cls, patterns: Sequence[str]) -> _Agents:
        lowered = [p.strip().lower() for p in patterns]
        domains = frozenset(p[2:] for p in lowered if p.startswith("*@"))
        return cls(frozenset(p for p in lowered if not p.startswith("*@")), domains)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        return address in self.addresses or address.rpartition("@")[2] in self.domains


class EmailConnector:
    """A support mailbox over IMAP (``type = "email"``); see the module docstring."""

    type: ClassVar[str] = "email"
    Settings: ClassVar[builtins.type[ConnectorSettings]] = EmailSettings

    def __init__(self, name: str, settings: ConnectorSettings, *, clock: Clock | None = None):
        self.name = name
        self.settings = own_settings(settings, EmailSettings)
        self.clock: Clock = clock or SystemClock()
        s = self.settings
        password = s.password.get_secret_value() if s.password is not None else None
        tokens = TokenSource(name, s.oauth2, self.clock) if s.oauth2 is not None else None
        self.login = Login(
            s.host, s.port or _PORTS[s.tls], s.tls, s.username, password, s.ca_bundle,
            f"the password of connector {name} (connectors.{name}.password)", tokens,
        )  # fmt: skip
        self.agents = _Agents.of(s.agent_addresses)
        self.rules = Rules(s.resolve_after, s.rating_kind, s.rating_scale)
        self.rating = re.compile(s.rating_pattern) if s.rating_pattern else None

    def check(self) -> None:
        """Log in and open every folder read-only. A refused login names the secret; with
        OAuth2, which step failed: the token endpoint, or the IMAP server."""
        with session(self.login) as client:
            check_folders(client, [folder for folder, _ in self.folders(client)])

    def streams(self) -> Sequence[base.Stream]:
        """One stream, ``mail``: tickets, messages, ratings, people, organizations."""
        return [PagesStream("mail", self._read)]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    def folders(self, client: IMAPClient) -> list[tuple[str, bool]]:
        """(folder, is a resolved folder), oldest mail first so that a thread's first mail
        usually comes before its replies: the sent folder, the resolved folders (filed,
        older threads), then the mail folders."""
        sent = self.settings.sent_folder or find_sent_folder(client)
        if sent is None:
            log.warning("%s: no sent folder found (no \\Sent flag): set sent_folder", self.name)
        resolved = list(dict.fromkeys(self.settings.resolved_folders))
        plain = list(dict.fromkeys([*([sent] if sent else []), *self.settings.folders]))
        first = [(n, False) for n in plain[:1] if sent and n not in resolved]
        rest = [(n, False) for n in plain[len(first) :] if n not in resolved]
        return first + [(n, True) for n in resolved] + rest

    def _read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Each page is yielded once the next one is made, so that the last can carry the
        state of a whole sync: the solves it stored are established (see ``establish``)."""
        state = MailState.load(cursor) if cursor and since is None else MailState()
        held: Page | None = None
        for page in self._pages(state, since, self.now()):
            if held is not None:
                yield held
            held = page
        if held is not None:
            state.establish()
            yield replace(held, cursor=state.dump())

    def _pages(self, state: MailState, since: datetime | None, now: datetime) -> Iterator[Page]:
        with session(self.login) as client:
            for folder, resolved in self.folders(client):
                yield from self._folder(client, state, folder, resolved, since, now)
        if self.rules.resolve_after is not None:
            yield from self._settle(state, since, now)

    def _folder(
        self, client: IMAPClient, state: MailState, folder: str, resolved: bool,
        since: datetime | None, now: datetime,
    ) -> Iterator[Page]:  # fmt: skip
        validity = examine(client, folder)
        stored = state.folders.get(folder)
        after = stored[1] if stored and stored[0] == validity else 0
        if stored and stored[0] != validity:
            log.warning(
                "%s: folder %s has a new UIDVALIDITY (%s, was %s): rescanning it",
                self.name, folder, validity, stored[0],
            )  # fmt: skip
        state.folders[folder] = (validity, after)
        pages = 0
        with_text = self.rating is not None
        for last_uid, chunk in new_mail(client, folder, after, self.settings.page_size, with_text):
            persons = self._thread(state, chunk, resolved, now)
            state.folders[folder] = (validity, last_uid)
            pages += 1
            yield self._page(state, persons, since, now)
        if pages == 0 and stored != state.folders[folder]:
            yield self._page(state, [], since, now)  # a first or renewed UIDVALIDITY

    def _thread(
        self, state: MailState, chunk: list[Fetched], resolved: bool, now: datetime
    ) -> list[base.Person]:
        mails = sorted(
            (parse_mail(f.folder, f.uid, f.raw, f.received, now) for f in chunk),
            key=lambda m: (m.sent_at, m.id),
        )
        people: dict[str, base.Person] = {}
        for mail in mails:
            arrival = self._arrival(mail, resolved)
            known = mail.sender in state.authors
            if not state.add(arrival, self.settings.thread_window):
                continue  # read before (a rescan, or a copy in another folder)
            role = arrival.entry.role
            # A mail without a display name must not blank the name stored from another.
            if mail.sender and role != BOT and (mail.sender_name or not known):
                kind: base.PersonRole = "customer" if role == CUSTOMER else "agent"
                person = base.Person(mail.sender, kind, mail.sender_name, mail.sender)
                if mail.sender_name or mail.sender not in people:
                    people[mail.sender] = person
        return list(people.values())

    def _arrival(self, mail: Mail, resolved: bool) -> Arrival:
        score: float | None = None
        if mail.auto:
            role, customer = BOT, mail.sender
        elif mail.sender in self.agents:
            outside = [r for r in mail.recipients if r not in self.agents]
            role, customer = (AGENT, outside[0]) if outside else (INTERNAL, None)
        else:
            role, customer = CUSTOMER, mail.sender
            score = self._score(mail)
        at = int(mail.sent_at.timestamp())
        entry = Entry(mail.id, at, role, mail.sender, resolved, score)
        return Arrival(mail.id, mail.parents, mail.subject, customer, entry)

    def _score(self, mail: Mail) -> float | None:
        found = self.rating.search(mail.text) if self.rating else None
        if found is None:
            return None
        try:
            return float(found.group("score") if "score" in found.re.groupindex else found[1])
        except (TypeError, ValueError):
            log.warning("%s UID %s: rating pattern matched no number", mail.folder, mail.uid)
            return None

    def _page(
        self, state: MailState, people: list[base.Person], since: datetime | None, now: datetime
    ) -> Page:
        """The records of every thread that changed, and the state as the page's cursor."""
        touched, retired, fresh = state.take_changes()
        records: list[base.Record] = list(people)
        floor = int(since.timestamp()) if since else None
        for thread in touched:
            if floor is None or thread.last_at >= floor or thread.ticket is not None:
                records += self._emit(thread, fresh, now)
        for ticket_id, number in retired:
            survivor = ticket_of(state.threads[number], self.rules, now)
            if survivor is not None and survivor.external_id != ticket_id:
                records.append(retired_ticket(ticket_id, survivor))
                records.append(StatusHistory(ticket_id, []))  # its history is the survivor's
        position = state.position
        at = datetime.fromtimestamp(position, UTC) if position is not None else None
        return Page(records, state.dump(), at)

    def _emit(self, thread: Thread, fresh: set[str], now: datetime) -> list[base.Record]:
        """The thread's ticket and new messages; every message when the ticket is new."""
        ticket = ticket_of(thread, self.rules, now)
        if ticket is None:
            return []
        renamed = thread.ticket != ticket.external_id
        records = records_of(thread, ticket, self.rules, None if renamed else fresh)
        # Recomputed whole from the mail each time: a solve time may have moved since.
        records.append(StatusHistory(ticket.external_id, status_history(thread, self.rules, now)))
        if renamed and thread.ticket is not None:
            records.append(retired_ticket(thread.ticket, ticket))  # an earlier mail arrived
            records.append(StatusHistory(thread.ticket, []))
        thread.ticket, thread.status = ticket.external_id, ticket.status
        solved = ticket.solved_at if ticket.status == "solved" else None
        thread.solved = int(solved.timestamp()) if solved else None
        return records

    def _settle(self, state: MailState, since: datetime | None, now: datetime) -> Iterator[Page]:
        """Open tickets that ``resolve_after`` of quiet has solved since they were stored."""
        for thread in open_threads(state):
            ticket = ticket_of(thread, self.rules, now)
            if ticket is not None and ticket.status != thread.status:
                state.touched.add(thread.no)
        if state.touched:
            yield self._page(state, [], since, now)
