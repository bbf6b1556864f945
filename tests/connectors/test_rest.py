"""The fetch loop against scripted vendors: the cursor reaches the request, pages come out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from cskpi.connectors.pagination import (
    CursorPaginator,
    NextUrlPaginator,
    PageNumberPaginator,
    PaginationError,
    StartingAfterPaginator,
)
from cskpi.connectors.rest import StreamSpec, fetch_pages, iso_utc, unix_seconds
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import FatalAPIError, HttpClient
from tests.sample_data import SAMPLES as ALL_SAMPLES

SAMPLES = ALL_SAMPLES
ZENDESK = "https://z3n-jteitelbaum.zendesk.com/api/v2"
EXPORT = f"{ZENDESK}/incremental/tickets/cursor.json"
FRESHDESK = "https://acme.freshdesk.com/api/v2"
INTERCOM = "https://api.eu.intercom.io"
SINCE = datetime(2023, 9, 1, tzinfo=UTC)

TICKETS = StreamSpec(
    name="tickets",
    path="incremental/tickets/cursor.json",
    records_key="tickets",
    paginator=CursorPaginator,
    cursor_param="cursor",
    since_param="start_time",
    params={"include": "metric_sets", "per_page": 1000},
)


def sample(name: str) -> Any:
    path = SAMPLES / name
    return json.loads(path.read_text())


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        yield mock


def client(base: str) -> HttpClient:
    return HttpClient("acme", base, clock=FakeClock())


def query(**params: object) -> list[Any]:
    return [matchers.query_param_matcher({k: str(v) for k, v in params.items()})]


def test_zendesk_export_sends_start_time_first_then_only_the_cursor(
    api: responses.RequestsMock,
) -> None:
    first = sample("zendesk/incremental_tickets_cursor_page_per_page1.json")
    last = sample("zendesk/incremental_tickets_cursor_page_end_of_stream.json")
    fixed = {"include": "metric_sets", "per_page": 1000}
    api.get(EXPORT, json=first, match=query(start_time=1693526400, **fixed))
    api.get(EXPORT, json=last, match=query(cursor=first["after_cursor"], **fixed))

    pages = list(fetch_pages(client(ZENDESK), TICKETS, None, SINCE))

    assert [len(records) for records, _, _, _ in pages] == [1, 87]
    assert [page.cursor for page in pages] == [first["after_cursor"], last["after_cursor"]]
    assert pages[1][0][0]["id"] == last["tickets"][0]["id"]
    assert pages[1][2] == last


def test_a_stored_cursor_wins_over_since(api: responses.RequestsMock) -> None:
    last = sample("zendesk/incremental_tickets_cursor_page_end_of_stream.json")
    api.get(EXPORT, json=last, match=query(cursor="stored==", include="metric_sets", per_page=1000))

    pages = list(fetch_pages(client(ZENDESK), TICKETS, "stored==", SINCE))
    assert [page.cursor for page in pages] == [last["after_cursor"]]


def test_a_default_start_in_params_is_used_only_without_cursor_or_since(
    api: responses.RequestsMock,
) -> None:
    spec = StreamSpec(
        "tickets",
        TICKETS.path,
        "tickets",
        CursorPaginator,
        cursor_param="cursor",
        since_param="start_time",
        params={"start_time": 0},
    )
    end = {"tickets": [], "after_cursor": "c1", "end_of_stream": True}
    api.get(EXPORT, json=end, match=query(start_time=0))
    api.get(EXPORT, json=end, match=query(cursor="c0"))

    assert [page.cursor for page in fetch_pages(client(ZENDESK), spec, None, None)] == ["c1"]
    assert [page.cursor for page in fetch_pages(client(ZENDESK), spec, "c0", None)] == ["c1"]


def test_a_cursor_that_repeats_stops_with_an_error_after_yielding_its_pages(
    api: responses.RequestsMock,
) -> None:
    page = {"tickets": [{"id": 1}], "after_cursor": "again", "end_of_stream": False}
    api.get(EXPORT, json=page)
    api.get(EXPORT, json={**page, "tickets": [{"id": 2}]})

    pages = fetch_pages(client(ZENDESK), TICKETS, None, SINCE)
    assert next(pages)[1] == "again"
    assert next(pages)[1] == "again"  # the page is delivered; following it again is refused
    with pytest.raises(PaginationError, match="same after_cursor twice"):
        next(pages)
    assert len(api.calls) == 2


def test_the_page_bound_stops_an_endless_stream(api: responses.RequestsMock) -> None:
    for n in range(3):
        api.get(EXPORT, json={"tickets": [], "after_cursor": f"c{n}", "end_of_stream": False})
    spec = StreamSpec("tickets", TICKETS.path, "tickets", CursorPaginator, max_pages=3)

    with pytest.raises(PaginationError, match="more than 3 pages"):
        list(fetch_pages(client(ZENDESK), spec, None, None))


def test_zendesk_time_based_export_follows_next_page_urls(api: responses.RequestsMock) -> None:
    page = sample("zendesk/incremental_tickets_time_based_page_per_page1.json")
    last = sample("zendesk/incremental_ticket_events_page_airbyte_fixture.json")
    spec = StreamSpec(
        "ticket_events",
        "incremental/tickets.json",
        "tickets",
        lambda: NextUrlPaginator("next_page", end_key="end_of_stream"),
        since_param="start_time",
        params={"per_page": 1},
    )
    api.get(f"{ZENDESK}/incremental/tickets.json", json=page, match=query(per_page=1, start_time=0))
    api.get(
        f"{ZENDESK}/incremental/tickets.json",
        json={**last, "tickets": []},
        match=query(per_page=1, start_time=1695052664),
    )

    start = datetime(1970, 1, 1, tzinfo=UTC)
    pages = list(fetch_pages(client(ZENDESK), spec, None, start))
    assert [len(records) for records, _, _, _ in pages] == [7, 0]
    assert [page.cursor for page in pages] == [None, None]


def test_a_next_link_to_another_host_is_refused(api: responses.RequestsMock) -> None:
    page = {"tickets": [], "next_page": "https://evil.example/steal", "end_of_stream": False}
    api.get(f"{ZENDESK}/incremental/tickets.json", json=page)
    spec = StreamSpec(
        "t", "incremental/tickets.json", "tickets", lambda: NextUrlPaginator("next_page")
    )

    with pytest.raises(FatalAPIError, match=r"refusing to follow https://evil\.example/steal"):
        list(fetch_pages(client(ZENDESK), spec, None, None))


def test_freshdesk_pages_keep_updated_since_on_every_page(api: responses.RequestsMock) -> None:
    ticket = sample("freshdesk/ticket_with_stats_and_requester_airbyte_fixture.json")[0]
    spec = StreamSpec(
        "tickets",
        "tickets",
        None,
        lambda: PageNumberPaginator(page_size=2),
        since_param="updated_since",
        since_format=iso_utc,
        params={"order_by": "updated_at", "order_type": "asc"},
    )
    fixed = {"order_by": "updated_at", "order_type": "asc", "updated_since": "2023-09-01T00:00:00Z"}
    for page, ids in ((1, [1, 2]), (2, [3, 4]), (3, [5])):
        body = [{**ticket, "id": i} for i in ids]
        api.get(f"{FRESHDESK}/tickets", json=body, match=query(page=page, per_page=2, **fixed))

    pages = list(fetch_pages(client(FRESHDESK), spec, None, SINCE))
    assert [[r["id"] for r in records] for records, _, _, _ in pages] == [[1, 2], [3, 4], [5]]
    assert pages[2][2] == {"records": pages[2][0]}


def test_freshdesk_link_header_paging(api: responses.RequestsMock) -> None:
    second = f"{FRESHDESK}/tickets?page=2&per_page=1"
    api.get(
        f"{FRESHDESK}/tickets",
        json=[{"id": 1}],
        headers={"Link": f'<{second}>; rel="next"'},
        match=query(per_page=1),
    )
    api.get(f"{FRESHDESK}/tickets", json=[{"id": 2}], match=query(page=2, per_page=1))
    spec = StreamSpec("tickets", "tickets", None, NextUrlPaginator, params={"per_page": 1})

    pages = list(fetch_pages(client(FRESHDESK), spec, None, None))
    assert [records for records, _, _, _ in pages] == [[{"id": 1}], [{"id": 2}]]


def test_intercom_search_carries_starting_after_in_the_body(api: responses.RequestsMock) -> None:
    found = sample("intercom/search_conversations_response_oas_2.16.json")
    token = "WzE3MTk0OTM3NTcuMCwgIjEyMyJd"
    search = {
        "query": {"field": "updated_at", "operator": ">", "value": 1693526400},
        "sort": {"field": "updated_at", "order": "ascending"},
    }
    url = f"{INTERCOM}/conversations/search"
    first = {**search, "pagination": {"per_page": 150}}
    then = {**search, "pagination": {"per_page": 150, "starting_after": token}}
    next_page = {**found, "pages": {"next": {"starting_after": token}}}
    api.post(url, json=next_page, match=[matchers.json_params_matcher(first)])
    later = {**found, "conversations": [{**found["conversations"][0], "id": "516"}]}
    api.post(url, json=later, match=[matchers.json_params_matcher(then)])
    spec = StreamSpec(
        "conversations",
        "conversations/search",
        "conversations",
        StartingAfterPaginator,
        method="POST",
        body=search,
    )

    pages = list(fetch_pages(client(INTERCOM), spec, None, None))
    ids = [[c["id"] for c in records] for records, _, _, _ in pages]
    assert ids == [[found["conversations"][0]["id"]], ["516"]]
    assert [page.cursor for page in pages] == [None, None]


def test_a_page_without_its_records_is_an_error(api: responses.RequestsMock) -> None:
    api.get(EXPORT, json={"error": "InvalidPaginationParameter"})

    with pytest.raises(PaginationError, match="tickets: expected a list of objects in 'tickets'"):
        list(fetch_pages(client(ZENDESK), TICKETS, None, SINCE))


def test_resuming_a_stream_without_a_cursor_parameter_is_a_bug() -> None:
    spec = StreamSpec("tickets", "tickets", None, PageNumberPaginator)
    with pytest.raises(ValueError, match="cannot resume from a cursor"):
        next(fetch_pages(client(FRESHDESK), spec, "c1", None))


def test_since_formats() -> None:
    moment = datetime(2024, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert unix_seconds(moment) == 1706702400
    assert iso_utc(moment) == "2024-01-31T12:00:00Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        unix_seconds(datetime(2024, 1, 31))


def test_new_cursors_over_the_same_records_stop_before_the_repeat_is_stored(
    api: responses.RequestsMock,
) -> None:
    for n in range(2):  # a vendor that hands out a fresh cursor with the same two tickets
        page = {"tickets": [{"id": 1}, {"id": 2}], "after_cursor": f"c{n}", "end_of_stream": False}
        api.get(EXPORT, json=page)

    pages = fetch_pages(client(ZENDESK), TICKETS, None, SINCE)
    assert next(pages)[1] == "c0"
    with pytest.raises(PaginationError, match=r"same records again \(2: 1, 2\) under a new cursor"):
        next(pages)  # the second page's cursor is never handed out to be stored
    assert len(api.calls) == 2
