"""The ``zendesk`` connector: Zendesk Support, complete, resumable page by page, and paced to
the API's rate ceiling.

Streams, in sync order (mapping in :mod:`cskpi.connectors.zendesk_map`):

``groups``, ``organizations``
    The lists (cursor pagination, 100 a page), re-read in full every run; no cursor.
``people``
    The users incremental export, cursor-based.
``tickets``
    The tickets incremental export, cursor-based, with ``include=metric_sets``: first reply,
    solves, reopens, replies and stations come with each ticket at no extra request, for
    archived tickets too (``/ticket_metrics`` leaves those out).
``messages``
    The ticket events export with ``include=comment_events`` (time-based: the only kind this
    endpoint has). Author roles come from the agent list, read once per run. The same events'
    ``Create`` and ``Change`` children on ``status`` are each ticket's status history.
``ratings``
    Satisfaction ratings (legacy CSAT), answered and offered, cursor pagination with a
    ``start_time`` filter.
``surveys`` (with ``survey_responses = true``)
    The current CSAT's survey responses, on the survey's own 1..``survey_points`` scale.

Cursor semantics, per stream:

* ``tickets``, ``people``: the stored cursor is the page's ``after_cursor``, also on the
  ``end_of_stream`` page, so the next run resumes with ``?cursor=`` (no ``start_time``, so no
  overlap and no gap). A last page without one stores ``start_time=<unix>`` of its newest
  record instead. ``Page.position`` is the newest ``generated_timestamp`` (else ``updated_at``)
  delivered so far.
* ``messages``: the cursor is the page's ``end_time``, the next ``start_time``. It is
  inclusive, so the boundary second is read twice; messages upsert by id, so nothing doubles
  and no same-second event is dropped. ``Page.position`` is that ``end_time``.
* ``ratings``: the list is not in time order, so only its last page checkpoints: the newest
  ``updated_at`` seen. A run restarts ``RATINGS_LOOKBACK`` (28 days) before it: ``start_time``
  filters on a rating's creation, which is the survey's offer, and the answer can come as
  late as the ticket's close, up to 28 days after its solve.

https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api/
"""

from __future__ import annotations

import base64
import binascii
import builtins
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator
from requests.auth import AuthBase, HTTPBasicAuth

from cskpi.connectors import base
from cskpi.connectors.base import ConnectorSettings, Page, PagesStream, Skipped, own_settings
from cskpi.connectors.fields import Mapped, from_unix, map_each, ref
from cskpi.connectors.pagination import CursorPaginator
from cskpi.connectors.rest import Fetched, StreamSpec, fetch_pages, full_list, longest_wait
from cskpi.connectors.zendesk_map import (
    map_event,
    map_group,
    map_organization,
    map_rating,
    map_survey_response,
    map_ticket,
    map_user,
    newest_position,
    vendor_metrics,
)
from cskpi.core.clock import Clock, SystemClock
from cskpi.core.config.secrets import Secret
from cskpi.core.http.client import AuthError, FatalAPIError, HttpClient
from cskpi.core.http.ratelimit import ZENDESK_HEADERS, Budget, RateLimiter

# https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/
EXPORT_BUDGET = Budget(10, 60.0)
HIGH_VOLUME_EXPORT_BUDGET = Budget(30, 60.0)  # with the High Volume API add-on
# The account-wide limit is 200-2500/min by plan; the rate-limit headers pace below it.
# https://developer.zendesk.com/api-reference/introduction/rate-limits/
GENERAL_BUDGET = Budget(700, 60.0)
# A rating record is created when the survey is offered (after the solve) and answered while
# the ticket is still solved; solved tickets close at the latest 28 days after the solve
# (https://support.zendesk.com/hc/en-us/articles/4408835051546: "up to 28 days"; "Tickets in
# solved status ... are automatically closed after 28 days"). `start_time` filters on the
# record's creation, so each run starts 28 days before the newest answer it has stored.
RATINGS_LOOKBACK = timedelta(days=28)
TIME_CURSOR = "start_time="  # a stored cursor that resumes an export from a unix time
_LIST_PAGE = 100  # cursor pagination's maximum for lists


class ZendeskSettings(ConnectorSettings):
    """Settings of a ``[connectors.NAME]`` table with ``type = "zendesk"``."""

    type: str = "zendesk"
    subdomain: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$", description="acme for acme.zendesk.com"
    )
    email: str | None = Field(default=None, description="The agent the api_token belongs to.")
    api_token: Secret | None = Field(default=None, description="API token (with email).")
    access_token: Secret | None = Field(default=None, description="OAuth access token.")
    base_url: str | None = Field(
        default=None, description="Default https://{subdomain}.zendesk.com (proxies, tests)."
    )
    ca_bundle: str | None = Field(default=None, description="CA bundle to verify base_url with.")
    high_volume: bool = Field(
        default=False, description="High Volume API add-on: 30 export requests/min, not 10."
    )
    per_page: int = Field(default=1000, ge=1, le=1000, description="Records per export page.")
    survey_responses: bool = Field(
        default=False,
        description="Also read the current CSAT (survey responses) beside the legacy ratings.",
    )
    survey_points: Literal[2, 3, 5] = Field(
        default=5, description="The points of the account's current CSAT survey: 2, 3 or 5."
    )

    @model_validator(mode="after")
    def _auth_and_host(self) -> Self:
        if (self.api_token is None) == (self.access_token is None):
            raise ValueError("set exactly one of api_token (with email) and access_token")
        if self.api_token is not None and not self.email:
            raise ValueError("api_token needs email: Zendesk signs in as {email}/token")
        if not self.subdomain and not self.base_url:
            raise ValueError("set subdomain (or base_url)")
        return self

    def ticket_url(self, external_id: str) -> str | None:
        """The agent UI's ticket page, e.g. https://acme.zendesk.com/agent/tickets/123."""
        origin = (
            f"https://{self.subdomain}.zendesk.com"
            if self.subdomain
            else base.vendor_origin(self.base_url, "zendesk.com")
        )
        return origin and f"{origin}/agent/tickets/{base.url_segment(external_id)}"

    def root(self) -> str:
        """The API root, ``https://{subdomain}.zendesk.com/api/v2/`` unless overridden."""
        host = self.base_url or f"https://{self.subdomain}.zendesk.com"
        return host.rstrip("/") + "/api/v2/"


class _PageAfterPaginator(CursorPaginator):
    """Zendesk's cursor pagination for lists: ``page[size]``, ``meta.has_more`` and
    ``meta.after_cursor`` sent back as ``page[after]``. Filters such as ``start_time`` must
    go with every page, so the start stays (a next link would carry the real host, not a
    configured ``base_url``). https://developer.zendesk.com/api-reference/introduction/pagination/
    """

    keeps_start = True

    def __init__(self) -> None:
        super().__init__("meta.after_cursor", "page[after]", end_key=None, more_key="meta.has_more")


def _export(name: str, path: str, key: str, **params: Any) -> StreamSpec:
    return StreamSpec(
        name, path, key, CursorPaginator, cursor_param="cursor", since_param="start_time",
        params={"start_time": 0, **params},
    )  # fmt: skip


def _listing(name: str, path: str, key: str, **params: Any) -> StreamSpec:
    since = "start_time" if "start_time" in params else None
    return StreamSpec(
        name, path, key, _PageAfterPaginator, since_param=since,
        params={"page[size]": _LIST_PAGE, **params},
    )  # fmt: skip


# Time-based export: end_time is the next start_time; the paginator refuses a repeated one.
EVENTS = StreamSpec(
    "messages", "incremental/ticket_events.json", "ticket_events",
    lambda: CursorPaginator("end_time", "start_time"), cursor_param="start_time",
    since_param="start_time", params={"start_time": 0, "include": "comment_events"},
)  # fmt: skip
# No `score` filter: answered surveys (good, bad) and offered ones not answered yet, for
# csat_response_rate (SPEC §7); `unoffered` records are skipped in the mapping.
RATINGS = _listing("ratings", "satisfaction_ratings.json", "satisfaction_ratings", start_time=0)
# The current CSAT: Help Center cursor pagination (meta.has_more, meta.after_cursor), filtered
# on creation in milliseconds.
# https://developer.zendesk.com/api-reference/ticketing/ticket-management/csat_survey_responses/
SURVEY_RESPONSES = StreamSpec(
    "surveys", "guide/survey_responses", "survey_responses", _PageAfterPaginator,
    since_param="filter[created_at_start]",
    since_format=lambda moment: int(moment.timestamp()) * 1000,
    params={"page[size]": _LIST_PAGE},
)  # fmt: skip
GROUPS = _listing("groups", "groups.json", "groups")
ORGANIZATIONS = _listing("organizations", "organizations.json", "organizations")
AGENTS = _listing("agents", "users.json", "users", **{"role[]": ["agent", "admin"]})


class ZendeskConnector:
    """Zendesk Support (``type = "zendesk"``): see the module docstring for the streams and
    their cursors. ``clock`` paces and retries; tests pass a fake one and never sleep."""

    type: ClassVar[str] = "zendesk"
    Settings: ClassVar[builtins.type[ConnectorSettings]] = ZendeskSettings

    def __init__(self, name: str, settings: ConnectorSettings, *, clock: Clock | None = None):
        self.name = name
        self.settings = own_settings(settings, ZendeskSettings)
        self.clock: Clock = clock or SystemClock()
        auth, headers, hint = _credentials(self.settings)
        general = RateLimiter(GENERAL_BUDGET, ZENDESK_HEADERS, clock=self.clock)
        self.http = HttpClient(
            name, self.settings.root(), auth=auth, headers=headers,
            ca_bundle=self.settings.ca_bundle, limiter=general, clock=self.clock, secret_hint=hint,
            longest_wait=longest_wait(self.settings),
        )  # fmt: skip
        budget = HIGH_VOLUME_EXPORT_BUDGET if self.settings.high_volume else EXPORT_BUDGET
        # One limiter for every incremental endpoint: Zendesk counts them together.
        self.exports = self.http.with_limiter(
            RateLimiter(budget, ZENDESK_HEADERS, clock=self.clock)
        )
        per_page = self.settings.per_page
        self._tickets = _export(
            "tickets", "incremental/tickets/cursor.json", "tickets",
            include="metric_sets", per_page=per_page,
        )  # fmt: skip
        self._users = _export("people", "incremental/users/cursor.json", "users", per_page=per_page)

    def close(self) -> None:
        """Close the HTTP session (the export client shares it)."""
        self.http.close()

    def check(self) -> None:
        """``GET /api/v2/users/me.json``: a 401/403 says the token is rejected; a user who
        is not an admin is refused too, as only admins may use the incremental exports."""
        user = self.http.get_json("users/me.json").get("user")
        if not isinstance(user, Mapping) or user.get("id") is None:
            raise AuthError(
                f"the token for connector {self.name} is rejected: users/me.json names no "
                f"signed-in user; check {self.http.secret_hint}"
            )
        role = user.get("role")
        if role is not None and role != "admin":
            raise FatalAPIError(
                f"connector {self.name} signs in as a Zendesk {role}; the incremental exports "
                "are allowed for admins only: use an admin's token"
            )

    def streams(self) -> Sequence[base.Stream]:
        """groups, organizations, people, tickets, messages, ratings."""
        return [
            PagesStream("groups", lambda c, s: full_list(self.http, GROUPS, map_group)),
            PagesStream(
                "organizations", lambda c, s: full_list(self.http, ORGANIZATIONS, map_organization)
            ),
            PagesStream("people", lambda c, s: self._exported(self._users, _users, c, s)),
            PagesStream("tickets", lambda c, s: self._exported(self._tickets, _tickets, c, s)),
            PagesStream("messages", self._messages),
            PagesStream("ratings", self._ratings),
            *([PagesStream("surveys", self._surveys)] if self.settings.survey_responses else []),
        ]

    def _exported(
        self,
        spec: StreamSpec,
        mapper: Callable[[Fetched], Mapped],
        cursor: str | None,
        since: datetime | None,
    ) -> Iterator[Page]:
        """A cursor-based export: every page checkpoints (see the module docstring)."""
        cursor, since = _resume(cursor, since)
        newest: datetime | None = None
        for fetched in fetch_pages(self.exports, spec, cursor, since):
            raws, token, body, bad = fetched
            records, skipped = mapper(fetched)
            newest = max(_known(newest, newest_position(raws)), default=None)
            if token is None and body.get("end_of_stream") is True and newest is not None:
                token = f"{TIME_CURSOR}{int(newest.timestamp())}"
            yield Page(records, token, newest or cursor_position(token), [*bad, *skipped])

    def _messages(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Comment events, with author roles from the agent list (agents and admins), and
        the status changes the same events record (Create and Change on ``status``)."""
        agents = self._agent_ids()
        for raws, token, body, bad in fetch_pages(self.exports, EVENTS, cursor, since):
            records: list[base.Record] = []
            skipped: list[Skipped] = list(bad)
            for event in raws:
                found, bad = map_event(event, agents)
                records += found
                skipped += bad
            yield Page(records, token, from_unix(body.get("end_time")), skipped)

    def _agent_ids(self) -> frozenset[str]:
        ids: set[str] = set()
        for raws, _, _, _ in fetch_pages(self.http, AGENTS, None, None):
            ids.update(found for raw in raws if (found := ref(raw.get("id"))))
        return frozenset(ids)

    def _ratings(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Every page stores its ratings; a last, empty page carries the checkpoint."""
        if since is None and cursor is not None:
            stored = cursor_position(cursor)
            since = None if stored is None else stored - RATINGS_LOOKBACK
        newest: datetime | None = None
        for raws, _, _, bad in fetch_pages(self.http, RATINGS, None, since):
            records, skipped = map_each(raws, map_rating)
            rated = (r.rated_at for r in records if isinstance(r, base.Rating))
            newest = max(_known(newest, *rated), default=None)
            yield Page(records, skipped=[*bad, *skipped])
        if newest is not None:
            yield Page((), str(int(newest.timestamp())), newest)

    def _surveys(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """The current CSAT's responses, read again from ``RATINGS_LOOKBACK`` before the
        newest answer stored (an answer can be edited until the response expires); only
        the last page checkpoints, as the list is ordered by id, not time."""
        if since is None and cursor is not None:
            stored = cursor_position(cursor)
            since = None if stored is None else stored - RATINGS_LOOKBACK
        points = self.settings.survey_points
        newest: datetime | None = None
        for raws, _, _, bad in fetch_pages(self.http, SURVEY_RESPONSES, None, since):
            records, skipped = map_each(raws, lambda raw: map_survey_response(raw, points))
            rated = (r.rated_at for r in records if isinstance(r, base.Rating))
            newest = max(_known(newest, *rated), default=None)
            yield Page(records, skipped=[*bad, *skipped])
        if newest is not None:
            yield Page((), str(int(newest.timestamp())), newest)


def _tickets(fetched: Fetched) -> Mapped:
    """Tickets with their metric sets: nested in each ticket (as the cursor export returns
    them) or side-loaded as a top-level ``metric_sets`` list keyed by ``ticket_id``."""
    raws, _, body, _ = fetched
    loaded = body.get("metric_sets")
    by_ticket = {
        m.get("ticket_id"): m for m in loaded or () if isinstance(m, Mapping)
    } if isinstance(loaded, list) else {}  # fmt: skip
    records, skipped = map_each(raws, lambda raw: map_ticket(raw, by_ticket.get(raw.get("id"))))
    mapped = {r.external_id for r in records if isinstance(r, base.Ticket)}
    for raw in raws:
        found = vendor_metrics(raw, by_ticket.get(raw.get("id")))
        if found is not None and found.ticket_id in mapped:
            records.append(found)
    return records, skipped


def _users(fetched: Fetched) -> Mapped:
    return map_each(fetched[0], map_user)


def _known(*moments: datetime | None) -> list[datetime]:
    return [m for m in moments if m is not None]


def _resume(cursor: str | None, since: datetime | None) -> tuple[str | None, datetime | None]:
    """A stored ``start_time=<unix>`` cursor is a start time, not a Zendesk cursor."""
    if since is None and cursor is not None and cursor.startswith(TIME_CURSOR):
        return None, from_unix(cursor.removeprefix(TIME_CURSOR))
    return cursor, since


def cursor_position(cursor: str | None) -> datetime | None:
    """The time a stored cursor stands at, for a page with no records to tell it.

    Zendesk's export cursors are opaque; the recorded ones are base64 of
    ``"<generated_timestamp>.0||<id>|"`` (samples/zendesk/incremental_tickets_cursor_page_*),
    read here only as a fallback: anything else gives ``None``.
    """
    if cursor is None:
        return None
    if cursor.startswith(TIME_CURSOR) or cursor.isdigit():
        return from_unix(cursor.removeprefix(TIME_CURSOR))
    try:
        decoded = base64.b64decode(cursor, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return from_unix(decoded.partition("||")[0].removesuffix(".0"))


def _credentials(settings: ZendeskSettings) -> tuple[AuthBase | None, dict[str, str], str]:
    """Basic ``{email}/token:{api_token}``, or an OAuth bearer token.
    https://developer.zendesk.com/api-reference/introduction/security-and-auth/"""
    if settings.access_token is not None:
        bearer = {"Authorization": f"Bearer {settings.access_token.get_secret_value()}"}
        return None, bearer, "access_token"
    assert settings.api_token is not None  # the validator saw to it
    user = f"{settings.email}/token"
    return HTTPBasicAuth(user, settings.api_token.get_secret_value()), {}, "api_token"
