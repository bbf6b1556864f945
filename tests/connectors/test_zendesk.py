"""The zendesk connector against scripted responses built from real recorded payloads."""

from __future__ import annotations

import base64
import copy
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from pydantic import ValidationError
from responses import matchers
from responses.registries import OrderedRegistry

from cskpi.connectors import zendesk_map
from cskpi.connectors.base import Message, Page, Person, Rating, StatusChange, Ticket
from cskpi.connectors.fields import BadRecordError
from cskpi.connectors.zendesk import (
    RATINGS_LOOKBACK,
    ZendeskConnector,
    ZendeskSettings,
    cursor_position,
)
from cskpi.connectors.zendesk_map import map_each, map_status_changes, map_ticket
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import AuthError, FatalAPIError
from tests.connectors.openapi import ZENDESK, document, example
from tests.connectors.openapi.check import ZENDESK_DEVIATIONS, RequestCheck
from tests.sample_data import SAMPLES as ALL_SAMPLES

SAMPLES = ALL_SAMPLES / "zendesk"
API = "https://acme.zendesk.com/api/v2"
EXPORT = f"{API}/incremental/tickets/cursor.json"
EVENTS = f"{API}/incremental/ticket_events.json"
TOKEN = "s3cret-zendesk-token"
# A comment child event exactly as the docs' comment_events example shows it
# (https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/).
DOCS_COMMENT = {
    "id": 91048994488,
    "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
    "via_reference_id": None,
    "type": "Comment",
    "author_id": 5031726587,
    "body": "This is a comment",
    "html_body": '<div class="zd-comment"><p dir="auto">This is a comment</p>',
    "public": True,
    "attachments": [],
    "audit_id": 91048994468,
    "created_at": "2009-06-25T10:15:18Z",
    "event_type": "Comment",
}


def sample(name: str) -> Any:
    path = SAMPLES / name
    return json.loads(path.read_text())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def query(**params: object) -> list[Any]:
    return [matchers.query_param_matcher(dict(params))]


# Rate limits and retries wait on a FakeClock: any real sleep fails the test.
pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    """Scripted responses, consumed in order; every one must be used."""
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings(**overrides: object) -> ZendeskSettings:
    values: dict[str, object] = {
        "type": "zendesk", "subdomain": "acme", "email": "ops@acme.test", "api_token": TOKEN,
    }  # fmt: skip
    values.update(overrides)
    return ZendeskSettings.model_validate(values)


def connector(clock: FakeClock, **overrides: object) -> ZendeskConnector:
    return ZendeskConnector("acme", settings(**overrides), clock=clock)


def read(
    zd: ZendeskConnector, name: str, cursor: str | None = None, since: datetime | None = None
) -> list[Page]:
    stream = next(s for s in zd.streams() if s.name == name)
    return list(stream.read(cursor, since))


def tickets_of(pages: list[Page]) -> list[Ticket]:
    return [r for p in pages for r in p.records if isinstance(r, Ticket)]


# --- settings and check -----------------------------------------------------------------


def test_settings_defaults_and_the_api_root() -> None:
    s = settings()
    assert (s.per_page, s.high_volume, s.base_url, s.ca_bundle) == (1000, False, None, None)
    assert s.root() == "https://acme.zendesk.com/api/v2/"
    assert settings(base_url="http://127.0.0.1:8080/").root() == "http://127.0.0.1:8080/api/v2/"
    assert settings(api_token=None, email=None, access_token="oauth-tok").access_token is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"access_token": "oauth-tok"}, "exactly one of api_token"),
        ({"api_token": None}, "exactly one of api_token"),
        ({"email": None}, "api_token needs email"),
        ({"subdomain": None}, "set subdomain"),
        ({"subdomain": "acme.zendesk.com"}, "should match pattern"),
        ({"per_page": 1001}, "less than or equal to 1000"),
        ({"colour": "blue"}, "Extra inputs are not permitted"),
    ],
)
def test_settings_refuse_what_cannot_work(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**overrides)


def test_the_token_is_resolved_from_the_environment(
    api: responses.RequestsMock, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZD_TOKEN", "from-the-env-123")
    basic = base64.b64encode(b"ops@acme.test/token:from-the-env-123").decode()
    api.get(f"{API}/users/me.json", json={"user": {"id": 1, "role": "admin"}},
            match=[matchers.header_matcher({"Authorization": f"Basic {basic}"})])  # fmt: skip
    connector(clock, api_token="env:ZD_TOKEN").check()


def test_check_with_an_oauth_token_sends_a_bearer_header(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/users/me.json", json={"user": {"id": 1}},
            match=[matchers.header_matcher({"Authorization": "Bearer oauth-tok-1"})])  # fmt: skip
    connector(clock, api_token=None, email=None, access_token="oauth-tok-1").check()


@pytest.mark.parametrize("status", [401, 403])
def test_check_reports_a_rejected_token_by_name(
    api: responses.RequestsMock, clock: FakeClock, status: int
) -> None:
    api.get(f"{API}/users/me.json", status=status, json={"error": "Couldn't authenticate you"})
    with pytest.raises(AuthError, match="the token for connector acme is rejected") as caught:
        connector(clock).check()
    assert "check api_token" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_check_refuses_an_agent_as_the_exports_are_for_admins(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/users/me.json", json={"user": {"id": 7, "role": "agent"}})
    with pytest.raises(FatalAPIError, match=r"signs in as a Zendesk agent.*admins only"):
        connector(clock).check()


def test_ca_bundle_and_base_url_reach_the_session(clock: FakeClock) -> None:
    zd = connector(clock, ca_bundle="/etc/ssl/acme-ca.pem", base_url="https://zd.proxy.test")
    assert zd.http.session.verify == "/etc/ssl/acme-ca.pem"
    assert zd.http.url("users/me.json") == "https://zd.proxy.test/api/v2/users/me.json"
    assert zd.exports.session is zd.http.session  # one session, two rate limiters
    assert zd.exports.limiter is not zd.http.limiter


def test_check_refuses_an_answer_that_names_no_user(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(f"{API}/users/me.json", json={"user": {"id": None, "name": "Anonymous user"}})
    with pytest.raises(AuthError, match="names no signed-in user"):
        connector(clock).check()


# --- tickets ----------------------------------------------------------------------------


def test_tickets_start_with_start_time_then_follow_after_cursor_kept_at_end_of_stream(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    first = sample("incremental_tickets_cursor_page_per_page1.json")
    last = sample("incremental_tickets_cursor_page_end_of_stream.json")
    fixed = {"include": "metric_sets", "per_page": 1000}
    api.get(EXPORT, json=first, match=query(start_time=0, **fixed))
    api.get(EXPORT, json=last, match=query(cursor=first["after_cursor"], **fixed))

    pages = read(connector(clock), "tickets")

    assert [len(p.records) for p in pages] == [1, 87]
    assert [p.cursor for p in pages] == [first["after_cursor"], last["after_cursor"]]
    assert last["end_of_stream"] is True
    assert pages[-1].cursor == "MTcwNzI3MTc0MS4wfHw0MDQ1fA=="
    assert [p.position for p in pages] == [
        datetime.fromtimestamp(1695052663, UTC),
        datetime.fromtimestamp(1707271741, UTC),  # the newest generated_timestamp
    ]
    assert all(not p.skipped for p in pages)


def test_real_tickets_map_status_priority_channel_and_the_deleted_one(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = sample("incremental_tickets_cursor_page_end_of_stream.json")
    api.get(EXPORT, json=page)

    tickets = {t.external_id: t for t in tickets_of(read(connector(clock), "tickets"))}

    assert Counter(t.status for t in tickets.values()) == {
        "new": 77, "pending": 8, "open": 1, "closed": 1,
    }  # fmt: skip
    assert Counter(t.channel for t in tickets.values()) == {"api": 84, "web": 2, "other": 1}
    deleted = tickets["4034"]
    assert (deleted.deleted, deleted.raw_status, deleted.status) == (True, "deleted", "closed")
    assert [t.external_id for t in tickets.values() if t.deleted] == ["4034"]
    one = tickets["1"]
    assert (one.subject, one.priority, one.type, one.channel) == (
        "Sample ticket: Meet the ticket", "normal", "incident", "other",  # via sample_ticket
    )  # fmt: skip
    assert one.tags == ("sample", "support", "zendesk")
    assert (one.requester_id, one.assignee_id, one.group_id, one.organization_id) == (
        "6130869168922", "6130907993114", "6130852536346", None,
    )  # fmt: skip
    assert (one.created_at, one.updated_at) == (
        at("2023-09-09T23:52:05Z"),
        at("2024-02-07T00:11:18Z"),
    )
    assert one.first_reply_at is None
    assert one.agent_replies == 0


def test_since_becomes_start_time_and_a_stored_cursor_wins(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = sample("incremental_tickets_cursor_page_per_page1.json")
    end = {**page, "tickets": [], "end_of_stream": True}
    fixed = {"include": "metric_sets", "per_page": 250}
    api.get(EXPORT, json=end, match=query(start_time=1693526400, **fixed))
    api.get(EXPORT, json=end, match=query(cursor="stored==", **fixed))
    api.get(EXPORT, json=end, match=query(start_time=1700000000, **fixed))
    zd = connector(clock, per_page=250)

    read(zd, "tickets", since=datetime(2023, 9, 1, tzinfo=UTC))
    read(zd, "tickets", cursor="stored==", since=None)
    pages = read(zd, "tickets", cursor="start_time=1700000000")

    # an empty page still knows where it stands: the recorded cursor's own timestamp
    assert pages[0].position == datetime.fromtimestamp(1695052663, UTC)


def test_a_last_page_without_after_cursor_stores_a_start_time_cursor(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    users = sample("incremental_users_cursor_page_airbyte_fixture.json")
    api.get(f"{API}/incremental/users/cursor.json", json=users,
            match=query(start_time=0, per_page=1000))  # fmt: skip

    [page] = read(connector(clock), "people")

    updated = at("2023-02-01T07:41:46Z")
    assert (page.cursor, page.position) == (f"start_time={int(updated.timestamp())}", updated)
    assert page.records == [
        Person("6128164851599", "customer", "AmberBlanchard",
               "integration-test+amberblanchard@airbyte.io"),
    ]  # fmt: skip


def test_cursor_positions_read_the_recorded_cursor_format_and_nothing_else() -> None:
    assert cursor_position("MTY5NTA1MjY2My4wfHwyOHw=") == datetime.fromtimestamp(1695052663, UTC)
    assert cursor_position("start_time=1700000000") == datetime.fromtimestamp(1700000000, UTC)
    assert cursor_position("1700000000") == datetime.fromtimestamp(1700000000, UTC)
    assert cursor_position("not base64 at all!") is None
    assert cursor_position(base64.b64encode(b"no timestamp here").decode()) is None
    assert cursor_position(None) is None


# --- metric sets ------------------------------------------------------------------------


def docs_ticket(**changes: object) -> dict[str, Any]:
    """The docs' ticket (created 2009-07-20T22:55:29Z) with the docs' metric set, whose
    created_at is that same instant."""
    page = sample("incremental_tickets_cursor_page_airbyte_fixture.json")
    ticket: dict[str, Any] = copy.deepcopy(page["tickets"][0])
    ticket["metric_set"] = sample("ticket_metric_docs_example.json")
    ticket.update(changes)
    return ticket


def test_the_metric_set_gives_replies_solves_reopens_and_stations() -> None:
    t = map_ticket(docs_ticket())
    created = at("2009-07-20T22:55:29Z")
    assert t.first_reply_at == created + timedelta(minutes=2391)  # reply_time_in_minutes
    assert t.first_solved_at == created + timedelta(minutes=2391)  # first_resolution, reopened
    assert t.solved_at == at("2011-05-09T10:38:52Z")
    assert (t.agent_replies, t.reopens, t.group_changes, t.assignee_changes) == (322, 55, 6, 0)
    assert (t.status, t.priority, t.channel, t.closed_at) == ("open", "high", "web", None)
    assert (t.requester_id, t.organization_id, t.group_id) == ("20978392", "509974", "98738")


def test_exact_seconds_win_over_minutes_and_a_closed_ticket_closes_at_its_status_change() -> None:
    metrics = {
        **sample("ticket_metric_docs_example.json"), "reopens": 0,
        "reply_time_in_seconds": {"calendar": 143460},  # the docs' messaging example
        "reply_time_in_minutes": {"calendar": 2391, "business": 737},
    }  # fmt: skip
    t = map_ticket(docs_ticket(status="closed", metric_set=metrics, from_messaging_channel=True))
    assert t.first_reply_at == at("2009-07-20T22:55:29Z") + timedelta(seconds=143460)
    assert t.first_solved_at == t.solved_at == at("2011-05-09T10:38:52Z")  # never reopened
    assert t.closed_at == at("2011-05-04T10:38:52Z")  # status_updated_at
    assert t.channel == "messaging"


def test_an_unanswered_ticket_has_no_reply_or_solve() -> None:
    metrics = sample("ticket_metric_airbyte_fixture.json")["ticket_metric"]
    t = map_ticket(docs_ticket(metric_set=metrics))
    assert (t.first_reply_at, t.first_solved_at, t.solved_at) == (None, None, None)
    assert (t.agent_replies, t.reopens, t.group_changes, t.assignee_changes) == (0, 0, 0, 0)


def test_metric_sets_side_loaded_at_the_top_level_are_joined_by_ticket_id(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = sample("incremental_tickets_cursor_page_airbyte_fixture.json")
    metrics = {**sample("ticket_metric_docs_example.json"), "ticket_id": 35436}
    api.get(EXPORT, json={**page, "metric_sets": [metrics]})

    [ticket] = tickets_of(read(connector(clock), "tickets"))
    assert (ticket.external_id, ticket.agent_replies, ticket.reopens) == ("35436", 322, 55)


@pytest.mark.parametrize(
    ("raw", "status"),
    [("new", "new"), ("open", "open"), ("pending", "pending"), ("hold", "on_hold"),
     ("solved", "solved"), ("closed", "closed")],
)  # fmt: skip
def test_statuses_map_to_the_normalised_ones_and_keep_the_raw_one(raw: str, status: str) -> None:
    ticket = map_ticket(docs_ticket(status=raw))
    assert (ticket.status, ticket.raw_status, ticket.deleted) == (status, raw, False)


@pytest.mark.parametrize(
    ("via", "messaging", "channel"),
    [("email", False, "email"), ("web", False, "web"), ("voice", False, "phone"),
     ("chat", False, "chat"), ("twitter", False, "social"), ("facebook", False, "social"),
     ("native_messaging", False, "messaging"), ("api", True, "messaging"),
     ("rule", False, "other"), (None, False, "other")],
)  # fmt: skip
def test_channels_come_from_via_and_the_messaging_flag(
    via: str | None, messaging: bool, channel: str
) -> None:
    raw = docs_ticket(via={"channel": via}, from_messaging_channel=messaging)
    assert map_ticket(raw).channel == channel


def test_a_merged_ticket_is_flagged_deleted() -> None:
    merged = map_ticket(docs_ticket(status="closed", tags=["closed_by_merge"]))
    assert (merged.deleted, merged.status, merged.raw_status) == (True, "closed", "closed")
    assert merged.closed_at is None  # merged away, never closed as a resolution


# --- bad records ------------------------------------------------------------------------


def test_bad_tickets_are_skipped_with_their_id_and_the_page_still_checkpoints(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = copy.deepcopy(sample("incremental_tickets_cursor_page_end_of_stream.json"))
    page["tickets"][3]["created_at"] = "2024-13-45T99:00:00Z"
    del page["tickets"][5]["updated_at"]
    page["tickets"][7]["status"] = "frozen"
    page["tickets"][9]["metric_set"] = {"replies": "many"}
    bad = {str(page["tickets"][k]["id"]) for k in (3, 5, 7, 9)}
    api.get(EXPORT, json=page)

    [stored] = read(connector(clock), "tickets")

    assert len(stored.records) == 83
    assert {s.record_id for s in stored.skipped} == bad
    reasons = sorted(s.reason for s in stored.skipped)
    assert reasons == [
        "created_at: unparseable date '2024-13-45T99:00:00Z'", "missing updated_at",
        "replies: not a count 'many'", "status: unknown value 'frozen'",
    ]  # fmt: skip
    assert stored.cursor == page["after_cursor"]


def test_a_record_that_is_not_an_object_is_skipped_not_fatal() -> None:
    records, skipped = map_each([None, {"id": 7}], map_ticket)
    assert records == []
    assert [(s.record_id, s.reason) for s in skipped] == [
        ("None", "not an object: NoneType"), ("7", "status: unknown value None"),
    ]  # fmt: skip


def test_a_null_in_a_page_of_the_real_export_costs_itself_not_the_page(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = copy.deepcopy(sample("incremental_tickets_cursor_page_end_of_stream.json"))
    page["tickets"].insert(4, None)
    page["tickets"].append("not a ticket")
    api.get(EXPORT, json=page)

    [stored] = read(connector(clock), "tickets")

    assert len(stored.records) == 87
    assert [s.reason for s in stored.skipped] == ["not an object: NoneType", "not an object: str"]
    assert stored.cursor == page["after_cursor"]


# --- messages ---------------------------------------------------------------------------


def agents_listed(api: responses.RequestsMock, ids: list[int]) -> None:
    api.get(
        f"{API}/users.json",
        json={"users": [{"id": i, "role": "agent"} for i in ids],
              "meta": {"has_more": False, "after_cursor": None}},
        match=query(**{"role[]": ["agent", "admin"], "page[size]": 100}),
    )  # fmt: skip


def event(
    event_id: int, ticket: int, *children: dict[str, Any], ts: int = 1719792000
) -> dict[str, Any]:
    return {
        "id": event_id, "ticket_id": ticket, "timestamp": ts,
        "created_at": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "updater_id": 1, "via": "web", "event_type": "Audit", "child_events": list(children),
    }  # fmt: skip


def test_comment_events_become_messages_with_author_roles(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    agent = {**DOCS_COMMENT}
    note = {**DOCS_COMMENT, "id": 2, "public": False}
    customer = {**DOCS_COMMENT, "id": 3, "author_id": 77, "created_at": "2009-06-25T11:00:00Z"}
    trigger = {**DOCS_COMMENT, "id": 4, "via": {"channel": "rule", "source": {"rel": "trigger"}}}
    system = {**DOCS_COMMENT, "id": 5, "author_id": -1}
    change = {"id": 6, "event_type": "Change", "status": "solved", "previous_value": "open"}
    first = {
        "ticket_events": [event(10, 123, agent, note, change), event(11, 123, customer)],
        "count": 2,
        "end_time": 1719792000,
        "end_of_stream": False,
        "next_page": "ignored",
    }
    second = {"ticket_events": [event(12, 124, trigger, system, ts=1719795600)], "count": 1,
              "end_time": 1719795600, "end_of_stream": True, "next_page": None}  # fmt: skip
    agents_listed(api, [5031726587])
    api.get(EVENTS, json=first, match=query(start_time=0, include="comment_events"))
    api.get(EVENTS, json=second, match=query(start_time=1719792000, include="comment_events"))

    pages = read(connector(clock), "messages")

    assert [p.cursor for p in pages] == ["1719792000", "1719795600"]
    assert [p.position for p in pages] == [
        datetime.fromtimestamp(1719792000, UTC), datetime.fromtimestamp(1719795600, UTC),
    ]  # fmt: skip
    messages = [r for p in pages for r in p.records if isinstance(r, Message)]
    assert messages == [
        Message("91048994488", "123", at("2009-06-25T10:15:18Z"), "agent", True, "5031726587"),
        Message("2", "123", at("2009-06-25T10:15:18Z"), "agent", False, "5031726587"),
        Message("3", "123", at("2009-06-25T11:00:00Z"), "customer", True, "77"),
        Message("4", "124", at("2009-06-25T10:15:18Z"), "bot", True, "5031726587"),
        Message("5", "124", at("2009-06-25T10:15:18Z"), "system", True, "-1"),
    ]


# Status children as the ticket event export writes them: the field as the child's own key
# (the docs' ticket event example, facetoe/zenpy specification/zendesk/ticket_event.json:
# {"via": "Email", "via_reference_id": 2, "status": "solved"}), with event_type and
# previous_value as on every Change child.
DOCS_CHILD = {"via": "Email", "via_reference_id": 2, "status": "solved"}
CREATED = {"id": 20, "via": "Web form", "via_reference_id": None, "status": "new",
           "event_type": "Create"}  # fmt: skip
OPENED = {"id": 21, "via": "Web form", "via_reference_id": None, "status": "open",
          "previous_value": "new", "event_type": "Change"}  # fmt: skip


def test_create_and_change_children_on_status_are_the_tickets_status_history(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    """Each status a ticket event sets, at the event's time, normalised as the ticket's
    status is: hold is on_hold, deleted is closed."""
    held = {**OPENED, "id": 22, "status": "hold", "previous_value": "open"}
    gone = {**OPENED, "id": 23, "status": "deleted", "previous_value": "hold"}
    priority = {**OPENED, "id": 24, "priority": "high", "previous_value": "low"}
    del priority["status"]
    page = {
        "ticket_events": [
            event(10, 123, CREATED, {**DOCS_COMMENT, "author_id": 77}, ts=1719792000),
            event(11, 123, OPENED, priority, ts=1719792060),
            event(12, 123, held, ts=1719795600),
            event(13, 123, gone, ts=1719799200),
            event(14, 124, DOCS_CHILD, ts=1719800000),
        ],
        "count": 5, "end_time": 1719800000, "end_of_stream": True, "next_page": None,
    }  # fmt: skip
    agents_listed(api, [])
    api.get(EVENTS, json=page, match=query(start_time=0, include="comment_events"))

    [stored] = read(connector(clock), "messages")

    def unix(ts: int) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    assert [r for r in stored.records if isinstance(r, StatusChange)] == [
        StatusChange("123", unix(1719792000), "new"),
        StatusChange("123", unix(1719792060), "open"),
        StatusChange("123", unix(1719795600), "on_hold"),
        StatusChange("123", unix(1719799200), "closed"),
        StatusChange("124", unix(1719800000), "solved"),
    ]
    assert [type(r) for r in stored.records].count(Message) == 1
    assert stored.skipped == []


def test_the_audit_shape_of_a_status_change_and_an_unknown_status() -> None:
    """Zendesk's own audit example (oas.yaml TicketAuditResponseExample): Change with
    field_name status, previous_value new, value open; a status Zendesk lacks is skipped."""
    audit = example(ZENDESK, "TicketAuditResponseExample")["audit"]
    audit_event = {"ticket_id": audit["ticket_id"], "created_at": audit["created_at"],
                   "child_events": audit["events"]}  # fmt: skip
    assert map_status_changes(audit_event) == (
        [StatusChange("666", at("2011-09-25T22:35:44Z"), "open")], [],
    )  # fmt: skip
    odd = event(15, 125, {**OPENED, "status": "archived"})
    [], [skipped] = map_status_changes(odd)
    assert (skipped.record_id, skipped.reason) == (
        "21", "status change: status: unknown value 'archived'",
    )  # fmt: skip


def test_a_comment_without_an_author_is_skipped_and_a_stored_cursor_is_the_start_time(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = sample("incremental_ticket_events_page_airbyte_fixture.json")  # a stub comment
    agents_listed(api, [])
    api.get(EVENTS, json=page, match=query(start_time=1719700000, include="comment_events"))

    [stored] = read(connector(clock), "messages", cursor="1719700000")

    assert stored.records == []
    assert [(s.record_id, s.reason) for s in stored.skipped] == [
        ("926256957614", "comment: missing author_id")
    ]
    assert stored.cursor == "1719792000"


# --- ratings, people, groups, organizations ---------------------------------------------


def test_ratings_are_two_point_csat_for_the_assignee_and_checkpoint_at_the_end(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    page = sample("satisfaction_ratings_page_airbyte_fixture.json")
    listed = sample("satisfaction_ratings_list_docs_example.json")
    offered = {**listed["satisfaction_ratings"][0], "id": 9, "score": "offered"}
    more = {"meta": {"has_more": True, "after_cursor": "next=="}, "links": {"next": "ignored"}}
    fixed = {"page[size]": 100, "start_time": 0}
    api.get(f"{API}/satisfaction_ratings.json", json={**listed, **more}, match=query(**fixed))
    api.get(f"{API}/satisfaction_ratings.json",
            json={**page, "satisfaction_ratings": [*page["satisfaction_ratings"], offered]},
            match=query(**fixed, **{"page[after]": "next=="}))  # fmt: skip

    pages = read(connector(clock), "ratings")

    ratings = [r for p in pages for r in p.records]
    # offered_at is the record's creation (the survey's offer); the offered survey not
    # answered yet is a rating without a score, rated (offered) then
    assert ratings == [
        Rating("35436", "csat", 1.0, 0.0, 1.0, at("2011-07-20T22:55:29Z"), "208",
               "Awesome support!", "135", at("2011-07-20T22:55:29Z")),
        Rating("120447", "csat", 1.0, 0.0, 1.0, at("2012-02-02T10:32:59Z"), "209",
               "Awesome support!", "136", at("2012-02-01T04:31:29Z")),
        Rating("35436", "csat", 1.0, 0.0, 1.0, at("2011-05-05T10:38:52Z"), "35436",
               "Great support!", "235323", at("2009-07-20T22:55:29Z")),
        Rating("9", "csat", None, 0.0, 1.0, at("2011-07-20T22:55:29Z"), "208",
               "Awesome support!", "135", at("2011-07-20T22:55:29Z")),
    ]  # fmt: skip
    assert [p.cursor for p in pages] == [
        None,
        None,
        str(int(at("2012-02-02T10:32:59Z").timestamp())),
    ]
    assert pages[-1].position == at("2012-02-02T10:32:59Z")


def test_ratings_resume_a_lookback_before_their_cursor_and_bad_is_zero(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    bad = {**sample("satisfaction_rating_docs_example.json"), "score": "bad"}
    stored = at("2011-08-01T00:00:00Z")
    start = int((stored - RATINGS_LOOKBACK).timestamp())
    api.get(f"{API}/satisfaction_ratings.json",
            json={"satisfaction_ratings": [bad], "meta": {"has_more": False}},
            match=query(start_time=start, **{"page[size]": 100}))  # fmt: skip

    pages = read(connector(clock), "ratings", cursor=str(int(stored.timestamp())))

    [rating] = pages[0].records
    assert isinstance(rating, Rating)
    assert (rating.score, rating.scale_min, rating.scale_max, rating.agent_id) == (
        0.0,
        0.0,
        1.0,
        "135",
    )


def test_ratings_look_back_far_enough_for_an_answer_given_weeks_after_the_offer(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    """The record exists from the offer (created_at); the answer comes while the ticket is
    solved, up to 28 days later. The newest answer stored is 10 days after this offer, so the
    next run must start at or before the offer to see its answer on day 20."""
    docs = sample("satisfaction_rating_docs_example.json")
    offered = at(docs["created_at"])
    answered = {**docs, "updated_at": "2011-08-09T22:55:29Z"}  # 20 days after the offer
    stored = offered + timedelta(days=10)
    start = int((stored - timedelta(days=28)).timestamp())
    assert start <= offered.timestamp()
    api.get(f"{API}/satisfaction_ratings.json",
            json={"satisfaction_ratings": [answered], "meta": {"has_more": False}},
            match=query(start_time=start, **{"page[size]": 100}))  # fmt: skip

    pages = read(connector(clock), "ratings", cursor=str(int(stored.timestamp())))

    [rating] = pages[0].records
    assert isinstance(rating, Rating)
    assert rating.rated_at == at("2011-08-09T22:55:29Z")
    assert timedelta(days=28) == RATINGS_LOOKBACK


def test_a_deleted_group_is_not_stored_as_a_live_group(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    """The documented groups list, with one group marked as GroupObject's ``deleted`` says:
    "Deleted groups get marked as such"."""
    listed = copy.deepcopy(example(ZENDESK, "GroupsResponseExample"))
    listed["groups"][1]["deleted"] = True
    api.get(f"{API}/groups.json", json={**listed, "meta": {"has_more": False}})

    [groups] = read(connector(clock), "groups")

    assert [(g.external_id, g.name) for g in groups.records] == [("211", "DJs")]  # type: ignore[union-attr]
    assert groups.skipped == []


def test_people_groups_and_organizations(api: responses.RequestsMock, clock: FakeClock) -> None:
    admin = sample("user_docs_example.json")
    api.get(f"{API}/incremental/users/cursor.json",
            json={"users": [admin], "after_cursor": "u1", "end_of_stream": True})  # fmt: skip
    api.get(f"{API}/groups.json", json={"groups": [{"id": 44, "name": "Support"}],
                                        "meta": {"has_more": False}})  # fmt: skip
    org = {"id": 4112492, "name": "Groablet Enterprises", "created_at": "2018-11-14T00:14:52Z"}
    api.get(f"{API}/organizations.json", json={"organizations": [org], "meta": {"has_more": False}},
            match=query(**{"page[size]": 100}))  # fmt: skip
    zd = connector(clock)

    [people] = read(zd, "people")
    [groups] = read(zd, "groups")
    [orgs] = read(zd, "organizations")

    assert people.records == [Person("1159307768", "agent", "Face Toe", "facetoe@facetoe.com.au")]
    assert people.cursor == "u1"
    assert [(g.external_id, g.name) for g in groups.records] == [("44", "Support")]  # type: ignore[union-attr]
    assert orgs.cursor is None
    assert len(orgs.records) == 1


# --- pacing -----------------------------------------------------------------------------


def recorded_headers(name: str) -> dict[str, str]:
    return {
        k: v[0]
        for k, v in sample(name)["headers"].items()
        if k.lower().startswith(("x-rate", "rate"))
    }


def end_page(n: int) -> dict[str, Any]:
    return {"tickets": [], "after_cursor": f"c{n}", "end_of_stream": True}


@pytest.mark.parametrize(("high_volume", "budget"), [(False, 10), (True, 30)])
def test_exports_are_paced_to_their_budget_per_minute(
    api: responses.RequestsMock, clock: FakeClock, high_volume: bool, budget: int
) -> None:
    for n in range(budget + 1):
        api.get(EXPORT, json=end_page(n))
    zd = connector(clock, high_volume=high_volume)

    for _ in range(budget + 1):
        read(zd, "tickets")

    assert clock.sleeps == [pytest.approx(60.1)]  # only the request past the budget waits


def test_real_rate_limit_headers_pace_and_an_exhausted_quota_waits_for_its_reset(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    headers = recorded_headers("response_headers_ticket_audits.json")  # 671 of 700 left, 53 s
    assert headers["rate-limit-remaining"] == "671"
    assert headers["rate-limit-reset"] == "53"
    api.get(EXPORT, json=end_page(1), headers=headers)
    api.get(EXPORT, json=end_page(2), headers={**headers, "rate-limit-remaining": "0"})
    api.get(EXPORT, json=end_page(3))
    api.get(EXPORT, json=end_page(4))
    zd = connector(clock)

    for _ in range(4):
        read(zd, "tickets")

    assert clock.sleeps == [pytest.approx(53 / 672), pytest.approx(53 + 1 + 0.1)]


def test_a_429_waits_its_retry_after_and_a_dropped_connection_is_retried(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    api.get(EXPORT, status=429, body="Rate limited by Zendesk edge protection",
            headers={"Retry-After": "17"})  # fmt: skip
    api.get(EXPORT, body=requests.ConnectionError("connection reset by peer"))
    api.get(EXPORT, status=503, json={"error": "ServiceUnavailable"})
    api.get(EXPORT, json=end_page(1))

    pages = read(connector(clock), "tickets")

    assert [p.cursor for p in pages] == ["c1"]
    assert clock.sleeps[0] == 17
    assert len(clock.sleeps) == 3
    assert all(1 <= s <= 6 for s in clock.sleeps[1:])  # exponential backoff, jittered


# --- requests against oas.yaml ----------------------------------------------------------

BASIC = {"Authorization": "Basic b3BzQGFjbWUudGVzdC90b2tlbjpzM2NyZXQ="}


def test_the_document_requires_start_time_beside_cursor_which_zendesk_itself_omits() -> None:
    """Recorded deviation: oas.yaml marks start_time required on the cursor export, and the
    real after_url Zendesk returned carries the cursor alone."""
    doc = document(ZENDESK)
    refs = [p["$ref"] for p in doc["paths"]["/api/v2/incremental/tickets/cursor"]["parameters"]]
    assert "#/components/parameters/IncrementalUnixTime" in refs
    assert doc["components"]["parameters"]["IncrementalUnixTime"]["required"] is True
    after_url = sample("incremental_tickets_cursor_page_per_page1.json")["after_url"]
    assert "cursor=" in after_url
    assert "start_time" not in after_url

    bare = RequestCheck(ZENDESK, "https://acme.zendesk.com")
    excused = RequestCheck(ZENDESK, "https://acme.zendesk.com", ZENDESK_DEVIATIONS)
    path, query = (
        "/api/v2/incremental/tickets/cursor.json",
        {"cursor": ["MTY5NTA1MjY2My4wfHwyOHw="]},
    )
    bare("GET", path, query, None, BASIC)
    excused("GET", path, query, None, BASIC)

    assert "Missing required query parameter: start_time" in bare.violations[0]
    assert (excused.violations, dict(excused.met)) == ([], {ZENDESK_DEVIATIONS[0].name: 1})


@pytest.mark.parametrize(
    ("path", "query", "headers", "problem"),
    [
        ("/api/v2/incremental/tickets/cursor.json", {"start_time": ["yesterday"]}, BASIC,
         "start_time"),
        ("/api/v2/incremental/ticket_events.json", {}, BASIC, "start_time"),
        ("/api/v2/incremental/tickets/cursor.json", {"start_time": ["0"]}, {}, "Security"),
        ("/api/v2/helpdesk/tickets.json", {}, BASIC, "not found"),
    ],
)  # fmt: skip
def test_a_request_outside_the_document_is_reported(
    path: str, query: dict[str, list[str]], headers: dict[str, str], problem: str
) -> None:
    check = RequestCheck(ZENDESK, "https://acme.zendesk.com", ZENDESK_DEVIATIONS)
    check("GET", path, query, None, headers)
    [violation] = check.violations
    assert problem in violation


# --- the current CSAT (survey responses) --------------------------------------------------

# A List Survey Responses item with the fields the reference documents (the csat_survey_responses
# page: id, answers of type rating_scale / open_ended / closed_ended / skipped, expires_at,
# responder_id, subject_zrns, subjects, survey); values invented, shape as documented.
SURVEY_RESPONSE = {
    "id": "01HRQ4V9SX3Z3V0D7GS3Q0TZ8R",
    "answers": [
        {"type": "rating_scale", "rating": 4, "rating_category": "good",
         "question": {"id": "01HRQ4", "type": "rating_scale_numeric",
                      "sub_type": "customer_satisfaction", "alias": "rating"},
         "created_at": "2025-03-06T15:25:00Z", "updated_at": "2025-03-06T15:26:40Z"},
        {"type": "open_ended", "value": "Quick and kind",
         "question": {"id": "01HRQ5", "type": "open_ended", "alias": "comment"},
         "created_at": "2025-03-06T15:25:00Z", "updated_at": "2025-03-06T15:25:00Z"},
    ],
    "expires_at": "2025-04-05T15:25:00Z",
    "responder_id": 10088,
    "subject_zrns": ["zen:ticket:99"],
    "subjects": [{"id": "99", "type": "ticket", "zrn": "zen:ticket:99"}],
    "survey": {"id": "01HRQ3", "version": 2, "state": "enabled"},
}  # fmt: skip


def test_a_survey_response_is_csat_on_the_surveys_own_scale() -> None:
    rating = zendesk_map.map_survey_response(SURVEY_RESPONSE)
    assert rating == Rating("01HRQ4V9SX3Z3V0D7GS3Q0TZ8R", "csat", 4.0, 1.0, 5.0,
                            at("2025-03-06T15:26:40Z"), "99", "Quick and kind")  # fmt: skip
    older = {k: v for k, v in SURVEY_RESPONSE.items() if k != "subjects"}
    older["subject_zrns"] = ["zrn:ticket:99"]  # an earlier rendition of the page
    found = zendesk_map.map_survey_response(older, points=5)
    assert found is not None
    assert found.ticket_id == "99"
    skipped = {**SURVEY_RESPONSE, "answers": [{"type": "skipped", "question": {"id": "q"}}]}
    assert zendesk_map.map_survey_response(skipped) is None
    with pytest.raises(BadRecordError, match="not 1-2 4"):
        zendesk_map.map_survey_response(SURVEY_RESPONSE, points=2)


def test_survey_responses_are_read_only_when_asked_and_resume_a_lookback_back(
    api: responses.RequestsMock, clock: FakeClock
) -> None:
    assert "surveys" not in [s.name for s in connector(clock).streams()]
    stored = at("2025-03-10T00:00:00Z")
    start_ms = int((stored - RATINGS_LOOKBACK).timestamp()) * 1000
    second = {
        **SURVEY_RESPONSE,
        "id": "2",
        "answers": [
            {**SURVEY_RESPONSE["answers"][0], "rating": 1, "updated_at": "2025-03-08T09:00:00Z"}
        ],
    }
    api.get(
        f"{API}/guide/survey_responses",
        json={
            "survey_responses": [SURVEY_RESPONSE],
            "meta": {"has_more": True, "after_cursor": "xyz"},
        },
        match=query(**{"page[size]": 100, "filter[created_at_start]": start_ms}),
    )
    api.get(f"{API}/guide/survey_responses",
            json={"survey_responses": [second], "meta": {"has_more": False}},
            match=query(**{"page[size]": 100, "filter[created_at_start]": start_ms,
                           "page[after]": "xyz"}))  # fmt: skip

    zd = connector(clock, survey_responses=True, survey_points=5)
    pages = read(zd, "surveys", cursor=str(int(stored.timestamp())))

    scores = [(r.external_id, r.score) for p in pages for r in p.records if isinstance(r, Rating)]
    assert scores == [("01HRQ4V9SX3Z3V0D7GS3Q0TZ8R", 4.0), ("2", 1.0)]
    assert [p.cursor for p in pages] == [
        None,
        None,
        str(int(at("2025-03-08T09:00:00Z").timestamp())),
    ]


def test_an_unoffered_survey_is_no_rating_and_an_offered_one_has_no_score() -> None:
    docs = sample("satisfaction_rating_docs_example.json")
    assert zendesk_map.map_rating({**docs, "score": "unoffered"}) is None
    offered = zendesk_map.map_rating({**docs, "score": "offered"})
    assert offered is not None
    created = at(docs["created_at"])
    assert (offered.score, offered.offered_at, offered.rated_at) == (None, created, created)
    with pytest.raises(BadRecordError, match="score: unknown value 'meh'"):
        zendesk_map.map_rating({**docs, "score": "meh"})
