"""The one HTTP fetch loop: endpoints declared as data, read page by page.

An HTTP connector declares each endpoint as a :class:`StreamSpec` and maps what
:func:`fetch_pages` yields to :class:`~cskpi.connectors.base.Page` objects. Retries,
pacing and errors live in :mod:`cskpi.core.http.client`; paging in
:mod:`cskpi.connectors.pagination`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from cskpi.connectors import base
from cskpi.connectors.base import Page, Skipped
from cskpi.connectors.fields import Raw, map_each, split_objects
from cskpi.connectors.pagination import PageParams, PaginationError, Paginator, dig
from cskpi.core.config.timespec import parse_duration
from cskpi.core.http.client import HttpClient, decode_json
from cskpi.core.http.ratelimit import MAX_RETRY_AFTER

RawRecord = dict[str, Any]


class Fetched(NamedTuple):
    """One page as read: its objects, the cursor to store after it, its raw body, and a
    ``Skipped`` entry for every item of its list that is not an object (a ``null``)."""

    raws: list[RawRecord]
    cursor: str | None
    body: dict[str, Any]
    skipped: list[Skipped]


def longest_wait(settings: base.ConnectorSettings) -> float:
    """The connector's ``longest_wait`` in seconds, for its :class:`HttpClient`."""
    if settings.longest_wait is None:
        return MAX_RETRY_AFTER
    return parse_duration(settings.longest_wait).total_seconds()


def unix_seconds(moment: datetime) -> int:
    """``since`` as whole unix seconds (Zendesk ``start_time``, Intercom timestamps)."""
    return int(_aware(moment).timestamp())


def iso_utc(moment: datetime) -> str:
    """``since`` as ``2024-01-31T12:00:00Z`` (Freshdesk ``updated_since``)."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"since must be timezone-aware UTC, got {moment.isoformat()}")
    return moment


@dataclass(frozen=True)
class StreamSpec:
    """One endpoint, declared as data.

    ``records_key`` is the (dotted) key of the records in the body, ``None`` when the body
    is the list itself (Freshdesk). ``paginator`` builds a fresh paginator for each read.
    ``cursor_param`` is the query parameter that resumes from a stored cursor (Zendesk:
    ``cursor``); only a stream with one yields cursors, from the paginator's resume token.
    ``since_param``/``since_format`` put a backfill start (or the first sync's start) in the
    query. ``params`` and ``body`` go on every request; a POST search that filters on time
    builds its ``body`` per read with :func:`dataclasses.replace`.
    """

    name: str
    path: str
    records_key: str | None
    paginator: Callable[[], Paginator]
    cursor_param: str | None = None
    since_param: str | None = None
    since_format: Callable[[datetime], str | int] = unix_seconds
    method: Literal["GET", "POST"] = "GET"
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    max_pages: int = 1_000_000  # a bound, not a plan: 10^9 records at 1,000 a page


def fetch_pages(
    client: HttpClient,
    spec: StreamSpec,
    cursor: str | None,
    since: datetime | None,
    *,
    following: HttpClient | None = None,
) -> Iterator[Fetched]:
    """Read ``spec`` from ``cursor`` (a stored cursor wins) or ``since``, page by page.

    Yields each page as a :class:`Fetched`: its objects, the cursor to store once the page
    is stored (``None`` when the stream has no resumable cursor, or the page carries none),
    the raw body (a list body comes as ``{"records": [...]}``) and the items skipped for not
    being objects. Raises :class:`PaginationError` on a
    repeated token, a malformed page or more than ``spec.max_pages`` pages. ``following``
    sends the pages after the first (Intercom's scroll: a failed page cannot be asked again).
    """
    paginator = spec.paginator()
    start = _start(spec, paginator, cursor, since)
    request = _request(spec, start, paginator.first_params())
    previous: frozenset[str] = frozenset()
    for _ in range(spec.max_pages):
        response = client.request(
            spec.method, request.url or spec.path, params=request.query, json=request.body
        )
        body = decode_json(response)
        token = paginator.resume_token(body) if spec.cursor_param else None
        raws, skipped = _records(spec, body)
        previous = _not_again(spec, raws, previous)
        yield Fetched(raws, token, body if isinstance(body, dict) else {"records": body}, skipped)
        after = paginator.next(body, response)
        if after is None:
            return
        request = _request(spec, start if paginator.keeps_start else {}, after)
        client = following or client
    raise PaginationError(f"{spec.name}: more than {spec.max_pages} pages; is paging broken?")


def full_list(
    client: HttpClient, spec: StreamSpec, mapper: Callable[[Raw], base.Record | None]
) -> Iterator[Page]:
    """A full list, re-read every run: pages without a cursor, each object mapped (a bad one
    becomes a ``Skipped`` entry)."""
    for raws, _, _, bad in fetch_pages(client, spec, None, None):
        records, skipped = map_each(raws, mapper)
        yield Page(records, skipped=[*bad, *skipped])


def _start(
    spec: StreamSpec, paginator: Paginator, cursor: str | None, since: datetime | None
) -> dict[str, Any]:
    """The parameters saying where this read starts: a stored cursor, ``since``, or a default
    ``since_param`` value in ``spec.params`` (Zendesk's exports need ``start_time=0``)."""
    if cursor is not None:
        if spec.cursor_param is None:
            raise ValueError(f"stream {spec.name} cannot resume from a cursor; pass since")
        paginator.resume_from(cursor)
        return {spec.cursor_param: cursor}
    if spec.since_param is None:
        return {}
    if since is not None:
        return {spec.since_param: spec.since_format(since)}
    default = spec.params.get(spec.since_param)
    return {} if default is None else {spec.since_param: default}


def _request(spec: StreamSpec, start: Mapping[str, Any], page: PageParams) -> PageParams:
    body = None if spec.method == "GET" else {**(spec.body or {}), **(page.body or {})}
    if page.url is not None:  # a next-page link carries its whole query
        return PageParams(url=page.url, body=body)
    fixed = {k: v for k, v in spec.params.items() if k != spec.since_param}
    return PageParams(query={**fixed, **start, **page.query}, body=body)


def _not_again(spec: StreamSpec, raws: list[RawRecord], previous: frozenset[str]) -> frozenset[str]:
    """The page's record ids; the same ids as the page before is a vendor handing out new
    cursors over the same records (paging that would never end): refused before the page, and
    its cursor, are stored."""
    ids = frozenset(str(raw["id"]) for raw in raws if raw.get("id") is not None)
    if ids and ids == previous:
        shown = ", ".join(sorted(ids, key=_id_order)[:5])
        raise PaginationError(
            f"{spec.name}: the API returned the same records again ({len(ids)}: {shown}"
            f"{', ...' if len(ids) > 5 else ''}) under a new cursor; stopping instead of looping"
        )
    return ids


def _records(spec: StreamSpec, body: Any) -> tuple[list[RawRecord], list[Skipped]]:
    """The page's objects; an item that is not one is skipped, not its page."""
    records = body if spec.records_key is None else dig(body, spec.records_key)
    if not isinstance(records, list):
        where = "the body" if spec.records_key is None else f"{spec.records_key!r}"
        raise PaginationError(f"{spec.name}: expected a list of objects in {where}")
    return split_objects(records)


@dataclass(frozen=True)
class TimeBoundary:
    """Where a stream read through an inclusive time filter stands: every record before ``at``
    is stored, and of those at ``at`` exactly the ones in ``ids``.

    The cursor of a list sorted by a time with one-second resolution (Freshdesk's
    ``updated_since``, Intercom's ``updated_at``): the next read starts at ``at`` itself, so a
    record written later in that same second is not lost, and :meth:`fresh` drops the ones
    already stored. Encoded as ``"<ISO time>|<id>,<id>..."``.
    """

    at: datetime
    ids: frozenset[str] = frozenset()

    def fresh(self, at: datetime, ident: str) -> bool:
        """Not stored yet: after the boundary, or at it and not among its ids."""
        return at > self.at or (at == self.at and ident not in self.ids)

    def advance(self, at: datetime, ident: str) -> TimeBoundary:
        """The boundary once this record (the newest so far, records in time order) is stored."""
        if at > self.at:
            return TimeBoundary(at, frozenset((ident,)))
        if at == self.at:
            return TimeBoundary(at, self.ids | {ident})
        return self

    def encode(self) -> str:
        return f"{iso_utc(self.at)}|{','.join(sorted(self.ids, key=_id_order))}"

    @classmethod
    def decode(cls, text: str) -> TimeBoundary:
        """The boundary stored by :meth:`encode`; a bare ISO time has no ids."""
        moment, _, ids = text.partition("|")
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError(f"a stored time cursor must carry its zone: {text[:40]!r}")
        return cls(at.astimezone(UTC), frozenset(i for i in ids.split(",") if i))


def _id_order(ident: str) -> tuple[int, str]:
    return (len(ident), ident)  # numeric ids in numeric order, without parsing them
