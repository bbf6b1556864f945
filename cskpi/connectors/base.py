"""The connector boundary: the records a connector yields and the protocol it implements.

A connector is stateless. The sync engine owns cursors and storage: it hands a stream
the cursor it stored last time (or a ``since`` for a backfill), and the stream yields
:class:`Page` objects. The engine commits each page's records together with the page's
cursor in one transaction, so a crash between pages loses nothing and doubles nothing.

Ids inside records are the source's own (``external_id``); the store prefixes them with
the connector's name (``"acme-zendesk:361"``), so a connector never needs to know its name
to build ids. All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict

TicketStatus = Literal["new", "open", "pending", "on_hold", "solved", "closed"]
Priority = Literal["urgent", "high", "normal", "low"]
Channel = Literal["email", "web", "chat", "phone", "api", "social", "messaging", "other"]
AuthorRole = Literal["customer", "agent", "bot", "system"]
RatingKind = Literal["csat", "nps", "ces", "esat"]
PersonRole = Literal["agent", "customer", "bot"]

TICKET_STATUSES: tuple[str, ...] = ("new", "open", "pending", "on_hold", "solved", "closed")
PRIORITIES: tuple[str, ...] = ("urgent", "high", "normal", "low")
CHANNELS: tuple[str, ...] = ("email", "web", "chat", "phone", "api", "social", "messaging", "other")


@dataclass(slots=True)
class Ticket:
    """A ticket (or conversation, or mail thread) in its current state."""

    external_id: str
    created_at: datetime
    updated_at: datetime
    status: TicketStatus
    raw_status: str | None = None
    subject: str | None = None
    priority: Priority | None = None
    channel: Channel | None = None
    type: str | None = None
    tags: Sequence[str] = ()
    requester_id: str | None = None
    organization_id: str | None = None
    assignee_id: str | None = None
    group_id: str | None = None
    first_reply_at: datetime | None = None
    first_solved_at: datetime | None = None
    solved_at: datetime | None = None
    closed_at: datetime | None = None
    agent_replies: int = 0
    reopens: int = 0
    group_changes: int = 0
    assignee_changes: int = 0
    deleted: bool = False


@dataclass(slots=True)
class Message:
    """One message (comment, conversation part, email) on a ticket."""

    external_id: str
    ticket_id: str
    created_at: datetime
    author_role: AuthorRole
    public: bool = True
    author_id: str | None = None


@dataclass(slots=True)
class Rating:
    """A satisfaction answer: CSAT, NPS, CES or eSAT on its own scale.

    A survey the vendor sent and the customer has not answered (yet) is a rating with
    ``score`` None and ``offered_at`` set; its ``rated_at`` is then the offer time. Every
    KPI over ratings leaves such rows out; ``csat_response_rate`` counts them (SPEC §7)."""

    external_id: str
    kind: RatingKind
    score: float | None
    scale_min: float
    scale_max: float
    rated_at: datetime
    ticket_id: str | None = None
    comment: str | None = None
    agent_id: str | None = None
    offered_at: datetime | None = None


@dataclass(slots=True)
class Person:
    external_id: str
    role: PersonRole
    name: str | None = None
    email: str | None = None


@dataclass(slots=True)
class Group:
    external_id: str
    name: str | None = None


@dataclass(slots=True)
class Organization:
    external_id: str
    name: str | None = None
    created_at: datetime | None = None


@dataclass(slots=True)
class StatusChange:
    """A ticket's normalised status from ``at`` on: one status change the source records
    (SPEC §3 ``status_change``). A source yields each change it knows of, as often as it
    likes: the same ticket, instant and status is one change."""

    ticket_id: str
    at: datetime
    status: TicketStatus


@dataclass(slots=True)
class StatusHistory:
    """A ticket's whole status history, as a source that recomputes it from scratch gives it
    (the mailbox, from where its mail sits): it replaces every change stored for the ticket,
    so a solve time that moved leaves no stale change behind."""

    ticket_id: str
    changes: Sequence[tuple[datetime, TicketStatus]]


@dataclass(slots=True)
class VendorMetrics:
    """The durations a ticket's vendor computes itself, as (name, whole seconds) pairs
    (SPEC §7 ``vendor_metric``; the names are docs/kpis.md's, e.g. ``reply_time``,
    ``reply_time_business``, ``handling_time``). The vendor's latest figures: they replace
    every metric stored for the ticket, so one the vendor no longer gives is dropped."""

    ticket_id: str
    metrics: Sequence[tuple[str, int]]


Record = (
    Ticket
    | Message
    | Rating
    | Person
    | Group
    | Organization
    | StatusChange
    | StatusHistory
    | VendorMetrics
)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source record that could not be mapped: logged, counted, and not stored."""

    record_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """One unit of progress.

    ``cursor`` is where to resume after this page is stored; ``None`` means "no checkpoint
    here" (a stream not sorted by its cursor checkpoints only on its last page).
    ``position`` is the source time the cursor stands at (the newest ``updated_at``
    delivered so far); the engine compares positions so that a ``--since`` backfill never
    moves a stored cursor backwards.

    """

    records: Sequence[Record]
    cursor: str | None = None
    position: datetime | None = None
    skipped: Sequence[Skipped] = field(default_factory=tuple)


class ConnectorSettings(BaseModel):
    """Keys every ``[connectors.NAME]`` table accepts; a connector type extends this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    schedule: str | None = None
    every: str | None = None
    start_date: datetime | None = None
    # The longest a vendor may make a run wait (Retry-After, a used-up quota), e.g. "15m";
    # asked to wait longer, the run fails and the next one resumes. Default: 15 minutes.
    longest_wait: str | None = None

    def ticket_url(self, external_id: str) -> str | None:
        """Where an agent opens the ticket ``external_id`` in the helpdesk's own web UI, for
        links in digests; None when the source has none (a mailbox). A type overrides it."""
        return None


def vendor_origin(base_url: str | None, vendor_domain: str) -> str | None:
    """``https://host`` of a ``base_url`` on the vendor's own domain (a regional or custom
    host of it); None for a proxy or a test server, whose host is no agent UI."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return f"https://{host}" if host.endswith("." + vendor_domain) else None


def url_segment(external_id: str) -> str:
    return quote(external_id, safe="")


@runtime_checkable
class Stream(Protocol):
    """One endpoint (or family of records) of a source, read page by page."""

    name: str

    def read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Yield pages after ``cursor``; with ``since`` (a backfill) start there instead."""
        ...


class Connector(Protocol):
    """A helpdesk source. Constructed with its name and its validated settings.

    A connector holding resources beyond one read (an HTTP session's pooled sockets) may
    define ``close()``: the engine calls it, through :func:`close_connector`, when the run
    (a sync, a check) is over. It is optional, so it is not part of this protocol.
    """

    type: ClassVar[str]
    Settings: ClassVar[builtins.type[ConnectorSettings]]

    def check(self) -> None:
        """Make one cheap authenticated call; raise with a clear message on failure."""
        ...

    def streams(self) -> Sequence[Stream]:
        """The streams to sync, in the order they should be synced."""
        ...


def close_connector(connector: object) -> None:
    """Call the connector's optional ``close()``: one mechanism for built-ins and plugins, so
    a long-running daemon's sessions close with each run instead of waiting for the GC."""
    close = getattr(connector, "close", None)
    if callable(close):
        close()


class ConnectorFactory(Protocol):
    """What an entry point of the ``cskpi.connectors`` group must load to."""

    type: ClassVar[str]
    Settings: ClassVar[builtins.type[ConnectorSettings]]

    def __call__(self, name: str, settings: ConnectorSettings) -> Connector: ...


SettingsT = TypeVar("SettingsT", bound=ConnectorSettings)


def own_settings(settings: ConnectorSettings, model: builtins.type[SettingsT]) -> SettingsT:
    """``settings`` as the connector's own ``model``: the registry may hand over the base
    class (or another model with the same keys), which is validated again as ``model``."""
    if isinstance(settings, model):
        return settings
    return model.model_validate(settings.model_dump())


@dataclass
class PagesStream:
    """A :class:`Stream` whose pages come from a function of (cursor, since)."""

    name: str
    pages: Callable[[str | None, datetime | None], Iterator[Page]]

    def read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        return self.pages(cursor, since)
