"""The freshdesk connector against scripted responses built from real recorded payloads
(tests/samples/freshdesk), and the shared-layer pieces it added."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import responses
from pydantic import ValidationError
from responses import matchers
from responses.registries import OrderedRegistry

from cskpi.connectors.base import Message, Page, Person, Rating, StatusChange, Ticket
from cskpi.connectors.freshdesk import (
    AGENTS,
    COMPANIES,
    DELETED,
    GROUPS,
    RATINGS,
    SPAM,
    SURVEYS,
    TICKETS,
    FreshdeskConnector,
    FreshdeskSettings,
)
from cskpi.connectors.freshdesk_map import (
    map_rating,
    map_thread,
    map_ticket,
    status_history,
    survey_scales,
)
from cskpi.connectors.pagination import PaginationError, SlidingWindowPaginator
from cskpi.connectors.rest import StreamSpec, TimeBoundary
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import AuthError
from cskpi.core.http.ratelimit import Budget, RateLimiter
from tests.connectors.openapi.freshdesk_documented import freshdesk_violation
from tests.sample_data import SAMPLES as ALL_SAMPLES

SAMPLES = ALL_SAMPLES / "freshdesk"
API = "https://acme.freshdesk.com/api/v2"
KEY = "s3cret-freshdesk-key"
LIST_QUERY = {"order_by": "updated_at", "order_type": "asc", "per_page": "100",
              "include": "requester,stats"}  # fmt: skip

# Rate limits and retries wait on a FakeClock: any real sleep fails the test.
pytestmark = pytest.mark.usefixtures("no_real_sleep")


def sample(name: str) -> Any:
    path = SAMPLES / name
    return json.loads(path.read_text())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    """Scripted responses, consumed in order; every one must be used."""
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def connector(clock: FakeClock, **settings: Any) -> FreshdeskConnector:
    values: dict[str, Any] = {"type": "freshdesk", "domain": "acme", "api_key": KEY, **settings}
    return FreshdeskConnector("fd", FreshdeskSettings(**values), clock=clock)


def stream(fd: FreshdeskConnector, name: str) -> Any:
    return next(s for s in fd.streams() if s.name == name)


def since(moment: str, **params: str) -> list[Any]:
    """The ticket list's query from ``updated_since=moment``, exactly."""
    return [matchers.query_param_matcher(LIST_QUERY | {"updated_since": moment, **params})]


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="next"'}


# --- settings ---------------------------------------------------------------------------


def test_settings_give_the_host_the_plan_budgets_and_custom_statuses() -> None:
    plain = FreshdeskSettings(type="freshdesk", domain="acme", api_key=KEY)
    assert plain.root() == "https://acme.freshdesk.com/api/v2/"
    assert plain.budgets() == (Budget(200, 60.0), Budget(20, 60.0))  # growth by default
    pro = FreshdeskSettings(type="freshdesk", domain="acme", api_key=KEY, plan="pro")
    assert pro.budgets() == (Budget(400, 60.0), Budget(100, 60.0))
    bought = FreshdeskSettings(
        type="freshdesk", base_url="http://127.0.0.1:9/", api_key=KEY, requests_per_minute=1000
    )
    assert bought.root() == "http://127.0.0.1:9/api/v2/"
    assert bought.budgets() == (Budget(1000, 60.0), Budget(20, 60.0))
    mapped = FreshdeskSettings.model_validate(
        {"type": "freshdesk", "domain": "acme", "api_key": KEY, "status_map": {"7": "on_hold"}}
    )
    assert mapped.status_map == {7: "on_hold"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"status_map": {"4": "open"}}, r"status codes \[4\] are Freshdesk's own"),
        ({"status_map": {"6": "waiting"}}, "status_map.6"),
        ({"plan": "sprout"}, "plan"),
        ({"domain": None}, "set domain"),
        ({"domain": "acme.freshdesk.com"}, "domain"),
    ],
)
def test_bad_settings_name_the_key(extra: dict[str, Any], message: str) -> None:
    values = {"type": "freshdesk", "domain": "acme", "api_key": KEY, **extra}
    with pytest.raises(ValidationError, match=message):
        FreshdeskSettings.model_validate(values)


# --- mapping the samples ----------------------------------------------------------------


def test_a_closed_outbound_ticket_of_the_list_page_sample() -> None:
    [raw] = sample("ticket_with_stats_and_requester_airbyte_fixture.json")
    ticket = map_ticket(raw, {})
    assert ticket == Ticket(
        external_id="21", created_at=at("2022-11-16T15:59:28Z"),
        updated_at=at("2022-11-16T15:59:28Z"), status="closed", raw_status="5", subject="Test",
        priority="low", channel="email", type=None, tags=(), requester_id="67042965499",
        organization_id="67001265522", assignee_id="67013469919", group_id=None,
        first_reply_at=None, first_solved_at=at("2022-11-16T15:59:28Z"),
        solved_at=at("2022-11-16T15:59:28Z"), closed_at=at("2022-11-16T15:59:28Z"),
    )  # fmt: skip
    # outbound email (source 10): the description is the agent's message, not a reply
    messages, skipped = map_thread(ticket, [], frozenset(), outbound=True)
    assert (messages[0].author_role, messages[0].author_id, skipped) == ("agent", "67013469919", [])
    assert ticket.agent_replies == 0


def test_an_open_portal_ticket_with_stats_and_its_conversations() -> None:
    ticket = map_ticket(sample("ticket_with_stats_python_freshdesk_fixture.json"), {})
    assert (ticket.status, ticket.priority, ticket.channel, ticket.type, ticket.tags) == (
        "open", "low", "web", "Question", ("foo", "bar"),
    )  # fmt: skip
    assert ticket.first_reply_at == at("2020-06-17T20:23:43Z")
    assert (ticket.solved_at, ticket.first_solved_at) == (at("2020-07-24T15:35:21Z"),) * 2
    assert (ticket.closed_at, ticket.reopens) == (None, 0)

    conversations = sample("conversations_python_freshdesk_fixture.json")
    messages, skipped = map_thread(ticket, conversations, frozenset({"1"}), outbound=False)

    assert skipped == []
    assert messages == [
        Message("1-description", "1", at("2016-05-18T04:36:04Z"), "customer", True, "6012691534"),
        Message("1", "1", at("2016-05-19T05:36:12Z"), "agent", False, "1"),  # a private note
        Message("2", "1", at("2016-05-19T05:36:14Z"), "agent", True, "1"),  # the reply
    ]
    assert ticket.agent_replies == 1


def test_a_public_note_and_a_forward_are_no_agent_replies() -> None:
    """python-freshdesk's conversations: the note (source 2) made public, and a forward
    (source 8, "Forwarded email" in https://developers.freshdesk.com/api/#conversations)
    sent before the reply. Only the reply (source 0) answers the customer."""
    ticket = map_ticket(sample("ticket_with_stats_python_freshdesk_fixture.json"), {})
    ticket.first_reply_at = None  # as without stats: the thread must tell it
    note, reply = sample("conversations_python_freshdesk_fixture.json")
    public_note = note | {"private": False, "created_at": "2016-05-19T05:36:10Z"}
    forward = reply | {"id": 3, "source": 8, "created_at": "2016-05-19T05:36:11Z",
                       "to_emails": ["vendor@example.com"]}  # fmt: skip

    messages, _ = map_thread(
        ticket, [public_note, forward, reply], frozenset({"1"}), outbound=False
    )

    assert [(m.external_id, m.author_role, m.public) for m in messages[1:]] == [
        ("1", "agent", False), ("3", "agent", False), ("2", "agent", True),
    ]  # fmt: skip
    assert (ticket.agent_replies, ticket.first_reply_at) == (1, at("2016-05-19T05:36:14Z"))


def test_a_reopened_ticket_was_first_solved_before_the_reopen() -> None:
    raw = sample("ticket_with_stats_python_freshdesk_fixture.json")
    raw["status"] = 4
    raw["stats"] |= {"reopened_at": "2020-07-01T00:00:00Z"}
    ticket = map_ticket(raw, {})
    assert (ticket.status, ticket.reopens) == ("solved", 1)
    assert ticket.solved_at == at("2020-07-24T15:35:21Z")
    assert ticket.first_solved_at == at("2020-07-01T00:00:00Z")  # an upper bound


@pytest.mark.parametrize(
    ("status", "status_map", "expected"),
    [
        (3, {}, "pending"),
        (6, {}, "open"),
        (6, {6: "on_hold"}, "on_hold"),
        (9, {6: "pending"}, "open"),
    ],
)
def test_custom_statuses_map_through_the_setting_else_open(
    status: int, status_map: dict[int, Any], expected: str
) -> None:
    raw = sample("ticket_with_stats_python_freshdesk_fixture.json") | {"status": status}
    assert map_ticket(raw, status_map).status == expected


# --- status history from the stats stamps ----------------------------------------------


def history(raw: dict[str, Any], status_map: dict[int, Any] | None = None) -> list[tuple[str, str]]:
    ticket = map_ticket(raw, status_map or {})
    return [
        (c.at.strftime("%Y-%m-%dT%H:%M:%SZ"), c.status)
        for c in status_history(ticket, raw["stats"])
    ]


def test_an_outbound_email_created_closed_has_one_status_from_its_creation() -> None:
    """Airbyte's recorded outbound email: resolved_at, closed_at and status_updated_at all
    equal created_at (Freshdesk stamps a ticket created closed as resolved and closed)."""
    [raw] = sample("ticket_with_stats_and_requester_airbyte_fixture.json")
    assert history(raw) == [("2022-11-16T15:59:28Z", "closed")]


def test_the_status_at_the_last_change_is_the_tickets_status_whatever_else_is_stamped() -> None:
    """python-freshdesk's ticket: open now, its last change at status_updated_at, where a
    resolved_at stamp says resolved: the status now wins that instant, and open since
    creation is one status, no change."""
    raw = sample("ticket_with_stats_python_freshdesk_fixture.json")
    assert history(raw) == [("2016-05-18T04:36:04Z", "open")]


def test_a_reopened_and_closed_ticket_shows_the_latest_of_each_stamp() -> None:
    """A reopen empties resolved_at and closed_at (Freshdesk's reset_tkt_states), so the
    resolution before it is gone; pending_since is never cleared: the latest pending."""
    raw = sample("ticket_with_stats_python_freshdesk_fixture.json") | {"status": 5}
    raw["stats"] |= {
        "pending_since": "2020-06-26T01:23:39Z", "reopened_at": "2020-07-01T09:00:00Z",
        "resolved_at": "2020-07-02T10:00:00Z", "closed_at": "2020-07-06T10:00:00Z",
        "status_updated_at": "2020-07-06T10:00:00Z",
    }  # fmt: skip
    assert history(raw) == [
        ("2016-05-18T04:36:04Z", "open"), ("2020-06-26T01:23:39Z", "pending"),
        ("2020-07-01T09:00:00Z", "open"), ("2020-07-02T10:00:00Z", "solved"),
        ("2020-07-06T10:00:00Z", "closed"),
    ]  # fmt: skip


def test_a_custom_status_holds_from_the_last_change_and_later_fillers_are_dropped() -> None:
    """A custom status maps through status_map from status_updated_at on. The API fills a
    missing pending_since of a pending ticket with the row's update time (freshconsult
    tickets_test_helper ticket_states_pattern): a stamp after the last change is no change."""
    raw = sample("ticket_with_stats_python_freshdesk_fixture.json") | {"status": 6}
    raw["stats"] |= {"resolved_at": None, "status_updated_at": "2020-07-24T15:35:21Z"}
    assert history(raw, {6: "on_hold"}) == [
        ("2016-05-18T04:36:04Z", "open"), ("2020-07-24T15:35:21Z", "on_hold"),
    ]  # fmt: skip
    raw |= {"status": 3}
    raw["stats"]["pending_since"] = "2020-08-01T00:00:00Z"  # after the last change: a filler
    assert history(raw) == [("2016-05-18T04:36:04Z", "open"), ("2020-07-24T15:35:21Z", "pending")]


def test_conversation_authors_by_agent_list_requester_and_incoming() -> None:
    ticket = map_ticket(sample("ticket_with_stats_python_freshdesk_fixture.json"), {})
    base = sample("conversations_python_freshdesk_fixture.json")[1]  # a public reply by user 1
    cases = [
        ({"user_id": 6012691534, "incoming": False}, "customer"),  # the requester, via portal
        ({"user_id": 77, "incoming": True}, "customer"),  # someone in cc writing in
        ({"user_id": 77, "incoming": False}, "agent"),  # an agent no longer listed
        ({"user_id": 5, "incoming": True}, "agent"),  # a listed agent replying by email
    ]
    for change, role in cases:
        messages, _ = map_thread(ticket, [base | change], frozenset({"5"}), outbound=False)
        assert messages[1].author_role == role, change


def test_ratings_on_their_surveys_scales_and_the_docs_malformed_timestamp() -> None:
    first, malformed = sample("satisfaction_ratings_docs_example.json")
    scales = survey_scales([
        {"id": 2, "questions": [{"id": "default_question", "default": True,
                                 "accepted_ratings": [103, 102, 100, -102, -103]}]},
        {"id": 3, "questions": [{"id": "question_9", "accepted_ratings": [1, 2]},
                                {"id": "default_question", "default": True,
                                 "accepted_ratings": [-103, -102, -101, 100, 101, 102, 103]}]},
    ])  # fmt: skip
    assert scales == {"2": (-103, -102, 100, 102, 103), "3": (-103, -102, -101, 100, 101, 102, 103)}
    # survey 1 is not listed: 103 fits the classic 3-point survey, its top box
    assert map_rating(first, scales) == Rating(
        "102", "csat", 3.0, 1.0, 3.0, at("2015-08-28T09:08:16Z"), "432",
        "Thank you for the quick action", "1",
    )  # fmt: skip
    on_five = map_rating(first | {"survey_id": 2, "ratings": {"default_question": 102}}, scales)
    on_seven = map_rating(first | {"survey_id": 3, "ratings": {"default_question": 101}}, scales)
    unlisted = map_rating(first | {"ratings": {"default_question": -102}}, scales)
    assert [(r.score, r.scale_max) for r in (on_five, on_seven, unlisted) if r] == [
        (4.0, 5.0), (5.0, 7.0), (2.0, 7.0),
    ]  # fmt: skip
    happy_on_five = map_rating(
        first | {"survey_id": 2, "ratings": {"default_question": 101}}, scales
    )
    assert happy_on_five is not None
    assert happy_on_five.score == 4.0  # the nearest happy point
    assert map_rating(first | {"ratings": {}}, scales) is None  # no overall answer
    with pytest.raises(ValueError, match="unparseable date '2015-08-28T010:08:16Z'"):
        map_rating(malformed, scales)


# --- the connector over scripted responses ----------------------------------------------


def test_with_base_url_the_next_links_are_followed_on_the_configured_host(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    """Freshdesk writes its own host into ``Link`` (https://developers.freshdesk.com/api/#pagination);
    behind a proxy the next page is that link's path and query on ``base_url``."""
    proxy = "https://proxy.example.test/freshdesk"
    note, reply = sample("conversations_python_freshdesk_fixture.json")
    real_next = f"{API}/tickets/1/conversations?per_page=100&page=2"
    api.get(f"{proxy}/api/v2/tickets/1/conversations", json=[note], headers=link(real_next),
            match=[matchers.query_param_matcher({"per_page": "100"})])  # fmt: skip
    api.get(f"{proxy}/api/v2/tickets/1/conversations", json=[reply],
            match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})])  # fmt: skip

    found, skipped = connector(clock, base_url=proxy)._conversations("1")

    assert ([c["id"] for c in found], skipped) == ([1, 2], [])


@pytest.mark.parametrize(
    "spec", [TICKETS, DELETED, SPAM, RATINGS, GROUPS, COMPANIES, AGENTS, SURVEYS],
    ids=lambda spec: spec.name,
)  # fmt: skip
def test_every_list_asks_only_documented_parameters(spec: StreamSpec) -> None:
    """Freshdesk publishes no OpenAPI document: the table of its reference's parameters
    (tests/connectors/openapi/freshdesk_documented.py) stands in, in the end-to-end tests too."""
    query = {k: [str(v)] for k, v in spec.params.items()}
    assert freshdesk_violation("GET", f"/api/v2/{spec.path}", {**query, "page": ["2"]}) is None


@pytest.mark.parametrize(
    ("path", "query", "problem"),
    [
        ("/api/v2/tickets", {"updated_since": ["2024-01-31"]}, "not a documented value"),
        ("/api/v2/tickets", {"include": ["stats,conversations"]}, "not a documented value"),
        ("/api/v2/tickets", {"per_page": ["500"]}, "not a documented value"),
        ("/api/v2/tickets", {"sort": ["asc"]}, "not a documented parameter"),
        ("/api/v2/tickets/7/conversations", {"updated_since": ["2024-01-31T00:00:00Z"]},
         "not a documented parameter"),
        ("/api/v2/contacts/7", {}, "no documented read endpoint"),
    ],
)  # fmt: skip
def test_a_request_outside_the_reference_is_reported(
    path: str, query: dict[str, list[str]], problem: str
) -> None:
    assert problem in (freshdesk_violation("GET", path, query) or "")


def ticket_page(updated: str, *ids: int) -> list[dict[str, Any]]:
    [raw] = sample("ticket_with_stats_and_requester_airbyte_fixture.json")
    return [raw | {"id": i, "updated_at": updated} for i in ids]


def test_tickets_slide_the_window_store_requesters_and_read_each_thread_once(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    conversation = sample("conversations_python_freshdesk_fixture.json")[1]  # skips first
    agents = [{"id": 67013469919, "contact": {"name": "Ana", "email": "ana@acme.test"}}]
    api.get(f"{API}/agents", json=agents, match=[matchers.query_param_matcher({"per_page": "100"})])
    first = ticket_page("2022-11-16T15:59:28Z", 21, 22)
    api.get(f"{API}/tickets", json=first, headers=link(f"{API}/tickets?page=2"),
            match=since("1970-01-01T00:00:00Z"))  # fmt: skip
    for ident in (21, 22):
        api.get(f"{API}/tickets/{ident}/conversations", json=[conversation | {"id": ident * 10}])
    # the next window starts at the last updated_at: 22 comes again and is dropped
    again = ticket_page("2022-11-16T15:59:28Z", 22) + ticket_page("2022-11-17T00:00:00Z", 23)
    api.get(f"{API}/tickets", json=again, match=since("2022-11-16T15:59:28Z"))
    api.get(f"{API}/tickets/23/conversations", json=[])

    pages: list[Page] = list(stream(connector(clock), "tickets").read(None, None))

    assert [p.cursor for p in pages] == [
        "2022-11-16T15:59:28Z|21,22", "2022-11-17T00:00:00Z|23",
    ]  # fmt: skip
    tickets = [r for p in pages for r in p.records if isinstance(r, Ticket)]
    assert [(t.external_id, t.agent_replies) for t in tickets] == [("21", 1), ("22", 1), ("23", 0)]
    people = [r for r in pages[0].records if isinstance(r, Person)]
    assert people == [
        Person("67042965499", "customer", "Iryna Grankova", "iryna.grankova@airbyte.io")
    ]
    created = at("2022-11-16T15:59:28Z")  # each was created closed: one status each
    assert [r for p in pages for r in p.records if isinstance(r, StatusChange)] == [
        StatusChange(i, created, "closed") for i in ("21", "22", "23")
    ]


def test_a_stored_cursor_resumes_at_its_second_and_drops_its_ids(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/tickets", json=ticket_page("2022-11-16T15:59:28Z", 21, 22),
            match=since("2022-11-16T15:59:28Z", filter="deleted"))  # fmt: skip

    pages = list(stream(connector(clock), "tickets_deleted").read("2022-11-16T15:59:28Z|21", None))

    [page] = pages
    assert [(r.external_id, r.deleted) for r in page.records if isinstance(r, Ticket)] == [
        ("22", True)
    ]
    assert page.cursor == "2022-11-16T15:59:28Z|21,22"
    assert not any(isinstance(r, Person) for r in page.records)  # no contacts from the trash


def test_ratings_skip_the_malformed_record_and_checkpoint_the_newest(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    ratings = sample("satisfaction_ratings_docs_example.json")  # skips before registering
    api.get(f"{API}/surveys", status=403, json={"code": "access_denied"})
    query = {"per_page": "100", "created_since": "2015-08-27T09:08:16Z"}  # a day's lookback
    api.get(f"{API}/surveys/satisfaction_ratings", json=ratings,
            match=[matchers.query_param_matcher(query)])  # fmt: skip

    pages = list(stream(connector(clock), "ratings").read("2015-08-28T09:08:16Z", None))

    assert [[r.external_id for r in p.records] for p in pages] == [["102"], []]
    assert [(s.record_id, s.reason) for s in pages[0].skipped] == [
        ("112", "created_at: unparseable date '2015-08-28T010:08:16Z'"),
    ]
    assert pages[-1].cursor == "2015-08-28T09:08:16Z"


def test_check_calls_agents_me_and_a_401_names_the_key_not_its_value(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/agents/me", json={"id": 1, "contact": {"name": "Ana"}})
    api.get(f"{API}/agents/me", status=401, json={"code": "invalid_credentials"})
    fd = connector(clock)
    fd.check()
    with pytest.raises(AuthError) as caught:
        fd.check()
    assert "connector fd is rejected" in str(caught.value)
    assert "check api_key" in str(caught.value)
    assert KEY not in str(caught.value)
    assert api.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_a_429_waits_its_retry_after_and_an_empty_quota_waits_for_the_minute(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/groups", status=429, headers={"Retry-After": "31"}, json={})
    api.get(f"{API}/groups", json=[{"id": 1, "name": "Tier 1"}],
            headers={"X-RateLimit-Total": "200", "X-RateLimit-Remaining": "0"})  # fmt: skip
    api.get(f"{API}/companies", json=[])

    fd = connector(clock)
    assert next(p.records for p in stream(fd, "groups").read(None, None))[0].name == "Tier 1"
    list(stream(fd, "organizations").read(None, None))

    assert clock.sleeps[0] == 31.0
    assert clock.sleeps[1] == pytest.approx(60.1)  # nothing left and no reset header: a minute


# --- shared layer: weighted budgets, sliding windows, time boundaries --------------------


def test_an_endpoint_limiter_counts_its_credits_in_the_account_budget(clock: FakeClock) -> None:
    account = RateLimiter(Budget(10, 60.0), clock=clock, margin=0.0)
    listing = RateLimiter(Budget(20, 60.0), clock=clock, margin=0.0, within=account, cost=3)
    times = []
    for _ in range(7):
        slot = listing.acquire()
        listing.release(slot, None)
        times.append(clock.now())
    assert times == [0.0, 0.0, 0.0, 60.0, 60.0, 60.0, 120.0]  # 3 credits each, 10 a minute
    alone = RateLimiter(Budget(2, 60.0), clock=clock, margin=0.0)
    for _ in range(3):
        alone.release(alone.acquire(), None)
    assert clock.now() == 180.0  # plain requests count one each, as before


def response_for(url: str, next_url: str | None) -> requests.Response:
    response = requests.Response()
    response.request = requests.Request("GET", url).prepare()
    if next_url:
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


def test_the_sliding_window_follows_links_only_inside_one_instant_and_stops_at_the_cap() -> None:
    paginator = SlidingWindowPaginator("updated_since", "updated_at", max_page=2)
    same = [{"updated_at": "2026-01-01T00:00:00Z"}] * 2
    base = "http://x/tickets?updated_since=2026-01-01T00:00:00Z"
    following = paginator.next(same, response_for(base, f"{base}&page=2"))
    assert following is not None
    assert following.query == {"updated_since": "2026-01-01T00:00:00Z", "page": "2"}
    with pytest.raises(PaginationError, match="more than 2 pages of records at 2026-01-01"):
        paginator.next(same, response_for(f"{base}&page=2", f"{base}&page=3"))
    later = [{"updated_at": "2026-01-02T00:00:00Z"}]
    fresh = SlidingWindowPaginator("updated_since", "updated_at")
    moved = fresh.next(later, response_for(base, f"{base}&page=2"))
    assert moved is not None
    assert moved.query == {"updated_since": "2026-01-02T00:00:00Z"}
    assert fresh.next(later, response_for(base, None)) is None  # no next link: the end


def test_a_time_boundary_round_trips_and_knows_what_is_stored() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    boundary = TimeBoundary(moment).advance(moment, "9").advance(moment, "10")
    assert boundary.encode() == "2026-01-01T00:00:00Z|9,10"
    assert TimeBoundary.decode(boundary.encode()) == boundary
    assert TimeBoundary.decode("2026-01-01T00:00:00Z") == TimeBoundary(moment)
    assert (boundary.fresh(moment, "9"), boundary.fresh(moment, "11")) == (False, True)
    with pytest.raises(ValueError, match="must carry its zone"):
        TimeBoundary.decode("2026-01-01T00:00:00|1")
