"""Paginators, one per mechanism, each refusing to loop.

A paginator says what the first request adds (:meth:`Paginator.first_params`) and, from a
page's JSON body and response, what the next request needs (:meth:`Paginator.next`), or
``None`` when the stream is exhausted. It remembers every token it has handed out: a vendor
that returns the same cursor (or URL, or page content) twice gets a :class:`PaginationError`,
never an endless loop. A paginator holds state, so every read builds a fresh one.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import requests

from cskpi.core.http.client import FatalAPIError

log = logging.getLogger("cskpi.pagination")

_SHOWN = 60  # characters of a token quoted in an error


class PaginationError(FatalAPIError):
    """The vendor's paging cannot be followed safely (a repeated cursor, a malformed page)."""


@dataclass(frozen=True)
class PageParams:
    """What a request adds: query parameters, a JSON body to merge, or a whole next URL.

    ``url`` (a vendor's next-page link) already carries its own query string, so the fetch
    loop sends it as it is. ``body`` keys replace the stream's body keys of the same name.
    """

    query: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    url: str | None = None


def dig(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``path="a.b"``; ``None`` where a step is missing."""
    for key in path.split("."):
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


class Paginator(ABC):
    """Base: end detection from the body and loop detection over the tokens handed out.

    ``end_key`` names a body flag that is true on the last page (Zendesk ``end_of_stream``);
    ``more_key`` one that is false there (``meta.has_more``). ``keeps_start`` says whether the
    stream's start parameters (``start_time``, ``updated_since``, a resumed cursor) stay on
    every page (page numbers, ``starting_after``) or only on the first (a cursor replaces them).
    """

    keeps_start: ClassVar[bool] = True

    def __init__(self, *, end_key: str | None = None, more_key: str | None = None) -> None:
        self.end_key, self.more_key = end_key, more_key
        self._seen: set[str] = set()

    def first_params(self) -> PageParams:
        """What the first request adds (a page size, ``page=1``)."""
        return PageParams()

    @abstractmethod
    def next(self, body: Any, response: requests.Response) -> PageParams | None:
        """What the request after this page needs, or ``None`` when this was the last page."""

    def resume_token(self, body: Any) -> str | None:
        """A token stored to resume a later run from after this page, if the mechanism has one."""
        return None

    def resume_from(self, token: str) -> None:
        """Note the stored token a run starts from, so a vendor echoing it back is caught."""
        self._seen.add(token)

    def _ended(self, body: Any) -> bool:
        if self.end_key is not None and dig(body, self.end_key) is True:
            return True
        return self.more_key is not None and dig(body, self.more_key) is False

    def _once(self, token: str, what: str) -> str:
        if token in self._seen:
            shown = token if len(token) <= _SHOWN else token[:_SHOWN] + "..."
            raise PaginationError(
                f"the API returned the same {what} twice ({shown}); stopping instead of looping"
            )
        self._seen.add(token)
        return token


class CursorPaginator(Paginator):
    """A next-cursor value in the JSON body, sent back as a query parameter.

    Zendesk's cursor export (https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api/#cursor-based-incremental-exports):
    ``after_cursor`` + ``end_of_stream``, resumed with ``cursor=`` and without ``start_time``.
    ``after_cursor`` is still present at ``end_of_stream`` and is the cursor to store. An
    empty page with ``end_of_stream: false`` is not the end. Zendesk's cursor pagination
    elsewhere: ``CursorPaginator("meta.after_cursor", "page[after]", more_key="meta.has_more")``.
    """

    keeps_start = False

    def __init__(
        self,
        cursor_key: str = "after_cursor",
        param: str = "cursor",
        *,
        end_key: str | None = "end_of_stream",
        more_key: str | None = None,
    ) -> None:
        super().__init__(end_key=end_key, more_key=more_key)
        self.cursor_key, self.param = cursor_key, param

    def next(self, body: Any, response: requests.Response) -> PageParams | None:
        token = self.resume_token(body)
        if token is None or self._ended(body):
            return None
        return PageParams(query={self.param: self._once(token, self.cursor_key)})

    def resume_token(self, body: Any) -> str | None:
        value = dig(body, self.cursor_key)
        return str(value) if value not in (None, "") else None


class NextUrlPaginator(Paginator):
    """A next-page URL: in the body at ``url_key`` (Zendesk ``next_page``, ``links.next``) or,
    with ``url_key=None``, in the ``Link: <...>; rel="next"`` header (Freshdesk,
    https://developers.freshdesk.com/api/#pagination). The URL carries the whole query.

    The vendor writes its own host into the link. With ``root_path`` (Freshdesk: ``/api/v2/``)
    the link's path below that root and its query are followed on the configured
    ``base_url`` instead, so a proxy or a regional host keeps working; a link elsewhere is
    followed as it is (and the client refuses it when it is on another host).
    """

    def __init__(
        self,
        url_key: str | None = None,
        *,
        end_key: str | None = None,
        more_key: str | None = None,
        root_path: str | None = None,
    ) -> None:
        super().__init__(end_key=end_key, more_key=more_key)
        self.url_key, self.root_path = url_key, root_path

    def next(self, body: Any, response: requests.Response) -> PageParams | None:
        if self._ended(body):
            return None
        if self.url_key is None:
            url = response.links.get("next", {}).get("url")
        else:
            url = dig(body, self.url_key)
        if not url:
            return None
        return PageParams(url=self._once(self._rebased(str(url)), "next-page URL"))

    def _rebased(self, url: str) -> str:
        parts = urlsplit(url)
        if self.root_path is None or not parts.path.startswith(self.root_path):
            return url
        below = parts.path.removeprefix(self.root_path)
        return f"{below}?{parts.query}" if parts.query else below


class PageNumberPaginator(Paginator):
    """``page=N`` until an empty or short page, or the vendor's page cap.

    Freshdesk lists 100 per page at most and refuses pages past 300
    (https://developers.freshdesk.com/api/#list_all_tickets); at the cap this paginator stops
    with a warning, and the caller continues with ``updated_since`` set to the last record's
    ``updated_at`` (records sorted ascending). The same page content twice means the API
    ignores ``page``: an error, not a loop.
    """

    def __init__(
        self,
        param: str = "page",
        *,
        page_size: int | None = None,
        size_param: str = "per_page",
        max_page: int | None = None,
        records_key: str | None = None,
        start: int = 1,
    ) -> None:
        super().__init__()
        self.param, self.page_size, self.size_param = param, page_size, size_param
        self.max_page, self.records_key, self.page = max_page, records_key, start

    def first_params(self) -> PageParams:
        return PageParams(query=self._query())

    def next(self, body: Any, response: requests.Response) -> PageParams | None:
        records = body if self.records_key is None else dig(body, self.records_key)
        count = len(records) if isinstance(records, list) else 0
        if count == 0 or (self.page_size is not None and count < self.page_size):
            return None
        self._once(hashlib.sha256(response.content).hexdigest(), "page content")
        if self.max_page is not None and self.page >= self.max_page:
            log.warning(
                "stopping at page %d, the API's last page; continue from its records", self.page
            )
            return None
        self.page += 1
        return PageParams(query=self._query())

    def _query(self) -> dict[str, Any]:
        size = {} if self.page_size is None else {self.size_param: self.page_size}
        return {self.param: self.page, **size}


class StartingAfterPaginator(Paginator):
    """Intercom's ``pages.next.starting_after``: in the JSON body's ``pagination`` for a
    ``POST .../search`` (in the query there, Intercom silently serves page 1 again), in the
    query for a ``GET`` list (``in_body=False``).
    https://developers.intercom.com/docs/build-an-integration/learn-more/rest-apis/pagination/
    The token is bound to its query, so it is not a cursor to store between runs.
    """

    def __init__(
        self,
        per_page: int = 150,
        *,
        in_body: bool = True,
        next_key: str = "pages.next.starting_after",
    ) -> None:
        super().__init__()
        self.per_page, self.in_body, self.next_key = per_page, in_body, next_key

    def first_params(self) -> PageParams:
        return self._params({"per_page": self.per_page})

    def next(self, body: Any, response: requests.Response) -> PageParams | None:
        token = dig(body, self.next_key)
        if not token:
            return None
        token = self._once(str(token), "starting_after")
        return self._params({"per_page": self.per_page, "starting_after": token})

    def _params(self, paging: dict[str, Any]) -> PageParams:
        return PageParams(body={"pagination": paging}) if self.in_body else PageParams(query=paging)


class SlidingWindowPaginator(Paginator):
    """A list sorted ascending by a time, read in windows that each start at the time of the
    last record read (``since_param``, an inclusive filter), page links only within a window.

    Freshdesk's ticket list (https://developers.freshdesk.com/api/#list_all_tickets,
    ``order_by=updated_at&order_type=asc``) pages by offset and refuses pages past 300 (page
    301 answers 400). Offset pages over a sort key that moves are unsafe: a ticket updated
    while the list is read leaves its place for the end, everything behind it moves up one,
    and the record that crosses the page boundary is skipped. So by default every page starts
    a new window at its last record's time (``slide_every=1``): the boundary's records come
    again and the caller drops the ones it has (:class:`~cskpi.connectors.rest.TimeBoundary`).
    The ``Link: rel="next"`` header says whether anything follows; its page is followed (by
    its query, on the stream's own path, so a proxy ``base_url`` keeps working) only while a
    window cannot move, i.e. while more records share one instant than a page holds, and at
    most up to ``max_page``. ``slide_every=max_page`` follows the links up to the cap instead.
    """

    keeps_start = False

    def __init__(
        self,
        since_param: str,
        time_key: str,
        *,
        max_page: int = 300,
        slide_every: int = 1,
        page_param: str = "page",
        records_key: str | None = None,
    ) -> None:
        super().__init__()
        self.since_param, self.time_key, self.page_param = since_param, time_key, page_param
        self.max_page, self.slide_every, self.records_key = max_page, slide_every, records_key
        self.page = 1

    def next(self, body: Any, response: requests.Response) -> PageParams | None:
        link = response.links.get("next", {}).get("url")
        records = body if self.records_key is None else dig(body, self.records_key)
        listed = records if isinstance(records, list) else []
        objects = [r for r in listed if isinstance(r, Mapping)]
        if not link or not objects:
            return None
        last = dig(objects[-1], self.time_key)  # a null item is skipped, not a window start
        if not isinstance(last, str) or not last:
            raise PaginationError(f"the last record of a page has no {self.time_key}")
        window = _query(response.request.url).get(self.since_param)
        if last != window and (self.page >= self.slide_every or self.page >= self.max_page):
            self.page = 1
            moved = self._once(f"{self.since_param}={last}", "window start")
            return PageParams(query={self.since_param: moved.partition("=")[2]})
        if self.page >= self.max_page:
            raise PaginationError(
                f"more than {self.max_page} pages of records at {last}: the window cannot move"
            )
        self.page += 1
        query = _query(self._once(str(link), "next-page URL"))
        return PageParams(query={**query, self.page_param: query.get(self.page_param, self.page)})


def _query(url: str | None) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url or "").query, keep_blank_values=True))
