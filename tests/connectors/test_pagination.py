"""Paginators: what each asks for next, where each stops, and that none of them loops."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests

from cskpi.connectors.pagination import (
    CursorPaginator,
    NextUrlPaginator,
    PageNumberPaginator,
    PageParams,
    PaginationError,
    StartingAfterPaginator,
    dig,
)
from tests.sample_data import SAMPLES as ALL_SAMPLES

SAMPLES = ALL_SAMPLES


def sample(name: str) -> Any:
    path = SAMPLES / name
    return json.loads(path.read_text())


def response(body: Any = None, link: str | None = None) -> requests.Response:
    made = requests.Response()
    made.status_code = 200
    made._content = json.dumps(body).encode()
    if link:
        made.headers["Link"] = link
    return made


def test_dig() -> None:
    body = {"pages": {"next": {"starting_after": "Wz"}}, "list": [1]}
    assert dig(body, "pages.next.starting_after") == "Wz"
    assert dig(body, "pages.prev.starting_after") is None
    assert dig(body, "list.0") is None
    assert dig([1], "a") is None


# --- CursorPaginator -------------------------------------------------------------------


def test_zendesk_cursor_export_follows_after_cursor_until_end_of_stream() -> None:
    first = sample("zendesk/incremental_tickets_cursor_page_per_page1.json")
    last = sample("zendesk/incremental_tickets_cursor_page_end_of_stream.json")
    paginator = CursorPaginator()

    assert paginator.first_params() == PageParams()
    assert paginator.next(first, response(first)) == PageParams(
        query={"cursor": "MTY5NTA1MjY2My4wfHwyOHw="}
    )
    assert paginator.next(last, response(last)) is None
    # The cursor at end_of_stream is still the one to store.
    assert paginator.resume_token(last) == "MTcwNzI3MTc0MS4wfHw0MDQ1fA=="


def test_an_empty_page_is_not_the_end_of_a_cursor_export() -> None:
    page = {"tickets": [], "after_cursor": "c2", "end_of_stream": False}
    assert CursorPaginator().next(page, response(page)) == PageParams(query={"cursor": "c2"})


def test_zendesk_cursor_pagination_stops_on_has_more_false() -> None:
    events = sample("zendesk/ticket_metric_events_page_airbyte_fixture.json")
    paginator = CursorPaginator("meta.after_cursor", "page[after]", more_key="meta.has_more")
    more = {"meta": {"has_more": True, "after_cursor": "xyz"}}

    assert paginator.next(more, response(more)) == PageParams(query={"page[after]": "xyz"})
    assert paginator.next(events, response(events)) is None
    assert paginator.resume_token(events) == "after-cursor"


def test_a_missing_cursor_ends_the_stream() -> None:
    users = sample("zendesk/incremental_users_cursor_page_airbyte_fixture.json")
    paginator = CursorPaginator(end_key=None)
    assert paginator.next(users, response(users)) is None
    assert paginator.resume_token(users) is None


def test_the_same_cursor_twice_is_an_error_not_a_loop() -> None:
    paginator = CursorPaginator()
    page = {"tickets": [{"id": 1}], "after_cursor": "same", "end_of_stream": False}
    paginator.next(page, response(page))

    with pytest.raises(PaginationError, match=r"same after_cursor twice \(same\)"):
        paginator.next(page, response(page))


def test_a_cursor_echoing_the_stored_one_is_caught() -> None:
    paginator = CursorPaginator()
    paginator.resume_from("stored")
    page = {"tickets": [], "after_cursor": "stored", "end_of_stream": False}
    with pytest.raises(PaginationError):
        paginator.next(page, response(page))


def test_the_stored_cursor_back_at_end_of_stream_is_fine() -> None:
    paginator = CursorPaginator()
    paginator.resume_from("stored")
    page = {"tickets": [], "after_cursor": "stored", "end_of_stream": True}
    assert paginator.next(page, response(page)) is None


# --- NextUrlPaginator ------------------------------------------------------------------


def test_zendesk_time_based_export_next_page_in_the_body() -> None:
    page = sample("zendesk/incremental_tickets_time_based_page_per_page1.json")
    last = sample("zendesk/incremental_ticket_events_page_airbyte_fixture.json")
    paginator = NextUrlPaginator("next_page", end_key="end_of_stream")

    assert paginator.next(page, response(page)) == PageParams(url=page["next_page"])
    assert paginator.next(last, response(last)) is None


def test_link_header_next() -> None:
    url = "https://acme.freshdesk.com/api/v2/tickets?page=2&per_page=100"
    paginator = NextUrlPaginator()

    assert paginator.next([], response([], link=f'<{url}>; rel="next"')) == PageParams(url=url)
    assert paginator.next([], response([])) is None
    with pytest.raises(PaginationError, match="next-page URL"):
        paginator.next([], response([], link=f'<{url}>; rel="next"'))


# --- PageNumberPaginator ---------------------------------------------------------------


def test_page_numbers_until_a_short_page() -> None:
    paginator = PageNumberPaginator(page_size=2)

    assert paginator.first_params() == PageParams(query={"page": 1, "per_page": 2})
    full = [{"id": 1}, {"id": 2}]
    assert paginator.next(full, response(full)) == PageParams(query={"page": 2, "per_page": 2})
    assert paginator.next([{"id": 3}], response([{"id": 3}])) is None


def test_page_numbers_stop_on_an_empty_page_without_a_size() -> None:
    paginator = PageNumberPaginator(records_key="items")
    page = {"items": [{"id": 1}]}
    assert paginator.next(page, response(page)) == PageParams(query={"page": 2})
    assert paginator.next({"items": []}, response({"items": []})) is None


def test_page_cap_stops_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    paginator = PageNumberPaginator(page_size=1, max_page=2)
    paginator.next([{"id": 1}], response([{"id": 1}]))

    with caplog.at_level(logging.WARNING, logger="cskpi.pagination"):
        assert paginator.next([{"id": 2}], response([{"id": 2}])) is None
    assert "stopping at page 2" in caplog.text


def test_the_same_page_twice_means_the_api_ignores_page() -> None:
    paginator = PageNumberPaginator(page_size=1)
    paginator.next([{"id": 1}], response([{"id": 1}]))
    with pytest.raises(PaginationError, match="same page content twice"):
        paginator.next([{"id": 1}], response([{"id": 1}]))


# --- StartingAfterPaginator ------------------------------------------------------------


def test_intercom_search_pages_in_the_body() -> None:
    last = sample("intercom/search_conversations_response_oas_2.16.json")
    page = {
        **last,
        "pages": {"next": {"page": 2, "starting_after": "WzE3MTk0OTM3NTcuMCwgIjEyMyJd"}},
    }
    paginator = StartingAfterPaginator()

    assert paginator.first_params() == PageParams(body={"pagination": {"per_page": 150}})
    assert paginator.next(page, response(page)) == PageParams(
        body={"pagination": {"per_page": 150, "starting_after": "WzE3MTk0OTM3NTcuMCwgIjEyMyJd"}}
    )
    assert paginator.next(last, response(last)) is None
    with pytest.raises(PaginationError, match="starting_after"):
        paginator.next(page, response(page))


def test_intercom_list_pages_in_the_query() -> None:
    paginator = StartingAfterPaginator(50, in_body=False)
    page = {"pages": {"next": {"starting_after": "abc"}}}

    assert paginator.first_params() == PageParams(query={"per_page": 50})
    assert paginator.next(page, response(page)) == PageParams(
        query={"per_page": 50, "starting_after": "abc"}
    )
