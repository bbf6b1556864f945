"""The intercom connector against scripted responses built from real recorded payloads."""

from __future__ import annotations

import copy
import json
import logging
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from pydantic import ValidationError
from responses import matchers
from responses.registries import OrderedRegistry

from cskpi.connectors.base import Message, Page, Person, Rating, StatusChange, Ticket
from cskpi.connectors.intercom import Boundary, IntercomConnector, IntercomSettings
from cskpi.connectors.intercom_map import map_admin, map_conversation, map_rating, map_ticket
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import AuthError, RetriableAPIError
from tests.connectors.openapi import INTERCOM, document, schema_errors
from tests.connectors.openapi.check import INTERCOM_DEVIATIONS, RequestCheck
from tests.sample_data import SAMPLES as ALL_SAMPLES

SAMPLES = ALL_SAMPLES / "intercom"
API = "https://api.intercom.io"
SEARCH = f"{API}/conversations/search"
TOKEN = "s3cret-intercom-token"
NOW = 1_800_000_000  # the fake clock's wall time: after every sample


def sample(name: str) -> Any:
    path = SAMPLES / name
    return json.loads(path.read_text())


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    """Scripted responses, consumed in order; every one must be used."""
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall_start=NOW)


def settings(**overrides: object) -> IntercomSettings:
    return IntercomSettings.model_validate({"type": "intercom", "access_token": TOKEN, **overrides})


def connector(clock: FakeClock, **overrides: object) -> IntercomConnector:
    """One retrieval at a time: the scripted responses are consumed in order."""
    return IntercomConnector("acme", settings(**{"concurrency": 1, **overrides}), clock=clock)


def read(ic: IntercomConnector, name: str, cursor: str | None = None) -> list[Page]:
    stream = next(s for s in ic.streams() if s.name == name)
    return list(stream.read(cursor, None))


def retrieved(ident: str, updated: int, **changes: Any) -> dict[str, Any]:
    """The documented retrieve example, as conversation ``ident``."""
    found = sample("conversation_retrieve_with_parts_oas_2.16.json")
    return {**found, "id": ident, "updated_at": updated, **changes}


def in_search(ident: str, updated: int) -> dict[str, Any]:
    item = sample("search_conversations_response_oas_2.16.json")["conversations"][0]
    return {**item, "id": ident, "updated_at": updated}


def search_body(lo: int, starting_after: str | None = None) -> dict[str, Any]:
    paging: dict[str, Any] = {"per_page": 150}
    if starting_after:
        paging["starting_after"] = starting_after
    at_lo = [{"field": "updated_at", "operator": op, "value": lo} for op in (">", "=")]
    return {
        "query": {"operator": "AND", "value": [
            {"operator": "OR", "value": at_lo},
            {"operator": "AND", "value": [
                {"field": "updated_at", "operator": "<", "value": NOW - 60}]},
        ]},
        "sort": {"field": "updated_at", "order": "ascending"},
        "pagination": paging,
    }  # fmt: skip


def listing(items: list[dict[str, Any]], after: str | None = None) -> dict[str, Any]:
    pages: dict[str, Any] = {"type": "pages", "page": 1, "per_page": 150, "total_pages": 2}
    if after:
        pages["next"] = {"page": 2, "starting_after": after}
    return {"type": "conversation.list", "conversations": items, "pages": pages}


# --- settings and check -----------------------------------------------------------------


def test_settings_choose_the_regional_host_and_pin_the_version(clock: FakeClock) -> None:
    assert settings().root() == "https://api.intercom.io/"
    assert settings(region="eu").root() == "https://api.eu.intercom.io/"
    assert settings(region="au").root() == "https://api.au.intercom.io/"
    assert settings(region="eu", base_url="http://127.0.0.1:9/").root() == "http://127.0.0.1:9/"
    ic = connector(clock, intercom_version="2.11", ca_bundle="/etc/ssl/corp.pem")
    assert ic.http.session.headers["Intercom-Version"] == "2.11"
    assert ic.http.session.headers["Authorization"] == f"Bearer {TOKEN}"
    assert ic.http.session.verify == "/etc/ssl/corp.pem"
    assert settings().intercom_version == "2.16"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"region": "us-east"}, "'us', 'eu' or 'au'"),
        ({"intercom_version": "1.4"}, "should match pattern"),
        ({"per_page": 151}, "less than or equal to 150"),
        ({"access_token": None}, "access_token"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_settings_refuse_what_cannot_work(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**overrides)


def test_check_calls_me_and_names_the_secret_when_rejected(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/me", json={"type": "admin", "id": "991267459"},
            match=[matchers.header_matcher({"Intercom-Version": "2.16"})])  # fmt: skip
    connector(clock).check()
    errors = {"type": "error.list", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]}  # fmt: skip  # noqa: E501
    api.get(f"{API}/me", status=401, json=errors)
    with pytest.raises(AuthError, match="the token for connector acme is rejected") as caught:
        connector(clock).check()
    assert "check access_token" in str(caught.value)
    assert TOKEN not in str(caught.value)


# --- mapping the real payloads ----------------------------------------------------------


def test_the_documented_retrieved_conversation_maps_to_a_ticket_and_its_messages() -> None:
    found = map_conversation(sample("conversation_retrieve_with_parts_oas_2.16.json"))
    t = found.ticket
    assert (t.external_id, t.status, t.raw_status, t.priority, t.channel) == (
        "503", "solved", "closed", None, "chat",
    )  # fmt: skip
    assert (t.assignee_id, t.group_id, t.requester_id, t.tags) == (
        "991267715", "5017691", "6762f1261bb69f9f2193bba7", ("Test tag",),
    )  # fmt: skip
    # admin-initiated: no customer message, so no first reply; the last part closed it; the
    # one comment is Operator's, a bot's (see the test below)
    assert (t.first_reply_at, t.agent_replies) == (None, 0)
    assert (t.first_solved_at, t.solved_at, t.reopens) == (at(1740141857), at(1740141857), 0)
    assert found.messages == [
        Message("503-source", "503", at(1734537511), "agent", True, "991267645"),
        Message("1", "503", at(1663597223), "bot", True, "274"),
    ]
    assert (found.rating, found.people, found.truncated) == (None, [], False)


def test_statistics_and_parts_of_a_real_conversation() -> None:
    raw = sample("conversation_with_statistics_airbyte_record.json")
    parts = sample("conversation_parts_airbyte_records.json")
    for part in parts:
        del part["conversation_id"]  # added by Airbyte, not by the API
    raw["conversation_parts"] = {"type": "conversation_part.list", "conversation_parts": parts,
                                 "total_count": len(parts)}  # fmt: skip
    found = map_conversation(raw)
    t = found.ticket
    assert (t.status, t.priority, t.channel, t.assignee_id, t.group_id) == (
        "open", "normal", "chat", None, None,
    )  # fmt: skip
    # no admin comment among the parts the sample kept: statistics' first admin reply stays
    assert (t.first_reply_at, t.agent_replies, t.reopens) == (at(1625654131), 0, 0)
    assert (t.first_solved_at, t.solved_at, t.assignee_changes) == (None, None, 0)
    assert [(m.external_id, m.author_role, m.public) for m in found.messages] == [
        ("1-source", "customer", True), ("7288120839", "customer", True),
        ("7288121348", "bot", True), ("7288121392", "bot", True),
    ]  # fmt: skip
    assert found.people == [Person("5fd150d50697b6d0bbc4a2c2", "customer", None, None)]


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        # 2.16: enum none/low/medium/high/urgent; the documented retrieve example says none
        ("conversation_retrieve_with_parts_oas_2.16.json", "none", None),
        # up to 2.15: priority/not_priority, as SPEC §3b maps the flag (else normal)
        ("conversation_with_statistics_airbyte_record.json", "not_priority", "normal"),
        ("conversation_retrieve_with_parts_oas_2.16.json", "medium", "normal"),
        ("conversation_retrieve_with_parts_oas_2.16.json", "priority", "high"),
        ("conversation_retrieve_with_parts_oas_2.16.json", "urgent", "urgent"),
    ],
)
def test_priority_none_is_no_priority_and_the_old_flag_maps_as_spec_says(
    name: str, raw: str, expected: str | None
) -> None:
    conversation = {**sample(name), "priority": raw}
    assert map_ticket(conversation).priority == expected


def test_operator_and_fin_writing_as_admins_are_bots_not_agent_replies() -> None:
    """2.16's documented retrieve example: the comment by admin "Operator"
    (operator+abcd1234@intercom.io), and conversation_part_author's own example."""
    raw = sample("conversation_retrieve_with_parts_oas_2.16.json")
    comment = raw["conversation_parts"]["conversation_parts"][0]
    assert (comment["part_type"], comment["author"]["type"]) == ("comment", "admin")
    raw["state"], raw["source"]["author"] = "open", {"type": "user", "id": "c1"}
    fin = {**comment, "id": "2", "created_at": comment["created_at"] + 60,
           "author": {"type": "admin", "id": "278", "name": "Fin",
                      "email": "operator+abcd1234@intercom.io", "from_ai_agent": True}}  # fmt: skip
    raw["conversation_parts"]["conversation_parts"] = [comment, fin]

    found = map_conversation(raw)

    assert [m.author_role for m in found.messages] == ["customer", "bot", "bot"]
    assert (found.ticket.agent_replies, found.ticket.first_reply_at) == (0, None)


def test_the_search_body_is_valid_under_the_2_16_search_request_schema(clock: FakeClock) -> None:
    """2.16's ``multiple_filter_search_request.value`` is a oneOf of a list of groups and a list
    of filters: a group and a plain filter side by side match neither. The later fix allowing
    a mixed list (Intercom-OpenAPI #197, commit eb3eccf) changed descriptions/2.11 only."""
    body = {**(connector(clock).search(100, 200).body or {}), "pagination": {"per_page": 150}}

    assert schema_errors(INTERCOM, "search_request", body) == []
    mixed = copy.deepcopy(body)
    mixed["query"]["value"][1] = mixed["query"]["value"][1]["value"][0]  # the old shape
    assert schema_errors(INTERCOM, "search_request", mixed) != []


def test_the_older_shape_bare_lists_and_an_assignee_object() -> None:
    t = map_ticket(sample("conversation_with_statistics_tap_intercom_fixture.json"))
    assert t.tags == ("convo", "test", "new-tag")  # "convo" twice in the payload: once here
    assert (t.requester_id, t.assignee_id, t.status) == (
        "60de5b1bbfce4159687586a7",
        "5025932",
        "open",
    )
    assert (t.first_reply_at, t.assignee_changes) == (at(1625185121), 0)


def test_a_rating_is_csat_on_five_points_and_admins_split_into_agents_and_bots() -> None:
    rating = sample("conversation_rating_schema_examples_oas_2.16.json")
    assert map_rating({"id": "7", "conversation_rating": rating}) == Rating(
        "7", "csat", 5.0, 1.0, 5.0, at(1671028894), "7", None, None
    )
    rated = {**rating, "rating": 2, "remark": "slow", "teammate": {"type": "admin", "id": "44"}}
    assert map_rating({"id": "8", "conversation_rating": rated}) == Rating(
        "8", "csat", 2.0, 1.0, 5.0, at(1671028894), "8", "slow", "44"
    )
    assert map_rating({"id": "9", "conversation_rating": None}) is None
    people = [map_admin(a) for a in sample("admins_airbyte_records.json")]
    assert [(p.external_id, p.role, p.name) for p in people] == [
        ("4423433", "agent", "Airbyte Team"), ("4423434", "bot", "Operator"),
    ]  # fmt: skip


def test_a_reopen_and_team_moves_from_the_parts() -> None:
    raw = retrieved("77", 1740141900, statistics=None)
    parts = raw["conversation_parts"]["conversation_parts"] = copy.deepcopy(
        raw["conversation_parts"]["conversation_parts"]
    )
    parts[0]["state"] = "closed"  # closed at 1663597223, reopened by part 2, closed by part 4
    for part, team in zip(parts[1:3], ("5", "6"), strict=True):
        part["assigned_to"] = {"type": "team", "id": team}
    t = map_conversation(raw).ticket
    assert (t.first_solved_at, t.solved_at, t.reopens, t.group_changes) == (
        at(1663597223), at(1740141857), 1, 1,
    )  # fmt: skip


# --- status history ---------------------------------------------------------------------


def managed(name: str) -> dict[str, Any]:
    """One of 2.16's "Manage a conversation" response examples: the conversation after it."""
    responses_ = document(INTERCOM)["paths"]["/conversations/{conversation_id}/parts"]["post"]
    return copy.deepcopy(
        responses_["responses"]["200"]["content"]["application/json"]["examples"][name]["value"]
    )


@pytest.mark.parametrize(
    ("example", "at_unix", "status"),
    [
        ("Close a conversation", 1734537584, "solved"),  # part_type close
        ("Snooze a conversation", 1734537587, "pending"),  # snoozed
        ("Open a conversation", 1734537601, "open"),  # open
        ("Assign a conversation", 1734537605, "open"),  # assign_and_reopen
    ],
)
def test_the_documented_state_changing_parts_are_status_changes(
    example: str, at_unix: int, status: str
) -> None:
    """The examples carry no ``state`` on their parts: the part type says it. They are
    admin-initiated, so nothing says the state before the part."""
    found = map_conversation(managed(example))
    assert found.history == [StatusChange(found.ticket.external_id, at(at_unix), status)]
    assert StatusChange(found.ticket.external_id, at(at_unix), status) in found.records()


def test_the_state_each_part_records_wins_and_a_contact_opens_a_conversation() -> None:
    """2.16's retrieve example: state open on its comment, closed on custom_action_finished
    (a workflow closed it, no close part); then the same as a contact's conversation."""
    raw = sample("conversation_retrieve_with_parts_oas_2.16.json")
    assert map_conversation(raw).history == [
        StatusChange("503", at(1663597223), "open"), StatusChange("503", at(1740141857), "solved"),
    ]  # fmt: skip
    raw["source"]["delivered_as"] = "customer_initiated"  # open from creation on
    assert map_conversation(raw).history == [
        StatusChange("503", at(1734537511), "open"), StatusChange("503", at(1740141857), "solved"),
    ]  # fmt: skip


def test_parts_without_state_give_the_history_by_their_type_and_a_reopen_counts() -> None:
    """Before 2.13 parts carry no ``state``: close, snoozed, timer_unsnooze, note_and_reopen
    (IC-CM's Conversation Part Types) each set one; comments and assignments none."""
    raw = sample("conversation_with_statistics_airbyte_record.json")  # customer_initiated
    real = sample("conversation_parts_airbyte_records.json")[0]  # a real part: no state
    del real["conversation_id"]  # added by Airbyte, not by the API
    kinds = ["comment", "snoozed", "timer_unsnooze", "assignment", "close", "note_and_reopen",
             "snoozed"]  # fmt: skip
    base = 1607553300
    raw["conversation_parts"] = {"type": "conversation_part.list", "total_count": len(kinds),
        "conversation_parts": [{**real, "id": str(k), "part_type": kind, "created_at": base + k}
                               for k, kind in enumerate(kinds)]}  # fmt: skip
    raw["state"] = "snoozed"
    found = map_conversation(raw)
    assert [(c.at, c.status) for c in found.history] == [
        (at(1607553243), "open"), (at(base + 1), "pending"), (at(base + 2), "open"),
        (at(base + 4), "solved"), (at(base + 5), "open"), (at(base + 6), "pending"),
    ]  # fmt: skip
    assert (found.ticket.first_solved_at, found.ticket.reopens) == (at(base + 4), 1)


# --- the tickets stream -----------------------------------------------------------------


def test_search_pages_with_starting_after_and_every_page_commits_its_cursor(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    body = matchers.json_params_matcher
    api.post(SEARCH, json=listing([in_search("515", 1734537546)], "WzE3MzQ1Mzc1NDYsIjUxNSJd"),
             match=[body(search_body(0))])  # fmt: skip
    api.get(f"{API}/conversations/515", json=retrieved("515", 1734537546))
    api.post(SEARCH, json=listing([in_search("516", 1734537546)]),
             match=[body(search_body(0, "WzE3MzQ1Mzc1NDYsIjUxNSJd"))])  # fmt: skip
    api.get(f"{API}/conversations/516", json=retrieved("516", 1734537546))

    pages = read(connector(clock), "tickets")

    assert [p.cursor for p in pages] == ["1734537546:515", "1734537546:515,516"]
    assert [p.position for p in pages] == [at(1734537546)] * 2
    tickets = [r for p in pages for r in p.records if isinstance(r, Ticket)]
    assert [t.external_id for t in tickets] == ["515", "516"]


def test_the_boundary_second_is_read_again_and_its_stored_ids_dropped(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    found = [in_search("1", 100), in_search("2", 100), in_search("3", 100), in_search("4", 101)]
    api.post(SEARCH, json=listing(found), match=[matchers.json_params_matcher(search_body(100))])
    api.get(f"{API}/conversations/3", json=retrieved("3", 100))
    api.get(f"{API}/conversations/4", json=retrieved("4", 101))

    [page] = read(connector(clock), "tickets", cursor="100:1,2")

    assert page.cursor == "101:4"
    assert [r.external_id for r in page.records if isinstance(r, Ticket)] == ["3", "4"]


def test_a_conversation_deleted_before_its_retrieval_is_kept_as_deleted(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.post(SEARCH, json=listing([in_search("9", 200), in_search("10", 201)]))
    not_found = {"type": "error.list", "errors": [
        {"code": "not_found", "message": "Conversation not found. Message deleted."}]}  # fmt: skip
    api.get(f"{API}/conversations/9", status=404, json=not_found)
    api.get(f"{API}/conversations/10", json=retrieved("10", 201))

    [page] = read(connector(clock), "tickets")

    tickets = {r.external_id: r for r in page.records if isinstance(r, Ticket)}
    assert (tickets["9"].deleted, tickets["10"].deleted) == (True, False)
    assert {r.ticket_id for r in page.records if isinstance(r, Message)} == {"10"}
    assert (page.cursor, page.skipped) == ("201:10", [])


SERVER_ERROR = {
    "type": "error.list",
    "errors": [{"code": "server_error", "message": "Server Error"}],
}


def test_an_unreadable_conversation_is_skipped_and_counted_and_the_cursor_moves_past_it(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.post(SEARCH, json=listing([in_search("1", 200), in_search("2", 201), in_search("3", 202)]))
    api.get(f"{API}/conversations/1", json=retrieved("1", 200))
    for _ in range(8):  # every attempt the client makes
        api.get(f"{API}/conversations/2", status=500, json=SERVER_ERROR)
    api.get(f"{API}/conversations/3", status=400, json={"type": "error.list", "errors": [
        {"code": "parameter_invalid", "message": "Conversation cannot be read"}]})  # fmt: skip

    [page] = read(connector(clock), "tickets")

    assert {r.external_id for r in page.records if isinstance(r, Ticket)} == {"1"}
    assert [(s.record_id, s.reason.split(":")[0]) for s in page.skipped] == [
        ("2", "unreadable"), ("3", "unreadable"),
    ]  # fmt: skip
    assert page.cursor == "202:3"


def test_a_page_whose_every_conversation_fails_with_a_5xx_fails_the_stream(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.post(SEARCH, json=listing([in_search("2", 201)]))
    for _ in range(8):
        api.get(f"{API}/conversations/2", status=503, json=SERVER_ERROR)

    with pytest.raises(RetriableAPIError, match="503"):
        read(connector(clock), "tickets")


def test_more_than_500_parts_are_flagged_and_the_statistics_give_the_times(
    api: responses.RequestsMock, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    raw = retrieved(
        "5", 300, statistics=sample("conversation_statistics_schema_examples_oas_2.16.json")
    )
    first, teammate = raw["conversation_parts"]["conversation_parts"][:2]
    part = {**first, "author": teammate["author"]}  # a teammate's comment, not Operator's
    raw["conversation_parts"] = {"conversation_parts": [{**part, "id": str(i)} for i in range(500)],
                                 "total_count": 731}  # fmt: skip
    api.post(SEARCH, json=listing([in_search("5", 300)]))
    api.get(f"{API}/conversations/5", json=raw)

    with caplog.at_level(logging.WARNING, "cskpi.intercom"):
        [page] = read(connector(clock), "tickets")

    [ticket] = [r for r in page.records if isinstance(r, Ticket)]
    assert (ticket.first_reply_at, ticket.first_solved_at, ticket.solved_at) == (
        at(1663597233), at(1663597233), at(1663597233),
    )  # fmt: skip
    assert (ticket.reopens, ticket.agent_replies) == (1, 500)
    assert "conversation 5 has more parts than the API returns" in caplog.text


def test_a_429_waits_for_the_window_in_the_headers(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    limits = sample("rate_limit_headers_docs_example.json")["throttled_response"]
    wall = int(clock.wall())
    headers = {**limits["headers"], "X-RateLimit-Reset": str(wall + 8)}
    api.get(f"{API}/teams", status=429, headers=headers,
            json={"type": "error.list", "errors": [{"code": "rate_limit_exceeded"}]})  # fmt: skip
    api.get(f"{API}/teams", json={"type": "team.list", "teams": [{"id": "5", "name": "Tier 2"}]})

    [page] = read(connector(clock), "groups")

    assert [(g.external_id, g.name) for g in page.records] == [("5", "Tier 2")]  # type: ignore[union-attr]
    assert clock.now() >= 8.0  # the reset in the headers, however the backoff rounded


def test_companies_scroll_until_an_empty_page(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    company = {"type": "company", "id": "6762f0971bb69f9f2193bb2b", "name": "IntercomQATest1",
               "created_at": 1734537367}  # fmt: skip
    api.get(
        f"{API}/companies/scroll", json={"type": "list", "data": [company], "scroll_param": "s1"}
    )
    again = {"type": "list", "data": [{**company, "id": "c2"}], "scroll_param": "s1"}
    scrolled = [matchers.query_param_matcher({"scroll_param": "s1"})]
    api.get(f"{API}/companies/scroll", json=again, match=scrolled)
    api.get(f"{API}/companies/scroll", json={"type": "list", "data": [], "scroll_param": "s1"})

    pages = read(connector(clock), "organizations")

    assert [r.external_id for p in pages for r in p.records] == ["6762f0971bb69f9f2193bb2b", "c2"]


def test_a_company_scroll_that_fails_with_a_500_is_restarted_from_its_first_page(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    """2.16, GET /companies/scroll: a 500 "Request failed due to an internal network error.
    Please restart the scroll operation." - "It is not possible to continue from a specific
    point when using scroll." Asking the failed page again cannot work."""
    company = {"type": "company", "id": "6762f0971bb69f9f2193bb2b", "name": "IntercomQATest1",
               "created_at": 1734537367}  # fmt: skip
    fresh = [matchers.query_param_matcher({})]
    api.get(f"{API}/companies/scroll", match=fresh,
            json={"type": "list", "data": [company], "scroll_param": "s1"})  # fmt: skip
    api.get(f"{API}/companies/scroll", status=500, match=[matchers.query_param_matcher(
        {"scroll_param": "s1"})], json={"type": "error.list", "errors": [{"code": "server_error",
        "message": "Request failed due to an internal network error. Please restart the scroll "
                   "operation."}]})  # fmt: skip
    api.get(f"{API}/companies/scroll", match=fresh,
            json={"type": "list", "data": [company], "scroll_param": "s2"})  # fmt: skip
    s2 = [matchers.query_param_matcher({"scroll_param": "s2"})]
    second = {"type": "list", "data": [{**company, "id": "c2"}], "scroll_param": "s2"}
    api.get(f"{API}/companies/scroll", match=s2, json=second)
    api.get(f"{API}/companies/scroll", match=s2,
            json={"type": "list", "data": [], "scroll_param": "s2"})  # fmt: skip

    pages = read(connector(clock), "organizations")

    ids = [r.external_id for p in pages for r in p.records]
    assert ids == ["6762f0971bb69f9f2193bb2b", "6762f0971bb69f9f2193bb2b", "c2"]


def test_a_boundary_cursor_round_trips() -> None:
    assert str(Boundary.parse("1700000000:b,a")) == "1700000000:a,b"
    assert Boundary.parse("5:") == Boundary(5, set())
    with pytest.raises(ValueError, match="not an intercom tickets cursor"):
        Boundary.parse("WzE3MTk0OTM3NTcuMCwgIjEyMyJd")


def test_a_bad_conversation_is_skipped_and_the_cursor_still_moves(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.post(SEARCH, json=listing([in_search("1", 400), in_search("2", 401)]))
    api.get(f"{API}/conversations/1", json=retrieved("1", 400, state="archived"))
    api.get(f"{API}/conversations/2", json=retrieved("2", 401))

    [page] = read(connector(clock), "tickets")

    assert [(s.record_id, s.reason) for s in page.skipped] == [
        ("1", "state: unknown value 'archived'")
    ]
    assert [r.external_id for r in page.records if isinstance(r, Ticket)] == ["2"]
    assert page.cursor == "401:2"


def test_since_starts_the_search_there_whatever_the_stored_cursor(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.post(SEARCH, json=listing([]), match=[matchers.json_params_matcher(search_body(86400))])
    stream = next(s for s in connector(clock).streams() if s.name == "tickets")

    [page] = list(stream.read("1700000000:9", at(86400)))

    assert (page.records, page.cursor, page.position) == ([], "86400:", at(86400))


def test_the_budget_follows_the_stated_window_allowance_below_the_configured_ceiling(
    clock: FakeClock,
) -> None:
    limiter = connector(clock, rate_limit=600).http.limiter
    assert limiter is not None
    assert limiter.budget is not None
    assert (limiter.budget.requests, limiter.budget.per_seconds) == (100, 10.0)
    answered = requests.Response()
    answered.status_code = 429  # falsy as a Response: its headers count all the same
    answered.headers.update({"X-RateLimit-Limit": "40", "X-RateLimit-Remaining": "39"})
    limiter.release(limiter.acquire(), answered)
    assert limiter.budget.requests == 40  # the window's stated allowance
    answered.headers["X-RateLimit-Limit"] = "1667"
    limiter.release(limiter.acquire(), answered)
    assert limiter.budget.requests == 100  # never above the configured rate_limit


def test_pyproject_registers_the_connector_under_its_type() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["cskpi.connectors"]
    loaded = EntryPoint("intercom", declared["intercom"], "cskpi.connectors").load()
    assert loaded is IntercomConnector
    assert IntercomConnector.type == "intercom"


def test_requests_outside_the_2_16_document_are_reported(clock: FakeClock) -> None:
    """The checker the end-to-end tests install: a mixed filter list (which 2.14-2.16 refuse,
    Intercom-OpenAPI #197 fixed 2.11 only), an unknown Intercom-Version, a missing token."""
    body = {**(connector(clock).search(100, 200).body or {}), "pagination": {"per_page": 150}}
    mixed = copy.deepcopy(body)
    mixed["query"]["value"][1] = mixed["query"]["value"][1]["value"][0]
    headers = {"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.16",
               "Content-Type": "application/json"}  # fmt: skip
    check = RequestCheck(INTERCOM, "https://api.intercom.io", INTERCOM_DEVIATIONS)

    check("POST", "/conversations/search", {}, body, headers)
    check("POST", "/conversations/search", {}, mixed, headers)
    check("GET", "/admins", {}, None, {**headers, "Intercom-Version": "2.99"})
    check("GET", "/conversations/5", {}, None, {"Intercom-Version": "2.16"})

    assert check.checked == 4
    assert [v.split(":")[0] for v in check.violations] == [
        "POST /conversations/search?{}", "GET /admins?{}", "GET /conversations/5?{}",
    ]  # fmt: skip
