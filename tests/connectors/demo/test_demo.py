from __future__ import annotations

import itertools
import statistics
from collections import Counter, abc, defaultdict
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import ValidationError

from cskpi.connectors.base import (
    ConnectorSettings,
    Group,
    Message,
    Organization,
    Page,
    Person,
    Rating,
    Record,
    StatusChange,
    Stream,
    Ticket,
)
from cskpi.connectors.demo.connector import DemoConnector, DemoSettings
from cskpi.connectors.demo.desk import LIFETIME

END = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
OPEN = ("new", "open", "pending", "on_hold")


def connector(**settings: object) -> DemoConnector:
    values: dict[str, object] = {"tickets": 3000, "days": 60, "end": END, "page_size": 500}
    values.update(settings)
    return DemoConnector("try-it", DemoSettings.model_validate(values))


def tickets_stream(demo: DemoConnector) -> Stream:
    return demo.streams()[1]


R = TypeVar("R")


def records(page: Page) -> list[Record]:
    return list(page.records)


def of(kind: type[R], pages: Iterable[Page]) -> list[R]:
    return [r for page in pages for r in records(page) if isinstance(r, kind)]


@pytest.fixture(scope="module")
def demo() -> DemoConnector:
    return connector()


@pytest.fixture(scope="module")
def pages(demo: DemoConnector) -> list[Page]:
    return list(tickets_stream(demo).read(None, None))


@pytest.fixture(scope="module")
def tickets(pages: list[Page]) -> list[Ticket]:
    return of(Ticket, pages)


@pytest.fixture(scope="module")
def messages(pages: list[Page]) -> dict[str, list[Message]]:
    by_ticket: dict[str, list[Message]] = defaultdict(list)
    for message in of(Message, pages):
        by_ticket[message.ticket_id].append(message)
    return by_ticket


@pytest.fixture(scope="module")
def ratings(pages: list[Page]) -> list[Rating]:
    return of(Rating, pages)


# --- settings and the connector surface --------------------------------------------------


def test_settings_defaults_and_end_normalisation() -> None:
    settings = DemoSettings(end=datetime(2026, 1, 5, 12, 30, 15, 999))
    assert (settings.type, settings.tickets, settings.days, settings.seed) == ("demo", 5000, 90, 1)
    assert (settings.page_size, settings.agents, settings.groups) == (1000, None, None)
    assert settings.end == datetime(2026, 1, 5, 12, 30, 15, tzinfo=UTC)
    berlin = datetime(2026, 1, 5, 14, tzinfo=timezone(timedelta(hours=1)))
    assert DemoSettings(end=berlin).end == datetime(2026, 1, 5, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "value"), [("tickets", 0), ("days", 0), ("page_size", 0), ("colour", "red")]
)
def test_settings_reject_bad_values(key: str, value: object) -> None:
    with pytest.raises(ValidationError, match=key):
        DemoSettings.model_validate({key: value})


def test_connector_surface() -> None:
    demo = DemoConnector("try-it", DemoSettings(tickets=10, end=END))
    assert (DemoConnector.type, DemoConnector.Settings) == ("demo", DemoSettings)
    demo.check()  # nothing to call, never fails
    assert [s.name for s in demo.streams()] == ["directory", "tickets"]
    assert all(isinstance(s, Stream) for s in demo.streams())
    assert demo.end == END


def test_base_settings_are_upgraded_and_end_defaults_to_today_midnight() -> None:
    demo = DemoConnector("try-it", ConnectorSettings(type="demo"))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert demo.settings == DemoSettings()
    assert demo.end in (today, today + timedelta(days=1))  # a run across midnight


def test_directory_is_one_page_of_agents_bot_groups_and_organizations() -> None:
    (page,) = connector(tickets=5000).streams()[0].read(None, None)
    assert (page.cursor, page.position) == (None, None)
    people = [r for r in page.records if isinstance(r, Person)]
    roles = Counter(p.role for p in people)
    assert roles == {"agent": 12, "bot": 1}  # 5000 tickets / 400
    assert [g.external_id for g in page.records if isinstance(g, Group)] == ["g1", "g2", "g3"]
    orgs = [o for o in page.records if isinstance(o, Organization)]
    assert len(orgs) == 100  # 5000 / 50
    assert all(o.created_at is not None and o.created_at < END for o in orgs)
    assert people[0] == Person("a1", "agent", people[0].name, "agent1@helpdesk.example")
    (again,) = connector(tickets=5000).streams()[0].read("x", END)
    assert again == page


def test_sizes_follow_the_settings() -> None:
    (page,) = connector(agents=3, groups=5, organizations=7).streams()[0].read(None, None)
    counts = Counter(type(r).__name__ for r in page.records)
    assert counts == {"Person": 4, "Group": 3, "Organization": 7}  # groups capped at agents


# --- pages, cursors, determinism ---------------------------------------------------------


def test_pages_carry_counts_as_cursors_and_creation_times_as_positions(
    pages: list[Page], tickets: list[Ticket]
) -> None:
    assert [p.cursor for p in pages] == ["500", "1000", "1500", "2000", "2500", "3000"]
    assert [t.external_id for t in tickets] == [f"t{n}" for n in range(1_000_001, 1_003_001)]
    created = [t.created_at for t in tickets]
    assert created == sorted(created)
    assert [p.position for p in pages] == [created[n - 1] for n in range(500, 3001, 500)]
    assert END - timedelta(days=60) <= created[0]
    assert created[-1] <= END


def test_every_page_holds_its_tickets_requesters_messages_and_ratings(pages: list[Page]) -> None:
    for page in pages:
        tickets = {t.external_id: t for t in of(Ticket, [page])}
        people = of(Person, [page])
        assert len(tickets) == 500
        assert all(p.role == "customer" for p in people)
        assert len({p.external_id for p in people}) == len(people)
        assert {t.requester_id for t in tickets.values()} == {p.external_id for p in people}
        for r in records(page):
            if isinstance(r, Message | Rating | StatusChange):
                assert r.ticket_id in tickets


def test_the_same_seed_gives_the_same_records_and_another_seed_others(pages: list[Page]) -> None:
    again = list(tickets_stream(connector()).read(None, None))
    assert again == pages
    other = list(tickets_stream(connector(seed=2)).read(None, None))
    assert of(Ticket, other) != of(Ticket, pages)
    assert [t.created_at for t in of(Ticket, other)] != [t.created_at for t in of(Ticket, pages)]


def test_resuming_from_a_cursor_gives_exactly_the_pages_of_a_full_read(pages: list[Page]) -> None:
    resumed = list(tickets_stream(connector()).read("2000", None))
    assert resumed == pages[4:]
    assert list(tickets_stream(connector()).read("3000", None)) == []


def test_an_unaligned_cursor_or_another_page_size_changes_no_record(
    tickets: list[Ticket], pages: list[Page]
) -> None:
    resumed = list(tickets_stream(connector()).read("1234", None))
    assert resumed[0].cursor == "1734"
    assert of(Ticket, resumed) == tickets[1234:]
    small = list(tickets_stream(connector(page_size=300)).read(None, None))
    assert len(small) == 10
    assert of(Ticket, small) == tickets
    assert sorted(m.external_id for m in of(Message, small)) == sorted(
        m.external_id for m in of(Message, pages)
    )


def allowed(hint: Any) -> set[type]:
    """The Python types a record field of type ``hint`` may hold (False is not 0, nor 0 False)."""
    if hint is float:
        return {int, float}
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return {type(arg) for arg in args}
    if origin in (Union, UnionType):
        return set().union(*(allowed(arg) for arg in args))
    return {tuple} if origin is abc.Sequence else {hint}


def test_ticket_pages_hold_records_of_their_declared_types(pages: list[Page]) -> None:
    for page in pages:
        assert {type(r) for r in page.records} == {Person, Ticket, Message, Rating, StatusChange}
        for r in page.records:
            hints = get_type_hints(type(r))
            for name in (f.name for f in fields(r)):
                value = getattr(r, name)
                assert type(value) in allowed(hints[name]), (name, r)
                if isinstance(value, datetime):
                    assert value.tzinfo is UTC, (name, r)
    first = pages[0].records
    ticket = next(r for r in first if isinstance(r, Ticket))
    message = next(r for r in first if isinstance(r, Message))
    person = next(r for r in first if isinstance(r, Person))
    assert (ticket.external_id, ticket.requester_id, person.role) == (
        "t1000001", person.external_id, "customer",
    )  # fmt: skip
    assert (message.external_id, message.ticket_id, message.author_id, message.author_role) == (
        "m1000001-1", "t1000001", person.external_id, "customer",
    )  # fmt: skip


def test_a_bad_cursor_is_refused() -> None:
    with pytest.raises(ValueError, match="count of tickets, got 'abc'"):
        next(iter(tickets_stream(connector()).read("abc", None)))


def test_since_starts_at_the_first_page_that_can_hold_a_ticket_updated_since(
    pages: list[Page], tickets: list[Ticket]
) -> None:
    since = END - timedelta(days=12)
    backfill = list(tickets_stream(connector()).read("2500", since))  # since wins over cursor
    first = pages.index(backfill[0])
    assert backfill == pages[first:]
    assert 0 < first < len(pages) - 1
    assert all(t.created_at < since - LIFETIME for t in of(Ticket, pages[:first]))
    assert any(t.created_at >= since - LIFETIME for t in of(Ticket, pages[first : first + 1]))
    delivered = {t.external_id for t in of(Ticket, backfill)}
    assert {t.external_id for t in tickets if t.updated_at >= since} <= delivered


def test_since_before_the_data_reads_everything_and_after_it_nothing(pages: list[Page]) -> None:
    stream = tickets_stream(connector())
    assert list(stream.read(None, END - timedelta(days=400))) == pages
    assert list(stream.read(None, END + LIFETIME + timedelta(days=1))) == []
    naive = list(stream.read(None, (END - timedelta(days=12)).replace(tzinfo=None)))
    assert naive == list(stream.read(None, END - timedelta(days=12)))


# --- internal consistency ----------------------------------------------------------------


def test_ids_are_plain_unique_and_never_carry_the_connector_name(pages: list[Page]) -> None:
    ids = [
        r.external_id
        for page in pages
        for r in records(page)
        if not isinstance(r, Person | StatusChange)
    ]
    assert len(ids) == len(set(ids))
    assert not any("try-it" in i or ":" in i for i in ids)
    assert {i[0] for i in ids} == {"t", "m", "r"}


def test_datetimes_are_aware_utc_whole_seconds_and_never_after_end(pages: list[Page]) -> None:
    for r in (r for page in pages for r in records(page)):
        for f in fields(r):
            value = getattr(r, f.name)
            if isinstance(value, datetime):
                assert value.tzinfo is UTC
                assert value.microsecond == 0
                assert value <= END


def test_ticket_dates_and_counters_agree_with_the_messages(
    tickets: list[Ticket], messages: dict[str, list[Message]]
) -> None:
    for t in tickets:
        thread = messages[t.external_id]
        assert [m.created_at for m in thread] == sorted(m.created_at for m in thread)
        assert thread[0].author_role == "customer"
        assert thread[0].created_at == t.created_at
        replies = [m for m in thread if m.author_role == "agent" and m.public]
        assert t.agent_replies == len(replies)
        assert t.first_reply_at == (replies[0].created_at if replies else None)
        after_solve = [m for m in thread if t.first_solved_at and m.created_at > t.first_solved_at]
        assert t.reopens == sum(m.author_role == "customer" for m in after_solve)
        assert all(m.author_id == t.requester_id for m in thread if m.author_role == "customer")


def test_status_solve_and_close_dates_agree(
    tickets: list[Ticket], messages: dict[str, list[Message]], ratings: list[Rating]
) -> None:
    rated = defaultdict(list)
    for rating in ratings:
        rated[rating.ticket_id].append(rating.rated_at)
    for t in tickets:
        solved = t.status in ("solved", "closed")
        assert solved == (t.solved_at is not None)
        assert (t.status == "closed") == (t.closed_at is not None)
        assert t.raw_status == ("hold" if t.status == "on_hold" else t.status)
        if t.solved_at is not None:
            assert t.first_solved_at is not None
            assert t.first_solved_at <= t.solved_at
            if t.reopens:
                assert t.first_solved_at < t.solved_at
        if t.closed_at is not None:
            assert t.solved_at is not None
            assert t.closed_at >= t.solved_at
        events = [m.created_at for m in messages[t.external_id]] + rated[t.external_id]
        events += [d for d in (t.first_solved_at, t.solved_at, t.closed_at) if d is not None]
        assert t.updated_at == max(events)


def test_open_tickets_are_in_the_state_their_last_message_says(
    tickets: list[Ticket], messages: dict[str, list[Message]]
) -> None:
    for t in tickets:
        thread = messages[t.external_id]
        if t.status == "new":
            assert t.assignee_id is None
            assert t.agent_replies == 0
            assert all(m.author_role in ("customer", "bot") for m in thread)
            assert t.group_changes == t.assignee_changes == 0
        elif t.status in ("pending", "on_hold"):
            assert (thread[-1].author_role, thread[-1].public) == ("agent", True)
        else:
            assert t.assignee_id is not None


def test_ratings_follow_the_solve_and_rate_the_assignee(
    tickets: list[Ticket], ratings: list[Rating]
) -> None:
    by_id = {t.external_id: t for t in tickets}
    for rating in ratings:
        ticket = by_id[rating.ticket_id or ""]
        assert ticket.solved_at is not None
        assert ticket.solved_at <= rating.rated_at <= END
        assert rating.external_id == f"r{ticket.external_id[1:]}-{rating.kind}"
        if rating.kind == "csat":
            assert (rating.scale_min, rating.scale_max) == (1, 5)
            assert 1 <= rating.score <= 5
            assert rating.agent_id == ticket.assignee_id is not None
        else:
            assert rating.kind == "nps"
            assert (rating.scale_min, rating.scale_max) == (0, 10)
            assert 0 <= rating.score <= 10
            assert rating.agent_id is None


def test_references_point_into_the_directory(
    demo: DemoConnector, tickets: list[Ticket], messages: dict[str, list[Message]]
) -> None:
    (page,) = demo.streams()[0].read(None, None)
    ids = {r.external_id for r in page.records}
    for t in tickets:
        assert {t.group_id, t.assignee_id, t.organization_id} - {None} <= ids
        authors = {m.author_id for m in messages[t.external_id] if m.author_role != "customer"}
        assert authors <= ids


def test_lifetime_is_bounded(tickets: list[Ticket]) -> None:
    assert max(t.updated_at - t.created_at for t in tickets) <= LIFETIME


# --- realistic shape ---------------------------------------------------------------------


def share(items: Iterable[bool]) -> float:
    values = list(items)
    return sum(values) / len(values)


def test_mix_of_statuses_channels_priorities_types_and_tags(tickets: list[Ticket]) -> None:
    statuses = Counter(t.status for t in tickets)
    assert set(statuses) == {"new", "open", "pending", "on_hold", "solved", "closed"}
    assert 0.7 < (statuses["solved"] + statuses["closed"]) / len(tickets) < 0.98
    assert len({t.channel for t in tickets}) == 7
    assert {t.priority for t in tickets} == {"urgent", "high", "normal", "low", None}
    assert {t.type for t in tickets} == {"question", "incident", "problem", "task", None}
    tags = Counter(tag for t in tickets for tag in t.tags)
    assert {"escalated", "billing", "bug", "vip"} <= set(tags)
    assert 0.3 < share(bool(t.tags) for t in tickets) < 0.9


def test_reopens_reassignments_and_unanswered_tickets_occur(tickets: list[Ticket]) -> None:
    solved = [t for t in tickets if t.solved_at is not None]
    assert 0.02 < share(t.reopens > 0 for t in solved) < 0.2
    assert 0.03 < share(t.group_changes > 0 for t in tickets) < 0.25
    assert share(t.assignee_changes > 0 for t in tickets) > 0.05
    assert 0.01 < share(t.agent_replies == 0 for t in solved) < 0.1
    escalated = [t for t in tickets if "escalated" in t.tags and t.status != "new"]
    assert share(t.group_changes > 0 for t in escalated) > 0.6
    assert len({t.requester_id for t in tickets}) < 0.8 * len(tickets)  # repeat customers
    assert 0.5 < share(t.organization_id is not None for t in tickets) < 0.8


def test_recent_tickets_are_more_often_unsolved(tickets: list[Ticket]) -> None:
    recent = [t for t in tickets if t.created_at >= END - timedelta(days=3)]
    older = [t for t in tickets if t.created_at < END - timedelta(days=30)]
    assert share(t.status in OPEN for t in recent) > 3 * share(t.status in OPEN for t in older)
    assert share(t.status in OPEN for t in older) > 0  # some stay stuck


def test_arrivals_lean_to_weekday_business_hours(tickets: list[Ticket]) -> None:
    assert share(t.created_at.weekday() < 5 for t in tickets) > 0.8
    assert share(8 <= t.created_at.hour < 18 for t in tickets) > 0.5


def test_agents_answer_in_business_hours(messages: dict[str, list[Message]]) -> None:
    def in_hours(role: str) -> float:
        stamps = [m.created_at for ms in messages.values() for m in ms if m.author_role == role]
        return share(d.weekday() < 5 and 8 <= d.hour < 18 for d in stamps)

    assert in_hours("agent") > 0.65
    assert in_hours("agent") > in_hours("customer") + 0.1


def test_messages_include_notes_bots_and_exchanges(messages: dict[str, list[Message]]) -> None:
    everything = [m for thread in messages.values() for m in thread]
    assert any(m.author_role == "agent" and not m.public for m in everything)
    assert any(m.author_role == "bot" and m.author_id == "b1" for m in everything)
    assert 3 < len(everything) / len(messages) < 8


def first_reply(tickets: Iterable[Ticket]) -> float:
    return statistics.median(
        (t.first_reply_at - t.created_at).total_seconds() for t in tickets if t.first_reply_at
    )


def test_reply_times_are_faster_for_urgent_tickets_and_live_channels(
    tickets: list[Ticket],
) -> None:
    assert first_reply(t for t in tickets if t.priority == "urgent") < first_reply(
        t for t in tickets if t.priority == "low"
    )
    assert 10 * first_reply(t for t in tickets if t.channel == "chat") < first_reply(
        t for t in tickets if t.channel == "email"
    )


def test_ratings_are_mostly_positive_csat_with_some_nps(
    tickets: list[Ticket], ratings: list[Rating]
) -> None:
    csat = [r for r in ratings if r.kind == "csat"]
    solved = [t for t in tickets if t.solved_at is not None]
    assert 0.2 < len(csat) / len(solved) < 0.4
    assert {r.score for r in csat} == {1, 2, 3, 4, 5}
    assert 0.6 < share(r.score >= 4 for r in csat) < 0.95
    nps = [r for r in ratings if r.kind == "nps"]
    assert 0.01 < len(nps) / len(solved) < 0.08


def test_each_ticket_s_status_history_agrees_with_the_ticket(
    pages: list[Page], tickets: list[Ticket]
) -> None:
    """SPEC §3 status_change: new on arrival, each solve and reopen, ending in the status."""
    history: dict[str, list[StatusChange]] = defaultdict(list)
    for change in of(StatusChange, pages):
        history[change.ticket_id].append(change)
    assert history.keys() == {t.external_id for t in tickets}
    for t in tickets:
        changes = history[t.external_id]
        assert [c.at for c in changes] == sorted(c.at for c in changes), t
        assert (changes[0].at, changes[0].status) == (t.created_at, "new"), t
        assert changes[-1].status == t.status, t
        assert all(a.status != b.status for a, b in itertools.pairwise(changes)), t
        solves = [c.at for c in changes if c.status == "solved"]
        assert (solves[0] if solves else None) == t.first_solved_at, t
        if t.status in ("solved", "closed"):
            assert solves[-1] == t.solved_at, t
        reopened = sum(
            a.status == "solved" and b.status != "closed" for a, b in itertools.pairwise(changes)
        )
        assert reopened == t.reopens, t
    statuses = Counter(c.status for c in of(StatusChange, pages))
    assert set(statuses) == {"new", "open", "pending", "on_hold", "solved", "closed"}
