"""The ``freshdesk`` connector: Freshdesk API v2, complete past the ticket list's 300-page
cap, resumable page by page, and paced to the plan's per-minute budget.

Streams, in sync order (mapping in :mod:`cskpi.connectors.freshdesk_map`):

``groups``, ``organizations`` (companies), ``people`` (agents)
    The lists, re-read in full every run; no cursor.
``tickets``
    ``GET /tickets?updated_since=&order_by=updated_at&order_type=asc&per_page=100&include=
    requester,stats``, read in sliding windows (:class:`SlidingWindowPaginator`): the list pages
    by offset and stops at page 300. Each page is stored with its requesters (the contacts
    met in tickets) and, for every ticket on it, its whole conversation (``GET
    /tickets/{id}/conversations``, all pages): the tickets on a page are exactly the ones
    changed since the last run, and a ticket's ``agent_replies`` comes from its conversation,
    so ticket and messages commit together with the cursor. The ticket's ``stats`` stamps
    give the status changes Freshdesk keeps (``freshdesk_map.status_history``).
``tickets_deleted``, ``tickets_spam``
    The same list with ``filter=deleted`` / ``filter=spam`` (the plain list leaves those out):
    their tickets are stored flagged ``deleted``, which the store never clears.
``ratings``
    ``GET /surveys/satisfaction_ratings?created_since=``, each on its survey's scale (``GET
    /surveys``). Not in time order: only the last page checkpoints, the newest ``created_at``;
    the next run starts ``RATINGS_LOOKBACK`` before it.

Ticket cursors are :class:`~cskpi.connectors.rest.TimeBoundary` values, ``"<updated_at>|<ids>"``:
every ticket updated before that second is stored, and of that second the listed ids. The
next run asks ``updated_since`` that second (inclusive) and drops the listed ids.

Pacing: one account limiter counts credits against the plan's calls per minute (or
``requests_per_minute``) and learns from ``X-RateLimit-Total/-Remaining``; the ticket list has
its own, lower per-minute budget inside it, and costs 1 credit plus 2 per ``include``. A 429
waits ``Retry-After``; 5xx and dropped connections are retried (:mod:`cskpi.core.http.client`).
https://support.freshdesk.com/support/solutions/articles/225439 (limits by plan),
https://developers.freshdesk.com/api/#ratelimit, https://developers.freshdesk.com/api/#list_all_tickets
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Container, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator
from requests.auth import HTTPBasicAuth

from cskpi.connectors import base
from cskpi.connectors.base import ConnectorSettings, Page, PagesStream, Skipped, own_settings
from cskpi.connectors.fields import BadRecordError, Raw, map_each, ref
from cskpi.connectors.freshdesk_map import (
    FIRST_CUSTOM_STATUS,
    OUTBOUND_EMAIL,
    map_agent,
    map_company,
    map_group,
    map_rating,
    map_requester,
    map_thread,
    map_ticket,
    status_history,
    survey_scales,
    vendor_metrics,
)
from cskpi.connectors.pagination import NextUrlPaginator, SlidingWindowPaginator
from cskpi.connectors.rest import (
    StreamSpec,
    TimeBoundary,
    fetch_pages,
    full_list,
    iso_utc,
    longest_wait,
)
from cskpi.core.clock import Clock, SystemClock
from cskpi.core.config.secrets import Secret
from cskpi.core.http.client import AuthError, FatalAPIError, HttpClient
from cskpi.core.http.ratelimit import FRESHDESK_HEADERS, Budget, RateLimiter

log = logging.getLogger("cskpi.freshdesk")

Plan = Literal["trial", "growth", "pro", "enterprise"]
# (calls per minute, Tickets List calls per minute) by plan, from the support article above.
# Trial accounts get 50 calls a minute; the article names no Tickets List limit for them, so
# the lowest one it names (Growth's) is assumed.
PLAN_LIMITS: dict[str, tuple[int, int]] = {
    "trial": (50, 20), "growth": (200, 20), "pro": (400, 100), "enterprise": (700, 200),
}  # fmt: skip
INCLUDE_CREDITS = 2  # "each include will consume an additional 2 credits" (list all tickets)
RATINGS_LOOKBACK = timedelta(days=1)
PER_PAGE = 100  # the most a Freshdesk list page holds
ROOT_PATH = "/api/v2/"  # where the API lives on a Freshdesk host, and in its Link headers
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # without updated_since: only the last 30 days


class FreshdeskSettings(ConnectorSettings):
    """Settings of a ``[connectors.NAME]`` table with ``type = "freshdesk"``."""

    type: str = "freshdesk"
    domain: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
        description="acme for acme.freshdesk.com",
    )
    api_key: Secret = Field(description="The API key of an agent (Profile settings).")
    base_url: str | None = Field(
        default=None, description="Default https://{domain}.freshdesk.com (proxies, tests)."
    )
    ca_bundle: str | None = Field(default=None, description="CA bundle to verify base_url with.")
    plan: Plan = Field(default="growth", description="trial | growth | pro | enterprise: the pace.")
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="The account's calls per minute, instead of the plan's."
    )
    ticket_list_per_minute: int | None = Field(
        default=None, ge=1, description="The ticket list's own calls per minute (plan's default)."
    )
    status_map: dict[int, base.TicketStatus] = Field(
        default_factory=dict, description='Custom statuses (6 and up): { "6" = "on_hold" }.'
    )
    conversations: bool = Field(default=True, description="Read each changed ticket's messages.")
    workers: int = Field(
        default=4, ge=1, le=16, description="Conversations read at once (one request a ticket)."
    )

    @field_validator("status_map")
    @classmethod
    def _custom_only(cls, value: dict[int, base.TicketStatus]) -> dict[int, base.TicketStatus]:
        low = sorted(code for code in value if code < FIRST_CUSTOM_STATUS)
        if low:
            raise ValueError(f"status codes {low} are Freshdesk's own; map only 6 and up")
        return value

    @model_validator(mode="after")
    def _host(self) -> Self:
        if not self.domain and not self.base_url:
            raise ValueError("set domain (or base_url)")
        return self

    def ticket_url(self, external_id: str) -> str | None:
        """The agent UI's ticket page, e.g. https://acme.freshdesk.com/a/tickets/123."""
        origin = (
            f"https://{self.domain}.freshdesk.com"
            if self.domain
            else base.vendor_origin(self.base_url, "freshdesk.com")
        )
        return origin and f"{origin}/a/tickets/{base.url_segment(external_id)}"

    def root(self) -> str:
        """The API root, ``https://{domain}.freshdesk.com/api/v2/`` unless overridden."""
        host = self.base_url or f"https://{self.domain}.freshdesk.com"
        return host.rstrip("/") + ROOT_PATH

    def budgets(self) -> tuple[Budget, Budget]:
        """(the account's credits per minute, the ticket list's calls per minute)."""
        account, listing = PLAN_LIMITS[self.plan]
        return (
            Budget(self.requests_per_minute or account, 60.0),
            Budget(self.ticket_list_per_minute or listing, 60.0),
        )


def _linked() -> NextUrlPaginator:
    """Pages by the ``Link`` header, followed on the configured host (``base_url``)."""
    return NextUrlPaginator(None, root_path=ROOT_PATH)


def _list(name: str, path: str) -> StreamSpec:
    return StreamSpec(name, path, None, _linked, params={"per_page": PER_PAGE})


def ticket_list(name: str, include: str, **params: str) -> StreamSpec:
    """The ticket list sorted by ``updated_at``, ascending, read in sliding windows."""
    return StreamSpec(
        name, "tickets", None, lambda: SlidingWindowPaginator("updated_since", "updated_at"),
        since_param="updated_since", since_format=iso_utc,
        params={"updated_since": iso_utc(EPOCH), "order_by": "updated_at", "order_type": "asc",
                "per_page": PER_PAGE, "include": include, **params},
    )  # fmt: skip


GROUPS = _list("groups", "groups")
COMPANIES = _list("organizations", "companies")
AGENTS = _list("people", "agents")
SURVEYS = _list("surveys", "surveys")
TICKETS = ticket_list("tickets", "requester,stats")
DELETED = ticket_list("tickets_deleted", "requester,stats", filter="deleted")
SPAM = ticket_list("tickets_spam", "requester,stats", filter="spam")
RATINGS = StreamSpec(
    "ratings", "surveys/satisfaction_ratings", None, _linked,
    since_param="created_since", since_format=iso_utc, params={"per_page": PER_PAGE},
)  # fmt: skip


class FreshdeskConnector:
    """Freshdesk (``type = "freshdesk"``): see the module docstring for the streams and their
    cursors. ``clock`` paces and retries; tests pass a fake one and never sleep."""

    type: ClassVar[str] = "freshdesk"
    Settings: ClassVar[builtins.type[ConnectorSettings]] = FreshdeskSettings

    def __init__(self, name: str, settings: ConnectorSettings, *, clock: Clock | None = None):
        self.name = name
        self.settings = own_settings(settings, FreshdeskSettings)
        self.clock: Clock = clock or SystemClock()
        account_budget, list_budget = self.settings.budgets()
        account = RateLimiter(account_budget, FRESHDESK_HEADERS, clock=self.clock)
        key = self.settings.api_key.get_secret_value()
        self.http = HttpClient(
            name, self.settings.root(), auth=HTTPBasicAuth(key, "X"),
            ca_bundle=self.settings.ca_bundle, limiter=account, clock=self.clock,
            secret_hint="api_key",  # noqa: S106 - a setting's name, not a secret
            longest_wait=longest_wait(self.settings),
        )  # fmt: skip
        # The three ticket passes share the endpoint's budget, and so one include (one cost).
        listing = RateLimiter(list_budget, clock=self.clock, within=account, cost=_credits(TICKETS))
        self.listing = self.http.with_limiter(listing)

    def close(self) -> None:
        """Close the HTTP session (the listing client shares it)."""
        self.http.close()

    def check(self) -> None:
        """``GET /api/v2/agents/me`` (one credit): a 401/403 names ``api_key``."""
        agent = self.http.get_json("agents/me")
        if agent.get("id") is None:
            raise AuthError(
                f"the token for connector {self.name} is rejected: agents/me names no agent; "
                "check api_key"
            )

    def streams(self) -> Sequence[base.Stream]:
        """groups, organizations, people, tickets, tickets_deleted, tickets_spam, ratings."""
        return [
            PagesStream("groups", lambda c, s: full_list(self.http, GROUPS, map_group)),
            PagesStream("organizations", lambda c, s: full_list(self.http, COMPANIES, map_company)),
            PagesStream("people", lambda c, s: full_list(self.http, AGENTS, map_agent)),
            PagesStream("tickets", lambda c, s: self._tickets(TICKETS, c, s)),
            PagesStream("tickets_deleted", lambda c, s: self._tickets(DELETED, c, s)),
            PagesStream("tickets_spam", lambda c, s: self._tickets(SPAM, c, s)),
            PagesStream("ratings", self._ratings),
        ]

    def _tickets(
        self, spec: StreamSpec, cursor: str | None, since: datetime | None
    ) -> Iterator[Page]:
        """Pages of tickets after the stored boundary (or from ``since``), each with the
        ``cursor`` of the last ticket on it; the plain list adds requesters and messages."""
        boundary = _boundary(cursor, since)
        plain = spec is TICKETS
        agents = self._agent_ids() if plain else frozenset()
        start = None if boundary is None else boundary.at
        threads = plain and self.settings.conversations
        known: dict[str, base.Person] = {}  # requesters stored by this read: each once
        # One request a ticket: a few at once, so the budget, not the latency, sets the pace.
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="cskpi-fd") as pool:
            for raws, _, _, bad in fetch_pages(self.listing, spec, None, start):
                page = _TicketPage(self.settings.status_map, not plain, boundary, known)
                page.skipped += bad
                for raw in raws:
                    page.add(raw, agents)
                if threads:
                    ids = [ticket.external_id for ticket, _ in page.tickets]
                    read = list(pool.map(self._conversations, ids))
                    page.messages([found for found, _ in read], agents)
                    page.skipped += [entry for _, bad in read for entry in bad]
                boundary = page.boundary
                yield Page(
                    page.records, None if boundary is None else boundary.encode(),
                    None if boundary is None else boundary.at, page.skipped,
                )  # fmt: skip

    def _conversations(self, ticket_id: str) -> tuple[list[Raw], list[Skipped]]:
        spec = StreamSpec(
            "messages", f"tickets/{ticket_id}/conversations", None, _linked,
            params={"per_page": PER_PAGE},
        )  # fmt: skip
        found: list[Raw] = []
        skipped: list[Skipped] = []
        try:
            for raws, _, _, bad in fetch_pages(self.http, spec, None, None):
                found += raws
                skipped += [Skipped(f"ticket {ticket_id} conversation", s.reason) for s in bad]
        except FatalAPIError as exc:
            if exc.status != 404:
                raise
            log.warning(
                "%s: ticket %s is gone; its conversations are not read", self.name, ticket_id
            )
        return found, skipped

    def _agent_ids(self) -> frozenset[str]:
        ids: set[str] = set()
        for raws, _, _, _ in fetch_pages(self.http, AGENTS, None, None):
            ids.update(found for raw in raws if (found := ref(raw.get("id"))))
        return frozenset(ids)

    def _ratings(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Every page stores its ratings; a last, empty page carries the checkpoint."""
        if since is None and cursor is not None:
            since = TimeBoundary.decode(cursor).at - RATINGS_LOOKBACK
        scales = self._scales()
        newest: datetime | None = None
        for raws, _, _, bad in fetch_pages(self.http, RATINGS, None, since or EPOCH):
            records, skipped = map_each(raws, lambda raw: map_rating(raw, scales))
            rated = [r.rated_at for r in records if isinstance(r, base.Rating)]
            newest = max([*rated, *([newest] if newest else [])], default=None)
            yield Page(records, skipped=[*bad, *skipped])
        if newest is not None:
            yield Page((), iso_utc(newest), newest)

    def _scales(self) -> dict[str, tuple[int, ...]]:
        """The surveys' scales; an account without survey access rates on the classic one."""
        try:
            return survey_scales(
                raw for page in fetch_pages(self.http, SURVEYS, None, None) for raw in page.raws
            )
        except FatalAPIError as exc:
            if exc.status not in (403, 404):
                raise
            log.warning(
                "%s: surveys are not readable (%s); ratings use the code scales",
                self.name,
                exc.status,
            )
            return {}


class _TicketPage:
    """One page of the ticket list being mapped: fresh tickets (past the boundary), their
    requesters, then their messages; records that cannot be mapped are skipped."""

    def __init__(
        self,
        status_map: dict[int, base.TicketStatus],
        deleted: bool,
        boundary: TimeBoundary | None,
        known: dict[str, base.Person],
    ) -> None:
        self.status_map, self.deleted, self.boundary = status_map, deleted, boundary
        self.known = known
        self.tickets: list[tuple[base.Ticket, Raw]] = []
        self.history: list[base.StatusChange] = []
        self.metrics: list[base.VendorMetrics] = []
        self.people: dict[str, base.Person] = {}
        self.thread: list[base.Record] = []
        self.skipped: list[Skipped] = []

    @property
    def records(self) -> list[base.Record]:
        tickets = (t for t, _ in self.tickets)
        return [*self.people.values(), *tickets, *self.history, *self.metrics, *self.thread]

    def add(self, raw: Raw, agents: Container[str]) -> None:
        try:
            ticket = map_ticket(raw, self.status_map, deleted=self.deleted)
            stats = raw.get("stats")
            history = status_history(ticket, stats) if isinstance(stats, dict) else []
            metrics = vendor_metrics(ticket, stats) if isinstance(stats, dict) else None
            requester = raw.get("requester")
            person = map_requester(requester) if isinstance(requester, dict) else None
        except (BadRecordError, TypeError, ValueError) as exc:
            self.skipped.append(Skipped(str(raw.get("id")), str(exc) or type(exc).__name__))
            return
        at, ident = ticket.updated_at, ticket.external_id
        if self.boundary is not None and not self.boundary.fresh(at, ident):
            return  # stored already: the window's first second, read again
        self.boundary = (self.boundary or TimeBoundary(at)).advance(at, ident)
        self.tickets.append((ticket, raw))
        self.history += history
        if metrics is not None:
            self.metrics.append(metrics)
        if person is None or self.deleted or person.external_id in agents:
            return
        if self.known.get(person.external_id) != person:
            self.known[person.external_id] = self.people[person.external_id] = person

    def messages(self, threads: list[list[Raw]], agents: Container[str]) -> None:
        """Each ticket's conversations (in the order of ``tickets``) as its messages."""
        for (ticket, raw), conversations in zip(self.tickets, threads, strict=True):
            outbound = raw.get("source") == OUTBOUND_EMAIL
            found, bad = map_thread(ticket, conversations, agents, outbound=outbound)
            self.thread += found
            self.skipped += bad


def _credits(spec: StreamSpec) -> int:
    include = str(spec.params.get("include") or "")
    return 1 + INCLUDE_CREDITS * len([part for part in include.split(",") if part])


def _boundary(cursor: str | None, since: datetime | None) -> TimeBoundary | None:
    """A backfill (``since``) starts a new boundary there; else the stored one, if any."""
    if since is not None:
        return TimeBoundary(since.astimezone(UTC))
    return None if cursor is None else TimeBoundary.decode(cursor)
