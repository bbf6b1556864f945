"""The engine equals the reference of docs/kpis.md on random small datasets.

Times fall on a mix of whole hours and minutes around the end of March 2026, so windows,
records and ``now`` often coincide, and windows cross a DST change and a month boundary.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cskpi.connectors import base
from cskpi.core.config.file import DIMENSIONS, Costs, PriorityTargets, Sla
from cskpi.core.config.periods import Window
from cskpi.core.kpis.business_hours import BusinessCalendar
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import Account, Dataset, differences, report_as_data
from tests.postgres import PgServer

BASE = datetime(2026, 3, 20, tzinfo=UTC)
CONNECTORS = ("zd", "fd", "ic")
ZONES = tuple(ZoneInfo(name) for name in ("Europe/Berlin", "UTC", "America/New_York"))
AGENTS = (None, "a1", "a2", "a3")
SCALES = ((1, 5), (0, 1), (1, 10), (1, 3), (0, 10), (1, 7))
HOUR = timedelta(hours=1)
REQUESTERS = (None, "u1", "u2", "u3")
EMAILS = (None, "ann@x.io", " Ann@X.io", "bob@x.io", "")
WALL = BASE + timedelta(days=60)  # the wall clock, unless a scenario sets one


def moment(lo_hours: int, hi_hours: int) -> st.SearchStrategy[datetime]:
    """Whole hours half the time, so instants often coincide with window edges."""
    hours = st.integers(lo_hours, hi_hours).map(lambda h: BASE + h * HOUR)
    minutes = st.integers(lo_hours * 60, hi_hours * 60).map(lambda m: BASE + timedelta(minutes=m))
    return st.one_of(hours, minutes)


def later(start: datetime, max_hours: int) -> st.SearchStrategy[datetime]:
    """An instant after ``start``, or a little before: sources stamp replies early."""
    return st.integers(-120, max_hours * 60).map(lambda m: start + timedelta(minutes=m))


@st.composite
def tickets(draw: st.DrawFn) -> list[base.Ticket]:
    out = []
    for i in range(draw(st.integers(0, 10))):
        created = draw(moment(-10 * 24, 30 * 24))
        status: Any = draw(st.sampled_from(base.TICKET_STATUSES))
        done = status in ("solved", "closed")
        solved = draw(later(created, 240)) if done else None
        if not done and draw(st.booleans()):
            solved = draw(later(created, 240))  # solved once, reopened since
        first_solved = None
        if solved is not None and draw(st.booleans()):
            first_solved = solved - draw(st.integers(0, 48)) * HOUR
        reply = draw(st.none() | later(created, 72))
        out.append(
            base.Ticket(
                f"t{i}",
                created,
                created,
                status,
                priority=draw(st.sampled_from((None, *base.PRIORITIES))),
                channel=draw(st.sampled_from((None, "email", "chat"))),
                type=draw(st.sampled_from((None, "question", "bug"))),
                tags=draw(
                    st.lists(
                        st.sampled_from(("billing", "vip", "escalated")), unique=True, max_size=3
                    )
                ),
                organization_id=draw(st.sampled_from((None, "o1", "o2", "o3"))),
                assignee_id=draw(st.sampled_from(AGENTS)),
                group_id=draw(st.sampled_from((None, "g1", "g2"))),
                first_reply_at=reply,
                first_solved_at=first_solved,
                solved_at=solved,
                agent_replies=draw(st.integers(0, 3)),
                reopens=draw(st.integers(0, 2)),
                group_changes=draw(st.integers(0, 2)),
                deleted=draw(st.integers(0, 6)) == 0,
                requester_id=draw(st.sampled_from(REQUESTERS)),
                assignee_changes=draw(st.integers(0, 2)),
            )
        )
    return out


@st.composite
def messages(draw: st.DrawFn, ticket_list: list[base.Ticket]) -> list[base.Message]:
    out = []
    for t in ticket_list:
        for j in range(draw(st.integers(0, 5))):
            out.append(
                base.Message(
                    f"{t.external_id}-m{j}",
                    t.external_id,
                    t.created_at + timedelta(minutes=draw(st.integers(-30, 3 * 24 * 60))),
                    draw(st.sampled_from(("customer", "customer", "agent", "bot", "system"))),
                    draw(st.integers(0, 4)) > 0,
                    draw(st.sampled_from((None, "a1", "a2", "u1"))),
                )
            )
    return out


@st.composite
def ratings(draw: st.DrawFn, ticket_list: list[base.Ticket]) -> list[base.Rating]:
    ticket_ids = (None, "ghost", *(t.external_id for t in ticket_list))
    out = []
    for i in range(draw(st.integers(0, 8))):
        kind: Any = draw(st.sampled_from(("csat", "nps", "ces", "esat")))
        lo, hi = (0, 10) if kind == "nps" else draw(st.sampled_from(SCALES))
        rated = draw(moment(-5 * 24, 30 * 24))
        # a survey's offer comes at or before its answer; an unanswered one is dated by it
        early = draw(st.none() | st.integers(0, 72))
        offered = None if early is None else rated - timedelta(hours=early)
        score = draw(st.integers(lo, hi))
        unanswered = offered is not None and draw(st.booleans())
        out.append(
            base.Rating(
                f"r{i}",
                kind,
                None if unanswered else score,
                lo,
                hi,
                offered if unanswered and offered is not None else rated,
                ticket_id=draw(st.sampled_from(ticket_ids)),
                agent_id=draw(st.sampled_from((*AGENTS, "a4"))),
                offered_at=offered,
            )
        )
    return out


@st.composite
def handling(draw: st.DrawFn, ticket_list: list[base.Ticket]) -> list[base.VendorMetrics]:
    """Intercom-like handling times for some tickets (handle_time)."""
    return [
        base.VendorMetrics(t.external_id, [("handling_time", draw(st.integers(0, 10**5)))])
        for t in ticket_list
        if draw(st.booleans())
    ]


@st.composite
def accounts(draw: st.DrawFn) -> list[Account]:
    out = []
    for name in draw(st.lists(st.sampled_from(("o1", "o2", "o3")), unique=True)):
        out.append(
            Account(
                name,
                draw(st.sampled_from((None, f"Org {name}"))),
                mrr=draw(st.sampled_from((None, 0, 100, 250.5, 1000))),
                created_at=draw(st.none() | moment(-20 * 24, 30 * 24)),
                churned_at=draw(st.none() | moment(-20 * 24, 30 * 24)),
            )
        )
    return out


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    data = Dataset()
    for c in draw(st.lists(st.sampled_from(CONNECTORS), min_size=1, unique=True)):
        data.tickets[c] = draw(tickets())
        data.messages[c] = draw(messages(data.tickets[c]))
        data.ratings[c] = draw(ratings(data.tickets[c]))
        data.metrics[c] = draw(handling(data.tickets[c]))
        data.organizations[c] = draw(accounts())
        data.people[c] = [
            base.Person(a, "agent", draw(st.sampled_from((None, f"Agent {a}"))))
            for a in ("a1", "a2")
        ] + [  # the same email in several connectors: a repeat contact through another one
            base.Person(u, "customer", email=draw(st.sampled_from(EMAILS)))
            for u in REQUESTERS
            if u is not None
        ]
        data.groups[c] = [base.Group("g1", draw(st.sampled_from((None, "Tier 1"))))]
    return data


# A ticket's life: from each status, the statuses it may change to (an agent's reply makes it
# pending, the customer's answer open, a solve may be reopened or closed).
NEXT: dict[str, tuple[str, ...]] = {
    "new": ("open", "pending", "solved"),
    "open": ("pending", "on_hold", "solved", "closed"),
    "pending": ("open", "on_hold", "solved"),
    "on_hold": ("open", "pending", "solved"),
    "solved": ("open", "closed"),
    "closed": (),
}


Life = list[tuple[datetime, str]]  # (instant, status) from the ticket's creation on


def _changes(life: Life) -> list[tuple[datetime, str, str]]:
    """(instant, status before, status after) of each change after the creation."""
    return [(at, before, after) for (_, before), (at, after) in pairwise(life)]


@st.composite
def life(draw: st.DrawFn, created: datetime, horizon: datetime) -> Life:
    """Random status changes from ``created`` up to ``horizon`` (the last sync), whole
    minutes apart or none, so several can share an instant or meet a window's end."""
    out: Life = [(created, "new")]
    steps = st.sampled_from((0, 0, 1, 30, 60, 240, 1440, 4320))
    while NEXT[out[-1][1]] and draw(st.integers(0, 4)) > 0:
        moment_ = out[-1][0] + timedelta(minutes=draw(steps))
        if moment_ > horizon:
            break
        status: str = draw(st.sampled_from(NEXT[out[-1][1]]))
        out.append((moment_, status))
    return out


@st.composite
def lives(draw: st.DrawFn, horizon: datetime) -> tuple[list[base.Ticket], list[base.StatusChange]]:
    """Tickets with random histories, their fields derived as a connector would: status,
    first reply (the first change to pending), first and latest solve (a close straight from
    an unsolved status is a solve too), reopens; now and then a latest solve at odds with the
    history, which the rule's precedence settles. A ticket's history is kept whole, from some
    change on, or not at all (a source that records none)."""
    tickets, changes = [], []
    for i in range(draw(st.integers(0, 12))):
        history = draw(life(draw(moment(-10 * 24, 20 * 24)), horizon))
        solves = [at for at, before, after in _changes(history)
                  if after == "solved" or (after == "closed" and before != "solved")]  # fmt: skip
        replies = [at for at, _, after in _changes(history) if after == "pending"]
        tickets.append(base.Ticket(
            f"t{i}", history[0][0], history[-1][0], history[-1][1],  # type: ignore[arg-type]
            priority=draw(st.sampled_from((None, *base.PRIORITIES))),
            assignee_id=draw(st.sampled_from(AGENTS)),
            first_reply_at=min(replies, default=None),
            first_solved_at=min(solves, default=None) if draw(st.booleans()) else None,
            solved_at=draw(st.sampled_from((max(solves, default=None), None, history[0][0]))),
            reopens=sum(b == "solved" and a == "open" for _, b, a in _changes(history)),
            deleted=draw(st.integers(0, 9)) == 0,
        ))  # fmt: skip
        kept = draw(st.sampled_from(("whole", "whole", "tail", "none")))
        first = draw(st.integers(0, len(history) - 1)) if kept == "tail" else 0
        if kept != "none":
            changes += [base.StatusChange(f"t{i}", at, status) for at, status in history[first:]]  # type: ignore[arg-type]
    return tickets, changes


DAY_HOURS = (
    (),
    ((timedelta(hours=9), timedelta(hours=17)),),
    ((timedelta(0), timedelta(hours=24)),),
    ((timedelta(hours=8), timedelta(hours=12)), (timedelta(hours=13), timedelta(hours=18))),
)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    week = draw(st.lists(st.sampled_from(DAY_HOURS), min_size=7, max_size=7))
    holidays = draw(
        st.sampled_from(((), (date(2026, 4, 3),), (date(2026, 3, 30), date(2026, 4, 6))))
    )
    return BusinessCalendar(draw(st.sampled_from(ZONES)), week, holidays)


@st.composite
def slas(draw: st.DrawFn, business: bool) -> Sla:
    target = st.sampled_from((None, "30m", "1h", "4h", "1d", "3d"))

    def targets() -> PriorityTargets:
        return PriorityTargets(**{p: draw(target) for p in base.PRIORITIES})

    return Sla(
        first_response=targets(),
        resolution=targets(),
        business_hours=business and draw(st.booleans()),
    )


@st.composite
def contexts(draw: st.DrawFn, business: BusinessCalendar | None) -> KpiContext:
    costs = draw(
        st.none()
        | st.builds(
            Costs,
            monthly_support_cost=st.sampled_from((0, 1000, 31337.5)),
            monthly_revenue=st.sampled_from((None, 90000)),
            currency=st.sampled_from(("USD", "EUR")),
        )
    )
    return KpiContext(
        timezone=draw(st.sampled_from(ZONES)),
        business=business,
        sla=draw(st.none() | slas(business is not None)),
        escalation_tags=draw(st.sampled_from(((), ("escalated",), ("vip", "escalated")))),
        costs=costs,
        repeat_window=draw(st.sampled_from((timedelta(days=7), timedelta(days=1), 5 * HOUR))),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    business = draw(st.none() | calendars())
    data = draw(datasets())
    context = draw(contexts(business))
    start = BASE + draw(st.integers(-2 * 24, 25 * 24)) * HOUR
    end = start + draw(st.integers(1, 20 * 24)) * HOUR
    now = start + draw(st.integers(0, (end - start) // HOUR + 10 * 24)) * HOUR
    filters = st.lists(st.sampled_from((*CONNECTORS, "nope")), unique=True, max_size=2)
    return {
        "data": data,
        "window": Window(start, end, context.timezone, now),
        "context": context,
        "connectors": tuple(draw(filters)),
        "by": draw(st.sampled_from((None, *DIMENSIONS))),
    }


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated store to copy: migrating a new file per example costs 0.1 s."""
    path = tmp_path_factory.mktemp("kpi-template") / "kpis.db"
    open_engine(f"sqlite:///{path}").dispose()
    return path


def check(url: str, scenario: dict[str, Any]) -> None:
    """Store the scenario's data at ``url``, compute, and compare with the reference."""
    data: Dataset = scenario["data"]
    engine = open_engine(url)
    try:
        data.store(engine)
        report = compute(
            engine,
            scenario["window"],
            scenario["context"],
            connectors=scenario["connectors"],
            by=scenario["by"],
            wall=scenario.get("wall", WALL),
        )
    finally:
        engine.dispose()
    expected = data.reference(
        scenario["window"],
        scenario["context"],
        scenario["connectors"],
        scenario["by"],
        scenario.get("wall", WALL),
    )
    problems = differences(report_as_data(report), expected)
    assert not problems, "\n".join(problems[:20])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_engine_equals_reference(migrated: Path, scenario: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check(f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}", scenario)


@pytest.fixture(scope="module")
def pg_store(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.fresh()
    yield url
    pg_server.drop(url)


@settings(
    max_examples=25,  # the same engine code as on SQLite: fewer examples find a dialect gap
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_engine_equals_reference_on_postgresql(
    pg_server: PgServer, pg_store: str, scenario: dict[str, Any]
) -> None:
    pg_server.clear(pg_store)
    check(pg_store, scenario)


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """Random ticket histories, a window ending at a random instant, a random ``now``, and a
    wall clock long after (every ``at`` is in the past) or within two minutes of ``at``."""
    horizon = BASE + timedelta(days=draw(st.integers(5, 25)))
    tickets, changes = draw(lives(horizon))
    business = draw(st.none() | calendars())
    zone = draw(st.sampled_from(ZONES))
    context = KpiContext(timezone=zone, business=business, sla=draw(slas(business is not None)))
    start = BASE + draw(st.integers(-5 * 24, 20 * 24)) * HOUR
    end = draw(moment((start - BASE) // HOUR + 1, (start - BASE) // HOUR + 10 * 24))
    now = draw(moment((start - BASE) // HOUR, (end - BASE) // HOUR + 20 * 24))
    at = min(end, now)
    wall = draw(
        st.just(horizon + timedelta(days=30))
        | st.integers(-120, 120).map(lambda s: at + timedelta(seconds=s))
    )
    return {
        "data": Dataset(
            tickets={"zd": tickets},
            changes={"zd": changes},
            messages={"zd": draw(messages(tickets))},
        ),
        "window": Window(start, end, context.timezone, now),
        "context": context,
        "connectors": (),
        "by": draw(st.sampled_from((None, "agent", "priority"))),
        "wall": wall,
    }


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=histories())
def test_backlog_and_sla_from_random_histories_equal_the_reference(
    migrated: Path, scenario: dict[str, Any]
) -> None:
    """The backlog at random past instants (and at the present), reopens included, and both
    SLAs at a random ``now``: the whole report against the reference."""
    with tempfile.TemporaryDirectory() as folder:
        check(f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}", scenario)


@settings(
    max_examples=25,  # on PostgreSQL: the same code as the 80 on SQLite, for a dialect gap
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=histories())
def test_backlog_and_sla_from_random_histories_on_postgresql(
    pg_server: PgServer, pg_store: str, scenario: dict[str, Any]
) -> None:
    pg_server.clear(pg_store)
    check(pg_store, scenario)
