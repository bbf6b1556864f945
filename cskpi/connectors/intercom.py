"""The ``intercom`` connector: Intercom conversations as tickets, with their parts, ratings,
teammates, teams and companies, resumable page by page and paced to the API's rate limit.

Streams, in sync order (mapping in :mod:`cskpi.connectors.intercom_map`):

``groups``, ``people``, ``organizations``
    Teams, admins (teammates) and companies (the scroll API), re-read in full every run.
``tickets``
    ``POST /conversations/search`` on ``updated_at``, ascending, 150 a page. Each conversation
    the search returns (so: changed since the last run) is then retrieved with ``GET
    /conversations/{id}`` for its parts, and one page stores the page's conversations with
    their messages, status changes, ratings and the contacts who wrote, with the cursor. Parts exist
    only on a retrieved conversation, so this is the one request per changed conversation
    that cannot be avoided; unchanged conversations are never fetched again.

Cursor semantics of ``tickets``. Intercom's ``>`` and ``<`` on dates mean "greater (or
equal)" and "lower (or equal)" (the search reference, "Accepted Operators"), on whole
seconds. So a run searches ``updated_at >= lo`` (as ``> lo OR = lo``, right whichever way
``>`` behaves) up to ``hi`` = now minus ``settle_seconds``: a second older than that is
complete, nothing can still be updated within it. The stored cursor is ``"<second>:<ids>"``:
the newest ``updated_at`` stored and the ids already stored at that second. The next page or
run starts at that second again and drops those ids, so a boundary second shared by many
conversations (across a page boundary, or a crash between pages) is neither lost nor read
twice. Search's ``starting_after`` token is bound to its query: it pages within a run but is
never stored. ``Page.position`` is the cursor's second.

A conversation deleted between the search and the retrieval (404) is stored from its search
result with ``deleted`` set, without parts: not a failure. A conversation with more than 500
parts (the API returns the 500 most recent) is logged, and its first reply and close times
come from its ``statistics``.

https://developers.intercom.com/docs/references/rest-api/api.intercom.io/conversations/searchconversations
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

import requests
from pydantic import Field

from cskpi.connectors import base
from cskpi.connectors.base import ConnectorSettings, Page, PagesStream, Skipped, own_settings
from cskpi.connectors.fields import BadRecordError, from_unix, map_each
from cskpi.connectors.intercom_map import (
    map_admin,
    map_company,
    map_conversation,
    map_team,
    map_ticket,
    unix_of,
)
from cskpi.connectors.pagination import PageParams, Paginator, StartingAfterPaginator, dig
from cskpi.connectors.rest import (
    RawRecord,
    StreamSpec,
    fetch_pages,
    full_list,
    longest_wait,
    unix_seconds,
)
from cskpi.core.clock import Clock, SystemClock
from cskpi.core.config.secrets import Secret
from cskpi.core.http.client import (
    APIError,
    AuthError,
    HttpClient,
    RetriableAPIError,
)
from cskpi.core.http.ratelimit import INTERCOM_HEADERS, Budget, RateLimiter, Slot, header_number

log = logging.getLogger("cskpi.intercom")

# https://developers.intercom.com/docs/build-an-integration/learn-more/rest-apis/ (regional hosts)
HOSTS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
# The web app (the Inbox) of each region's workspaces.
APP_HOSTS = {
    "us": "https://app.intercom.com",
    "eu": "https://app.eu.intercom.com",
    "au": "https://app.au.intercom.com",
}
# The newest version in intercom/Intercom-OpenAPI (descriptions/2.16); pinned, because
# versions change shapes (2.10's search answered 404 "User Not Found": airbyte PR #36277).
DEFAULT_VERSION = "2.16"
# https://developers.intercom.com/docs/references/rest-api/errors/rate-limiting: 10,000 calls
# a minute per app by default, enforced in 10-second windows; the headers pace below it.
WINDOW = 10.0
_SEARCH_PAGE = 150  # search's maximum
# "If this happens, you will need to restart your scroll query: It is not possible to
# continue from a specific point when using scroll." (GET /companies/scroll, 2.16)
SCROLL_RESTARTS = 3


class IntercomSettings(ConnectorSettings):
    """Settings of a ``[connectors.NAME]`` table with ``type = "intercom"``."""

    type: str = "intercom"
    access_token: Secret = Field(description="Access token of the Intercom app (Bearer).")
    region: Literal["us", "eu", "au"] = Field(
        default="us", description="Where the workspace is hosted: sets the API host."
    )
    base_url: str | None = Field(default=None, description="Instead of the region's host.")
    ca_bundle: str | None = Field(default=None, description="CA bundle to verify base_url with.")
    intercom_version: str = Field(
        default=DEFAULT_VERSION, pattern=r"^2\.\d+$", description="Intercom-Version header."
    )
    per_page: int = Field(default=_SEARCH_PAGE, ge=1, le=_SEARCH_PAGE, description="Per page.")
    rate_limit: int = Field(
        default=10_000, ge=6, description="The app's calls per minute (Intercom: 10,000)."
    )
    settle_seconds: int = Field(
        default=60, ge=1, description="Conversations updated this recently wait a run."
    )
    concurrency: int = Field(
        default=4, ge=1, le=10, description="Conversations retrieved at once (pool of 10)."
    )

    def root(self) -> str:
        return (self.base_url or HOSTS[self.region]).rstrip("/") + "/"

    def ticket_url(self, external_id: str) -> str | None:
        """The Inbox's conversation page in the workspace's region; ``_`` stands for the
        workspace id, which the Inbox fills in for a signed-in teammate."""
        conversation = base.url_segment(external_id)
        return f"{APP_HOSTS[self.region]}/a/inbox/_/inbox/conversation/{conversation}"


class WindowLimiter(RateLimiter):
    """A limiter whose budget follows ``X-RateLimit-Limit``: Intercom states each window's
    allowance there. Requests in flight together (``concurrency``) are all sent before any
    of their answers reports what remains, so the remaining count alone, read after the fact,
    would overrun a window; a budget of the stated allowance per window cannot. A lower
    configured ``rate_limit`` (an app sharing its quota) still wins."""

    def __init__(self, ceiling: Budget, *, clock: Clock) -> None:
        super().__init__(ceiling, INTERCOM_HEADERS, clock=clock, margin=0.01)
        self.ceiling = ceiling

    def release(self, slot: Slot, response: requests.Response | None) -> None:
        super().release(slot, response)
        if response is None:  # not `if response`: a 429 Response is falsy
            return
        stated = header_number(response.headers.get("X-RateLimit-Limit"))
        if stated is not None and stated >= 1:
            allowance = min(int(stated), self.ceiling.requests)
            if self.budget is None or self.budget.requests != allowance:
                self.budget = Budget(allowance, WINDOW)


class ScrollPaginator(Paginator):
    """Intercom's scroll API (``GET /companies/scroll``): ``scroll_param`` from the body sent
    back until a page comes back empty. The same ``scroll_param`` may come back on every page
    (it names the scroll, not the position), so the loop guard is the page's content.
    https://developers.intercom.com/docs/references/rest-api/api.intercom.io/companies/scrolloverallcompanies
    """

    def next(self, body: Any, response: Any) -> PageParams | None:
        token, records = dig(body, "scroll_param"), dig(body, "data")
        if not token or not isinstance(records, list) or not records:
            return None
        ids = ",".join(str(r.get("id")) for r in records if isinstance(r, dict))
        self._once(f"{token}/{ids}", "page of companies")
        return PageParams(query={"scroll_param": token})


GROUPS = StreamSpec("groups", "teams", "teams", lambda: _OnePage())
ADMINS = StreamSpec("people", "admins", "admins", lambda: _OnePage())
COMPANIES = StreamSpec("organizations", "companies/scroll", "data", ScrollPaginator)


class _OnePage(Paginator):
    """Lists Intercom returns whole (admins, teams)."""

    def next(self, body: Any, response: Any) -> PageParams | None:
        return None


@dataclass
class Boundary:
    """The newest ``updated_at`` second stored, and the ids stored at that second."""

    second: int = 0
    ids: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, cursor: str) -> Boundary:
        second, _, ids = cursor.partition(":")
        if not second.isdigit():
            raise ValueError(f"not an intercom tickets cursor: {cursor[:40]!r}")
        return cls(int(second), set(filter(None, ids.split(","))))

    def __str__(self) -> str:
        return f"{self.second}:{','.join(sorted(self.ids))}"

    def admit(self, raw: RawRecord) -> bool:
        """True for a conversation not yet stored in this window; moves the boundary on."""
        second, ident = unix_of(raw), str(raw.get("id"))
        if second is None or second < self.second:
            return True  # out of order or malformed: stored (or skipped) but never a boundary
        if second > self.second:
            self.second, self.ids = second, {ident}
            return True
        if ident in self.ids:
            return False
        self.ids.add(ident)
        return True


class IntercomConnector:
    """Intercom (``type = "intercom"``): see the module docstring for the streams and the
    ``tickets`` cursor. ``clock`` paces and retries; tests pass a fake one and never sleep."""

    type: ClassVar[str] = "intercom"
    Settings: ClassVar[builtins.type[ConnectorSettings]] = IntercomSettings

    def __init__(self, name: str, settings: ConnectorSettings, *, clock: Clock | None = None):
        self.name = name
        self.settings = own_settings(settings, IntercomSettings)
        self.clock: Clock = clock or SystemClock()
        s = self.settings
        limiter = WindowLimiter(Budget(s.rate_limit // 6, WINDOW), clock=self.clock)
        self.http = self._client(limiter, 8)
        # A scroll page that failed cannot be asked for again: one attempt, then a restart.
        self.scroll_once = self._client(limiter, 1)

    def _client(self, limiter: WindowLimiter, attempts: int) -> HttpClient:
        s = self.settings
        return HttpClient(
            self.name, s.root(), ca_bundle=s.ca_bundle, clock=self.clock, limiter=limiter,
            secret_hint="access_token",  # noqa: S106 - the setting's name, not a secret
            max_attempts=attempts, longest_wait=longest_wait(s),
            headers={
                "Authorization": f"Bearer {s.access_token.get_secret_value()}",
                "Intercom-Version": s.intercom_version, "Accept": "application/json",
            },
        )  # fmt: skip

    def close(self) -> None:
        """Close both HTTP sessions: the one for requests and the scroll's one-attempt one."""
        self.http.close()
        self.scroll_once.close()

    def check(self) -> None:
        """``GET /me``: the admin the token belongs to; a 401 names ``access_token``."""
        me = self.http.get_json("me")
        if me.get("id") is None:
            raise AuthError(
                f"the token for connector {self.name} is rejected: /me names no admin; "
                f"check {self.http.secret_hint}"
            )

    def streams(self) -> Sequence[base.Stream]:
        """groups, people, organizations, tickets (with messages and ratings)."""
        return [
            PagesStream("groups", lambda c, s: full_list(self.http, GROUPS, map_team)),
            PagesStream("people", lambda c, s: full_list(self.http, ADMINS, map_admin)),
            PagesStream("organizations", lambda c, s: self._companies()),
            PagesStream("tickets", self._tickets),
        ]

    def _companies(self) -> Iterator[Page]:
        """The companies scroll; a page that fails after the first (a 500 "Please restart the
        scroll operation", a dropped line) restarts the scroll, up to ``SCROLL_RESTARTS``
        times. Pages read before the failure come again: companies upsert by id."""
        for attempt in range(SCROLL_RESTARTS + 1):
            try:
                for raws, _, _, bad in fetch_pages(
                    self.http, COMPANIES, None, None, following=self.scroll_once
                ):
                    records, skipped = map_each(raws, map_company)
                    yield Page(records, skipped=[*bad, *skipped])
                return
            except RetriableAPIError as exc:
                if attempt == SCROLL_RESTARTS:
                    raise
                log.warning("%s: %s; restarting the companies scroll", self.name, exc)

    def search(self, lo: int, hi: int) -> StreamSpec:
        """Conversations with ``lo <= updated_at <= hi``, oldest first (see module doc).
        ``sort`` is accepted though the reference leaves it out (Intercom-OpenAPI issue #114).

        Each item of a group's ``value`` list must be of one kind, all groups or all filters:
        2.14-2.16's ``multiple_filter_search_request`` is a ``oneOf`` of those two lists (the
        fix allowing a mixed list, Intercom-OpenAPI #197, reached 2.11 only). So the ``<``
        bound goes in a group of its own; two levels of nesting, as the API allows."""
        at = [
            {"field": "updated_at", "operator": ">", "value": lo},
            {"field": "updated_at", "operator": "=", "value": lo},
        ]
        before = [{"field": "updated_at", "operator": "<", "value": hi}]
        query = {
            "operator": "AND",
            "value": [{"operator": "OR", "value": at}, {"operator": "AND", "value": before}],
        }
        return StreamSpec(
            "tickets", "conversations/search", "conversations",
            lambda: StartingAfterPaginator(self.settings.per_page), method="POST",
            body={"query": query, "sort": {"field": "updated_at", "order": "ascending"}},
        )  # fmt: skip

    def _tickets(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        boundary = Boundary.parse(cursor) if cursor else Boundary()
        if since is not None:
            boundary = Boundary(unix_seconds(since))
        hi = int(self.clock.wall()) - self.settings.settle_seconds
        spec = self.search(boundary.second, hi)
        with ThreadPoolExecutor(self.settings.concurrency, "cskpi-intercom") as pool:
            retrieve = pool.map if self.settings.concurrency > 1 else map
            for raws, _, _, bad in fetch_pages(self.http, spec, None, None):
                admitted = [raw for raw in raws if boundary.admit(raw)]
                records: list[base.Record] = []
                skipped: list[Skipped] = list(bad)
                read = list(retrieve(self._retrieve, admitted))
                _unwell(read)
                for found, raw in zip(admitted, read, strict=True):
                    if isinstance(raw, APIError):
                        self._unreadable(found, raw, skipped)
                    else:
                        self._store(found, raw, records, skipped)
                mark = str(boundary) if boundary.second or boundary.ids else None
                yield Page(records, mark, from_unix(boundary.second) if mark else None, skipped)

    def _retrieve(self, found: RawRecord) -> dict[str, Any] | APIError | None:
        """The conversation with its parts; ``None`` when it was deleted after the search; the
        error when it cannot be read (a 401/403 stops the sync: the token is wrong)."""
        try:
            return self.http.get_json(f"conversations/{found.get('id')}")
        except AuthError:
            raise
        except APIError as exc:
            return None if exc.status == 404 else exc

    def _unreadable(self, found: RawRecord, exc: APIError, skipped: list[Skipped]) -> None:
        """One conversation the API will not give: skipped and counted like a bad record, so
        the cursor moves past it; the next change to it brings it back into a search."""
        log.warning("%s: conversation %s is skipped: %s", self.name, found.get("id"), exc)
        skipped.append(Skipped(str(found.get("id")), f"unreadable: {exc}"))

    def _store(
        self,
        found: RawRecord,
        raw: dict[str, Any] | None,
        records: list[base.Record],
        skipped: list[Skipped],
    ) -> None:
        """Map one retrieved conversation, or keep a deleted one as deleted."""
        if raw is None:
            self._deleted(found, records, skipped)
            return
        try:
            conversation = map_conversation(raw)
        except (BadRecordError, TypeError, ValueError, AttributeError) as exc:
            skipped.append(Skipped(str(found.get("id")), str(exc) or type(exc).__name__))
            return
        if conversation.truncated:
            log.warning(
                "%s: conversation %s has more parts than the API returns (the 500 most recent); "
                "its first reply and close times come from its statistics",
                self.name,
                conversation.ticket.external_id,
            )
        records += conversation.records()

    def _deleted(
        self, found: RawRecord, records: list[base.Record], skipped: list[Skipped]
    ) -> None:
        """Gone between search and retrieval (404 "Conversation not found"): kept as deleted."""
        log.info("%s: conversation %s was deleted during the sync", self.name, found.get("id"))
        mapped, bad = map_each([found], map_ticket)
        for ticket in mapped:
            if isinstance(ticket, base.Ticket):
                ticket.deleted = True
                records.append(ticket)
        skipped += bad


def _unwell(read: Sequence[object]) -> None:
    """Every conversation of a page failing with a retriable error (5xx, timeouts) is the API
    being down, not one bad conversation: fail the stream, so nothing is skipped for it."""
    errors = [r for r in read if isinstance(r, APIError)]
    if (
        errors
        and len(errors) == len(read)
        and all(isinstance(e, RetriableAPIError) for e in errors)
    ):
        raise errors[0]
