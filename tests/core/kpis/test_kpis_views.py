"""The KPIs of SPEC §6 against numbers worked out by hand from docs/kpis.md.

As in ``test_kpis.py``, every case runs through the engine on each store dialect and through
the independent reference, so a wrong hand value, a wrong reference and a wrong engine all
show. Times are Europe/Berlin wall-clock; early March 2026 is CET (UTC+1). The window is the
week of Monday 2 March 2026 (``W1``) unless a case says otherwise.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cskpi.connectors import base
from cskpi.core.kpis import populations as kpi_data
from cskpi.core.kpis import report as kpis
from cskpi.core.kpis.output import csv_text, detail_text, json_text, value_text
from cskpi.core.kpis.report import compute
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import Dataset, Entry, Report, differences, report_as_data
from tests.core.kpis.test_kpis import (
    NINE_TO_FIVE,
    W1,
    Case,
    at,
    changes,
    count,
    ctx,
    dur,
    expect,
    null,
    rate,
    rating,
    tk,
    zd,
)
from tests.postgres import DIALECTS, new_store, store_maker

H = 3600
D = 86400


def say(ext: str, ticket: str, moment: datetime, role: str, public: bool = True,
        author: str | None = None) -> base.Message:  # fmt: skip
    return base.Message(ext, ticket, moment, role, public, author)  # type: ignore[arg-type]


def stages(n: int, **parts: tuple[float, float, float]) -> Entry:
    """A stage entry from (median, p90, mean) per stage."""
    return {
        "value": {k: m for k, (m, _, _) in parts.items()},
        "median": {k: m for k, (m, _, _) in parts.items()},
        "p90": {k: p for k, (_, p, _) in parts.items()},
        "mean": {k: x for k, (_, _, x) in parts.items()},
        "n": n,
        "unit": "s",
    }


# --- solved tickets: first resolution, stages, reassignment, touches, resolution spread ----

SOLVED = [
    tk("s1", at(3, 3, 10), "solved", first_reply_at=at(3, 3, 11), first_solved_at=at(3, 3, 14),
       solved_at=at(3, 3, 14), agent_replies=1),  # resolution exactly 4 h: 4-24h
    tk("s2", at(3, 2, 9), "solved", first_reply_at=at(3, 2, 10), first_solved_at=at(3, 2, 12),
       solved_at=at(3, 5, 12), agent_replies=3, reopens=1, assignee_changes=2),
    # ↑ reopened: solved on the 2nd, again on the 5th; 3 d 3 h in all
    tk("s3", at(3, 4, 8), "solved", first_solved_at=at(3, 4, 11, 59, 59),
       solved_at=at(3, 4, 11, 59, 59), assignee_changes=1),  # 4 h less a second: <4h; no reply
    tk("s4", at(3, 1, 9), "solved", first_reply_at=at(3, 1, 9, 30), solved_at=at(3, 8, 9),
       agent_replies=2),  # exactly 7 d: >7d; no first solve stamp
    tk("s5", at(3, 6), "solved", first_reply_at=at(3, 6, 1), first_solved_at=at(3, 6, 0, 30),
       solved_at=at(3, 7), agent_replies=2),  # solved before the reply: stage 0; exactly 1 d
    tk("s6", at(3, 2), "closed", solved_at=at(3, 5)),  # exactly 3 d: 3-7d
    tk("o1", at(3, 2), "solved", solved_at=at(3, 9), first_solved_at=at(3, 3)),  # after W
]  # fmt: skip

SOLVED_CASES = [
    Case(
        "first resolution, stages of a reopened ticket, reassignment, touches, spread",
        zd(tickets=SOLVED),
        {
            # first_solved_at - created_at: s5 1800, s2 10800, s3 14399, s1 14400
            "first_resolution_time": dur(12599.5, 14399.7, 41399 / 4, 4),
            # business 9-17 on weekdays: s1 10:00→14:00 4 h; s2 09:00→12:00 3 h; s3 08:00→
            # 11:59:59 2 h 59 m 59 s; s5 Fri 00:00→00:30 0
            "first_resolution_time_business": dur(10799.5, 13320, 35999 / 4, 4),
            # s1, s2, s5 have a first reply and a first solve; s3 and s6 no reply
            "resolution_stages": {
                **stages(
                    3,
                    to_first_reply=(3600, 3600, 3600),
                    to_first_solve=(7200, 10080, 6000),  # s5 0 (max 0), s2 7200, s1 10800
                    after_reopen=(84600, 224280, 114600),  # s1 0, s5 84600, s2 259200
                ),
                "unreplied": 2,
            },
            "reassignment_rate": {**rate(2, 6), "mean_assignees": 1.5},
            "touches": count({"0": 2, "1": 1, "2": 2, "3+": 1}),
            "resolution_distribution": count(
                {"<4h": 1, "4-24h": 1, "1-3d": 1, "3-7d": 2, ">7d": 1}
            ),
        },
        context=ctx(business=NINE_TO_FIVE),
    ),
    Case(
        "nothing solved: the solved-ticket KPIs are null, their counts 0",
        zd(tickets=[tk("x", at(3, 3))]),
        {
            "first_resolution_time": null("s"),
            "resolution_stages": null("s"),
            "time_in_status": null("s"),
            "reassignment_rate": null("%"),
            "repeat_contact_rate": null("%"),
            "touches": count({"0": 0, "1": 0, "2": 0, "3+": 0}),
            "resolution_distribution": count(
                {"<4h": 0, "4-24h": 0, "1-3d": 0, "3-7d": 0, ">7d": 0}
            ),
        },
    ),
]

# --- time in status ------------------------------------------------------------------------

STATUS_TICKETS = [
    tk("h1", at(3, 2, 10), "solved", first_solved_at=at(3, 3, 14), solved_at=at(3, 4, 11)),
    tk("h2", at(3, 5, 9), "solved", solved_at=at(3, 5, 10)),
    tk("h3", at(3, 3), "solved", solved_at=at(3, 4)),  # no history: left out
    tk("h4", at(3, 6), "solved", solved_at=at(3, 6, 6)),
]
STATUS_HISTORY = [
    # new 2 h, open 2 h, pending 1 d, solved, reopened: open 1 h, solved; never on hold
    *changes("h1", (at(3, 2, 12), "open"), (at(3, 2, 14), "pending"), (at(3, 3, 14), "solved"),
             (at(3, 4, 10), "open"), (at(3, 4, 11), "solved")),
    # put on hold and solved in one second: the solve holds, so 0 s on hold; new 1 h
    *changes("h2", (at(3, 5, 9), "new"), (at(3, 5, 10), "on_hold"), (at(3, 5, 10), "solved")),
    # its first change is before its creation (a source's clock): never new; open 6 h; a change
    # after the solve counts for nothing
    *changes("h4", (at(3, 5, 23), "open"), (at(3, 6, 6), "solved"), (at(3, 7), "pending")),
]  # fmt: skip

STATUS_CASES = [
    Case(
        "time in status: a reopen, statuses never visited (0 s), no history (left out)",
        zd(tickets=STATUS_TICKETS, changes=STATUS_HISTORY),
        {
            "time_in_status": stages(
                3,
                new=(3600, 6480, 3600),  # h4 0, h2 3600, h1 7200
                open=(10800, 19440, 10800),  # h2 0, h1 10800, h4 21600
                pending=(0, 69120, 28800),  # 0, 0, h1 86400
                on_hold=(0, 0, 0),
            ),
        },
    ),
]

# --- created tickets: first response spread, unique customers -----------------------------


def answered(ext: str, after: int, **fields: Any) -> base.Ticket:
    created = at(3, 3, 8)
    return tk(ext, created, first_reply_at=created + timedelta(seconds=after), **fields)


CREATED_CASES = [
    Case(
        "first response spread on both sides of every edge; unique requesters",
        zd(
            tickets=[
                answered("f1", H - 1, requester_id="c1"),
                answered("f2", H, requester_id="c1"),
                answered("f3", 4 * H - 1, requester_id="c2"),
                answered("f4", 4 * H),
                answered("f5", 8 * H),
                answered("f6", D - 1),
                answered("f7", D),
                tk("f8", at(3, 4)),  # no reply
                tk("f9", at(3, 8, 12), first_reply_at=at(3, 9, 1)),  # replied after now
                tk("f10", at(2, 20), requester_id="c3"),  # not created in W
            ]
        ),
        {
            "first_response_distribution": count(
                {"<1h": 1, "1-4h": 2, "4-8h": 1, "8-24h": 2, ">24h": 1, "unanswered": 2}
            ),
            "unique_customers": count(2),
        },
    ),
]

# --- eSAT ----------------------------------------------------------------------------------

ESAT_CASES = [
    Case(
        "esat: mean on its scale, top two boxes, n",
        zd(
            ratings=[
                rating("e1", "esat", 5, (1, 5)),
                rating("e2", "esat", 4, (1, 5)),
                rating("e3", "esat", 2, (1, 5)),
                rating("e4", "esat", 5, (1, 5), rated_at=at(3, 9)),  # after W
                rating("c1", "csat", 5, (1, 5)),
            ]
        ),
        {"esat": {"value": 11 / 3, "n": 3, "top2": 200 / 3, "unit": "score"}},
    ),
]

# --- activity, keyed by author with --by agent --------------------------------------------

ACTIVITY = zd(
    people=[base.Person("a1", "agent", "Ana"), base.Person("a2", "agent", "Ben")],
    tickets=[
        tk("t1", at(3, 3), assignee_id="a1"),
        tk("t2", at(3, 4), assignee_id="a2"),
        tk("t3", at(2, 1), assignee_id="a3"),  # an old ticket, worked on in the week
    ],
    messages=[
        say("m1", "t1", at(3, 3, 10), "agent", author="a1"),
        say("m2", "t1", at(3, 3, 11), "agent", public=False, author="a2"),  # a2's note on t1
        say("m3", "t2", at(3, 4), "agent", author="a2"),
        say("m4", "t2", at(3, 4, 1), "agent", author="a2"),
        say("m5", "t2", at(3, 4, 2), "customer", author="c1"),
        say("m6", "t2", at(3, 4, 3), "bot", author="b1"),  # a bot is not an agent
        say("m7", "t1", at(3, 9), "agent", author="a1"),  # at the end: outside W
        say("m8", "t3", at(3, 5), "agent", author="a1"),
        say("m9", "t2", at(3, 6), "agent"),  # no author: a reply, but no agent to count
    ],
)


def activity(public: int, notes: int, touched: int, agents: int) -> dict[str, Entry]:
    return {
        "public_replies": count(public),
        "internal_notes": count(notes),
        "tickets_touched": count(touched),
        "active_agents": count(agents),
    }


ACTIVITY_CASES = [
    Case(
        "activity by author with --by agent; every other KPI by assignee",
        ACTIVITY,
        activity(5, 1, 3, 2),
        by="agent",
        groups=[
            ("zd:a1", "Ana", {**activity(2, 0, 2, 1), "tickets_created": count(1)}),
            ("zd:a2", "Ben", {**activity(2, 1, 2, 1), "tickets_created": count(1)}),
            ("zd:a3", "zd:a3", {**activity(0, 0, 0, 0), "backlog": count(1)}),
            (None, "(unassigned)", {**activity(1, 0, 1, 0), "tickets_created": count(0)}),
        ],
    ),
    Case(
        "activity by any other dimension: a message follows its ticket",
        ACTIVITY,
        activity(5, 1, 3, 2),
        by="connector",
        groups=[("zd", "zd", activity(5, 1, 3, 2))],
    ),
]

# --- awaiting reply, at `at` = 9 March 00:00 ------------------------------------------------

AWAITING = zd(
    tickets=[
        tk("a1", at(3, 8, 20)),
        tk("a2", at(3, 6)),
        tk("a3", at(3, 8, 23, 30)),
        tk("a4", at(3, 1)),
        tk("a5", at(3, 7)),
        tk("a6", at(3, 8)),
        tk("a7", at(3, 5)),
        tk("x", at(3, 2), "solved", solved_at=at(3, 3)),  # not in the backlog
    ],
    messages=[
        say("1", "a1", at(3, 8, 20), "customer"),  # customer last, no agent: 4 h since created
        say("2", "a2", at(3, 6), "customer"),
        say("3", "a2", at(3, 8, 23), "agent"),  # agent last, exactly 1 h ago
        # a3: no message at all, 30 min since created
        say("4", "a4", at(3, 5), "agent"),
        say("5", "a4", at(3, 6), "customer"),  # customer last; 4 d since the agent's
        say("6", "a4", at(3, 8), "agent", public=False),  # a note is not a reply
        say("7", "a4", at(3, 8, 12), "bot"),  # nor is a bot
        say("8", "a5", at(3, 7), "customer"),
        say("9", "a5", at(3, 7), "agent"),  # the same second: the agent answered
        say("10", "a6", at(3, 8), "customer"),
        say("11", "a6", at(3, 9), "agent"),  # at `at`, not before it
        say("12", "a7", at(3, 6), "agent"),  # exactly 3 d ago
        say("13", "a7", at(3, 7), "customer"),
        say("14", "x", at(3, 2), "customer"),
    ],
)


def waiting(agent: tuple[int, ...], customer: tuple[int, ...]) -> Entry:
    labels = ("<1h", "1-4h", "4-24h", "1-3d", ">3d")
    return count(
        {f"agent.{k}": n for k, n in zip(labels, agent, strict=True)}
        | {f"customer.{k}": n for k, n in zip(labels, customer, strict=True)}
    )


AWAITING_CASES = [
    Case(
        "awaiting reply: customer last, agent last, no messages; both sides of the edges",
        AWAITING,
        {
            "backlog": count(7),
            # agent: a3 <1h | a1 4-24h (exactly 4 h) | a6 1-3d (exactly 1 d) | a4, a7 >3d
            # customer: a2 1-4h (exactly 1 h) | a5 1-3d
            "awaiting_reply": waiting((1, 0, 1, 1, 2), (0, 1, 0, 1, 0)),
        },
    ),
    Case(
        "awaiting reply at `now` before the end: only messages before it",
        AWAITING,
        # at 8 March 12:00: a1, a3 not created yet; the agent awaited by a6 (12 h since
        # created), a2 (its agent's mail comes later) and a7 (2 d 12 h), a4 (3 d 12 h); a5
        # awaits the customer (1 d 12 h)
        {"awaiting_reply": waiting((0, 0, 1, 2, 1), (0, 0, 0, 1, 0))},
        window=replace(W1, now=at(3, 8, 12)),
    ),
]

# --- repeat contacts: now = 14 March, repeat window 7 days --------------------------------

REPEATS = Dataset(
    people={
        "zd": [
            base.Person("c1", "customer", email="Ann@Example.com"),
            base.Person("c2", "customer", email="bob@x.io"),
            base.Person("c3", "customer"),
            base.Person("c4", "customer", email="cy@x.io"),
            base.Person("c5", "customer", email="dee@x.io"),
        ],
        "fd": [base.Person("p1", "customer", email=" ann@example.com")],
    },
    tickets={
        "zd": [
            tk("r1", at(3, 2), "solved", requester_id="c1", channel="email",
               solved_at=at(3, 3, 10)),
            tk("r2", at(3, 4, 9), "solved", requester_id="c2", channel="email",
               solved_at=at(3, 4, 12)),
            tk("x2", at(3, 4, 12), requester_id="c2"),  # created at r2's solve: not after it
            tk("gone", at(3, 6), requester_id="c2", deleted=True),  # deleted: no contact
            tk("r3", at(3, 1, 10), "solved", requester_id="c2", channel="chat", solved_at=at(3, 5)),
            tk("x3", at(3, 11, 12, 0, 1), requester_id="c2", channel="email"),
            # ↑ 7 d and a second after r2's solve: outside; inside r3's, through email
            tk("r4", at(3, 2), "solved", requester_id="c3", solved_at=at(3, 3)),  # no email
            tk("r5", at(3, 1), "solved", requester_id="c4", solved_at=at(3, 8, 12)),  # pending
            tk("r6", at(3, 1), "solved", requester_id="c4", solved_at=at(3, 6)),
            tk("y", at(3, 13), requester_id="c4"),  # exactly 7 d after r6's solve: inside
            tk("r7", at(3, 3, 10), "solved", requester_id="c5", solved_at=at(3, 3, 9)),
            # ↑ solved before its creation: it is in its own span, but is no repeat of itself
        ],
        "fd": [tk("f1", at(3, 5), requester_id="p1", channel="email")],  # r1's, via fd
    },
)  # fmt: skip


def repeats(numerator: int, denominator: int, *, cross: int, pending: int) -> Entry:
    return {**rate(numerator, denominator), "cross_channel": cross, "pending": pending}


REPEAT_CASES = [
    Case(
        "repeat contacts: another connector, another channel, edges, pending, no email",
        REPEATS,
        # judged r1 r2 r3 r6 r7; repeats r1 (fd), r3 (x3, email), r6 (y); cross r1, r3
        {"repeat_contact_rate": repeats(3, 5, cross=2, pending=1)},
        window=replace(W1, now=at(3, 14)),
        connectors=("zd",),  # the lookup is in the whole store all the same
    ),
    Case(
        "repeat contacts with --by: each group's solves, looked up in the whole store",
        REPEATS,
        {},
        window=replace(W1, now=at(3, 14)),
        connectors=("zd",),
        by="channel",
        groups=[
            ("chat", "chat", {"repeat_contact_rate": repeats(1, 1, cross=1, pending=0)}),
            ("email", "email", {"repeat_contact_rate": repeats(1, 2, cross=1, pending=0)}),
            (None, "(none)", {"repeat_contact_rate": repeats(1, 2, cross=0, pending=1)}),
        ],
    ),
    Case(
        "repeat contacts: a shorter window from the config",
        REPEATS,
        # 1 d: r1's fd ticket came 1 d 14 h later; r3's 6 d 12 h; r6's 7 d: none repeat; r5
        # (solved 8 March 12:00) is judged now too, r7 as before
        {"repeat_contact_rate": repeats(0, 6, cross=0, pending=0)},
        window=replace(W1, now=at(3, 14)),
        context=ctx(repeat_window=timedelta(days=1)),
    ),
]

# --- backlog time to clear: the 14 days 23 Feb - 8 March ------------------------------------

CLEARING = [
    *(tk(f"b{i}", at(2, 1)) for i in range(4)),  # the backlog: 4
    *(tk(f"d{i}", at(2, 1), "solved", solved_at=at(2, 23 + i)) for i in range(4)),  # 23-26 Feb
    *(tk(f"e{i}", at(2, 1), "closed", solved_at=at(3, 5 + i)) for i in range(3)),  # 5-7 March
    tk("n0", at(2, 23), "solved", solved_at=at(2, 24)),  # created and solved in the 14 days
    tk("n1", at(2, 25), "solved", solved_at=at(2, 26)),
    tk("n2", at(3, 8, 23, 59, 59), "solved", solved_at=at(3, 8, 23, 59, 59)),
    tk("late", at(3, 9), "solved", solved_at=at(3, 9)),  # on `to`'s own day: not counted
    tk("early", at(2, 22, 23, 59, 59), "solved", solved_at=at(2, 22, 23, 59, 59)),  # before
]

EIGHT_DAYS = {"value": 8.0, "backlog": 4, "net_per_day": 0.5, "unit": "days"}
CLEARING_CASES = [
    Case(
        "backlog time to clear: 10 solved, 3 created in the 14 days, 4 in the backlog",
        zd(tickets=CLEARING),
        {"backlog_time_to_clear": EIGHT_DAYS},
    ),
    Case(
        "backlog time to clear: a `to` in the day leaves that day out",
        zd(tickets=CLEARING),
        {"backlog_time_to_clear": EIGHT_DAYS},
        window=replace(W1, end=at(3, 9, 18), now=at(3, 9, 18)),
    ),
    Case(
        "backlog time to clear: growing, null",
        zd(tickets=[*CLEARING, *(tk(f"g{i}", at(3, 1)) for i in range(8))]),
        {"backlog_time_to_clear": null("days")},
    ),
]

CASES = (
    SOLVED_CASES + STATUS_CASES + CREATED_CASES + ESAT_CASES + ACTIVITY_CASES + AWAITING_CASES
    + REPEAT_CASES + CLEARING_CASES
)  # fmt: skip


@pytest.fixture(params=[*DIALECTS, "reference"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The engine on each store dialect, and the reference: every value asserted on all."""

    def through_engine(case: Case) -> Report:
        engine = open_engine(new_store(request, request.param, tmp_path))
        try:
            case.data.store(engine)
            report = compute(engine, case.window, case.context, connectors=case.connectors,
                             by=case.by, wall=case.wall)  # fmt: skip
            return report_as_data(report)
        finally:
            engine.dispose()

    def through_reference(case: Case) -> Report:
        return case.data.reference(case.window, case.context, case.connectors, case.by, case.wall)

    return through_reference if request.param == "reference" else through_engine


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_views_by_hand(case: Case, run: Any) -> None:
    report = run(case)
    problems = expect(report["kpis"], case.expected, "kpis")
    if case.groups is not None:
        by = report["by"]
        assert [(g["key"], g["label"]) for g in by["groups"]] == [
            (key, label) for key, label, _ in case.groups
        ]
        for group, (key, _, want) in zip(by["groups"], case.groups, strict=True):
            problems += expect(group["kpis"], want, f"group {key}")
    assert not problems, "\n".join(problems)


def test_a_growing_backlog_says_by_how_much(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'kpi.db'}")
    try:
        CLEARING_CASES[2].data.store(engine)
        report = compute(engine, W1, ctx())
    finally:
        engine.dispose()
    # 10 solved, 3 + 8 created: 1 more a day over 14 days
    assert report.kpis["backlog_time_to_clear"]["reason"] == "backlog growing by 0.07 a day"


def test_split_and_stage_kpis_render_in_every_format(tmp_path: Path) -> None:
    """The table keeps one short line per KPI; JSON and CSV carry every figure."""
    engine = open_engine(f"sqlite:///{tmp_path / 'kpi.db'}")
    try:
        zd(tickets=SOLVED).store(engine)
        report = compute(engine, W1, ctx())
    finally:
        engine.dispose()
    kpis = report.kpis
    assert value_text("touches", kpis["touches"]) == "2 / 1 / 2 / 1"
    assert detail_text("touches", kpis["touches"]) == "agent replies 0 / 1 / 2 / 3+"
    assert value_text("resolution_stages", kpis["resolution_stages"]) == "1h 00m / 2h 00m / 23h 30m"
    assert detail_text("resolution_stages", kpis["resolution_stages"]) == (
        "to reply / to solve / after reopen median; p90 1h 00m / 2h 48m / 2d 14h; n 3, 2 unreplied"
    )
    assert detail_text("reassignment_rate", kpis["reassignment_rate"]) == (
        "2 / 6, mean assignees 1.50"
    )
    assert value_text("awaiting_reply", kpis["awaiting_reply"]) == "agent 0 / customer 0"
    assert '"unreplied": 2' in json_text(report)
    rows = [line for line in csv_text(report).splitlines() if '"resolution_stages"' in line]
    assert len(rows) == 4  # three stages and unreplied
    assert any('"after_reopen",84600.0,"s",3,84600.0,224280.0,114600.0' in r for r in rows)
    assert any('"unreplied",2,"count"' in r for r in rows)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_case_agrees_with_the_reference_through_the_db_api_reader(
    request: pytest.FixtureRequest, dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole report of every case above, every KPI and group, read through the DB-API
    driver (the in-memory store's reader) instead of ADBC."""
    monkeypatch.setattr(kpis, "load", functools.partial(kpi_data.load, prefer_arrow=False))
    problems = []
    empty_store = store_maker(request, dialect, tmp_path)
    for case in CASES:
        engine = open_engine(empty_store())
        try:
            case.data.store(engine)
            report = compute(engine, case.window, case.context, connectors=case.connectors,
                             by=case.by, wall=case.wall)  # fmt: skip
        finally:
            engine.dispose()
        expected = case.data.reference(
            case.window, case.context, case.connectors, case.by, case.wall
        )
        problems += [f"{case.id}: {d}" for d in differences(report_as_data(report), expected)]
    assert not problems, "\n".join(problems)
