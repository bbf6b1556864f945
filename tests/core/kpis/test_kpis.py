"""The KPI engine against numbers worked out by hand from docs/kpis.md.

Every case runs twice: through the engine (records stored with ``upsert_records``) and
through the independent reference in ``kpi_reference``, so a wrong hand value, a wrong
reference and a wrong engine all show. Times are Europe/Berlin wall-clock unless named
``utc``; early March 2026 is CET (UTC+1), the clocks go forward on Sunday 29 March.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from cskpi.connectors import base
from cskpi.core.config.file import KPI_KEYS, Costs, PriorityTargets, Sla
from cskpi.core.config.periods import Window
from cskpi.core.kpis import formulas
from cskpi.core.kpis import populations as kpi_data
from cskpi.core.kpis import report as kpis
from cskpi.core.kpis.business_hours import BusinessCalendar
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import (
    Account,
    Dataset,
    Entry,
    Report,
    differences,
    report_as_data,
)
from tests.postgres import DIALECTS, new_store, store_maker

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600
D = 86400
DONE = {"status": "solved"}


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A Berlin wall-clock instant in 2026."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=BERLIN)


def tk(ext: str, created: datetime, status: str = "open", **fields: Any) -> base.Ticket:
    return base.Ticket(ext, created, fields.pop("updated_at", created), status, **fields)  # type: ignore[arg-type]


def msg(ext: str, ticket: str, moment: datetime, role: str, public: bool = True) -> base.Message:
    return base.Message(ext, ticket, moment, role, public)  # type: ignore[arg-type]


def rating(
    ext: str, kind: str, score: float, scale: tuple[float, float], **fields: Any
) -> base.Rating:
    moment = fields.pop("rated_at", at(3, 4, 12))
    return base.Rating(ext, kind, score, scale[0], scale[1], moment, **fields)  # type: ignore[arg-type]


def ctx(**fields: Any) -> KpiContext:
    return KpiContext(timezone=BERLIN, **fields)


# The week of Monday 2 March 2026, evaluated at its end.
W1 = Window(at(3, 2), at(3, 9), BERLIN, at(3, 9))
NINE_TO_FIVE = BusinessCalendar(
    BERLIN, [[(timedelta(hours=9), timedelta(hours=17))]] * 5 + [[], []], holidays=[]
)
WITH_HOLIDAY = BusinessCalendar(BERLIN, NINE_TO_FIVE.week, holidays=[at(3, 4).date()])
SLA = Sla(
    first_response=PriorityTargets(urgent="1h", high="4h"),
    resolution=PriorityTargets(urgent="4h", high="8h"),
)


def null(unit: str) -> Entry:
    return {"value": None, "reason": "(any)", "unit": unit}


def count(value: Any) -> Entry:
    return {"value": value, "unit": "count"}


def dur(median: float, p90: float, mean: float, n: int) -> Entry:
    return {"value": median, "median": median, "p90": p90, "mean": mean, "n": n, "unit": "s"}


def rate(numerator: int, denominator: int) -> Entry:
    value = 100 * numerator / denominator
    return {"value": value, "numerator": numerator, "denominator": denominator, "unit": "%"}


def ages(lt1: int, d1_3: int, d3_7: int, gt7: int) -> Entry:
    return count({"<1d": lt1, "1-3d": d1_3, "3-7d": d3_7, ">7d": gt7})


def hours(*cells: tuple[int, int, int]) -> Entry:
    grid = [[0] * 24 for _ in range(7)]
    for weekday, hour, n in cells:
        grid[weekday][hour] = n
    return count(grid)


@dataclass
class Case:
    id: str
    data: Dataset
    expected: dict[str, Entry]
    window: Window = W1
    context: KpiContext = field(default_factory=ctx)
    connectors: tuple[str, ...] = ()
    by: str | None = None
    # (key, label, expected KPI entries) per group, in order
    groups: list[tuple[str | None, str, dict[str, Entry]]] | None = None
    wall: datetime | None = None  # the wall clock; None: the real one (every `at` is past)


def zd(**records: list[Any]) -> Dataset:
    return Dataset(**{kind: {"zd": items} for kind, items in records.items()})


# --- counts and backlog ------------------------------------------------------------------

COUNT_TICKETS = [
    tk("t1", at(3, 1, 10)),
    tk("t2", at(3, 3, 9), "solved", first_solved_at=at(3, 4, 9), solved_at=at(3, 4, 9)),
    tk("t3", at(3, 4, 12), "pending"),
    tk("t4", at(2, 20, 10), "closed", solved_at=at(3, 5, 10)),
    tk("t5", at(3, 5, 6), "solved", first_solved_at=at(3, 10, 10), solved_at=at(3, 10, 10)),
    tk("t6", at(3, 6), "open", first_solved_at=at(3, 7, 10), solved_at=at(3, 7, 10)),
    tk("t7", at(3, 9), "new"),  # created at the end: outside the half-open window
    tk("t8", at(3, 7, 10), deleted=True),
    tk("t9", at(3, 8, 23, 59, 59), "on_hold"),
    tk("t10", at(2, 25, 10), "solved", solved_at=at(3, 2)),  # solved at the start: inside
    tk("t11", at(2, 10, 10), "closed", first_solved_at=at(2, 12, 10), solved_at=at(3, 12, 10)),
    tk("t12", at(2, 15, 10), "solved", solved_at=at(3, 15, 10)),
    tk("t13", at(3, 7, 12)),
]

COUNTS = [
    Case(
        "counts, end = now: live backlog",
        zd(tickets=COUNT_TICKETS),
        {
            "tickets_created": count(6),  # t2 t3 t5 t6 t9 t13 (t7 at end, t8 deleted)
            "tickets_solved": count(3),  # t2, t4 (closed), t10 (at start); t6 is open again
            "backlog_change": count(3),  # 6 - 3
            "backlog": count(5),  # open now: t1 t3 t6 t9 t13
            # ages at now = 03-09 00:00: t9 1 s | t13 1d12h | t3 4d12h, t6 exactly 3d | t1 7d14h
            "backlog_age": ages(1, 1, 2, 1),
            # Tue 09, Wed 12, Thu 06, Fri 00, Sat 12, Sun 23 (local weekday, hour)
            "submissions_by_hour": hours(
                (1, 9, 1), (2, 12, 1), (3, 6, 1), (4, 0, 1), (5, 12, 1), (6, 23, 1)
            ),
        },
        wall=at(3, 9),  # `at` is the real present: the stored status
    ),
    Case(
        "counts, past end: backlog from first_solved_at, else solved_at",
        zd(tickets=COUNT_TICKETS),
        {
            "tickets_created": count(6),
            "tickets_solved": count(3),
            # not solved before 03-09: t1 t3 t9 t13 (never), t5 (03-10), t12 (solved_at 03-15);
            # out: t2 t4 t6 t10 (solved in the week), t11 (first_solved_at 02-12)
            "backlog": count(6),
            # ages at end: t9 1 s | t13 1d12h | t3 4d12h, t5 3d18h | t1 7d14h, t12 21d14h
            "backlog_age": ages(1, 1, 2, 2),
        },
        window=replace(W1, now=at(3, 20)),
    ),
    Case(
        "backlog age is taken at now when now is before the end",
        zd(tickets=[tk("a", at(3, 5)), tk("b", at(3, 1, 12), "pending")]),
        {"backlog": count(2), "backlog_age": ages(1, 0, 1, 0)},  # a: 12 h; b: 4 d
        window=replace(W1, now=at(3, 5, 12)),
    ),
]


def changes(ticket: str, *history: tuple[datetime, str]) -> list[base.StatusChange]:
    return [base.StatusChange(ticket, moment, status) for moment, status in history]  # type: ignore[arg-type]


# Histories around the end of W1 (Monday 9 March 00:00), the instant every case below asks for.
HISTORY_TICKETS = [
    tk("h1", at(3, 1, 10), "solved", first_solved_at=at(3, 3, 10), solved_at=at(3, 12),
       reopens=1),  # solved, reopened on the 6th, solved again after the week
    tk("h2", at(3, 2, 10), "open", first_solved_at=at(3, 4), solved_at=at(3, 4), reopens=1),
    # ↑ solved on the 4th, reopened only after the week
    tk("h3", at(3, 3, 10), "open", first_solved_at=at(3, 5), solved_at=at(3, 5)),  # no history
    tk("h4", at(3, 6, 12), "new"),  # no history, never solved
    tk("h5", at(3, 8, 18), "solved", solved_at=at(3, 10)),  # no history, solved after the week
    tk("h6", at(3, 4), "closed", first_solved_at=at(3, 9), solved_at=at(3, 9)),  # solved at `at`
    tk("h7", at(3, 4), "open", first_solved_at=at(3, 5, 10), solved_at=at(3, 5, 10)),
    # ↑ a reply sent as solved: pending and solved in one second, reopened after the week
    tk("h8", at(3, 9), "new"),  # created at `at`: not yet there
    tk("h9", at(3, 8), "open"),  # its history starts only after `at`
    tk("h10", at(3, 2), "closed", solved_at=at(3, 7)),  # solved on the 7th by its own stamp,
    # though its history says open: the latest solve is trusted
    tk("h11", at(3, 4, 6), "open"),  # no solve stamp: never solved, though its history says
    # solved on the 5th
]  # fmt: skip
HISTORY = [
    *changes("h1", (at(3, 1, 10), "new"), (at(3, 3, 10), "solved"), (at(3, 6), "open"),
             (at(3, 7), "pending"), (at(3, 12), "solved")),
    *changes("h2", (at(3, 2, 10), "new"), (at(3, 4), "solved"), (at(3, 10), "open")),
    *changes("h6", (at(3, 4), "open"), (at(3, 9), "solved"), (at(3, 11), "closed")),
    *changes("h7", (at(3, 4), "new"), (at(3, 5, 10), "pending"), (at(3, 5, 10), "solved"),
             (at(3, 10), "open")),
    *changes("h9", (at(3, 10), "pending")),
    *changes("h10", (at(3, 2), "open")),
    *changes("h11", (at(3, 4, 6), "new"), (at(3, 5), "solved"), (at(3, 10), "open")),
]  # fmt: skip
# In at 9 March 00:00: h1 (pending since its reopen on the 6th), h4, h5 (solved after),
# h9 (no change by then, never solved), h11.
# Ages: h1 7d14h | h4 2d12h, h9 exactly 1d | h11 4d18h | h5 6h.
PAST_BACKLOG = {"backlog": count(5), "backlog_age": ages(1, 2, 1, 1)}

BACKLOG_HISTORY = [
    Case(
        "backlog at a past end from status history (--to D --now D)",
        zd(tickets=HISTORY_TICKETS, changes=HISTORY),
        PAST_BACKLOG,
        window=replace(W1, now=at(3, 9)),
        wall=at(3, 20),
    ),
    Case(
        "backlog at a past end from status history, evaluated later",
        zd(tickets=HISTORY_TICKETS, changes=HISTORY),
        PAST_BACKLOG,
        window=replace(W1, now=at(3, 20)),
        wall=at(3, 20),
    ),
    Case(
        "backlog at the real present: the stored status",
        zd(tickets=HISTORY_TICKETS, changes=HISTORY),
        # open now: h2 h3 h4 h7 h9 h11; ages h2 6d14h, h3 5d14h, h7 5d, h11 4d18h | h4 2d12h,
        # h9 1d
        {"backlog": count(6), "backlog_age": ages(0, 2, 4, 0)},
        window=replace(W1, now=at(3, 9)),
        wall=at(3, 9, 0, 0, 30),  # half a minute after `at`: still the present
    ),
]

# --- durations ---------------------------------------------------------------------------


def replied(ext: str, created: datetime, after: int, **fields: Any) -> base.Ticket:
    return tk(ext, created, first_reply_at=created + timedelta(seconds=after), **fields)


def solved(ext: str, created: datetime, after: int, **fields: Any) -> base.Ticket:
    return tk(ext, created, "solved", solved_at=created + timedelta(seconds=after), **fields)


DURATIONS = [
    Case(
        "durations: first response n=4, resolution n=5",
        zd(
            tickets=[
                replied("d1", at(3, 2, 10), 60),
                replied("d2", at(3, 3, 10), 120),
                replied("d3", at(3, 4, 10), 300),
                replied("d4", at(3, 5, 10), 3600),
                tk("d5", at(3, 5, 11)),  # no reply: left out
                replied("d6", at(2, 27, 10), 5),  # created before the window
                replied("d7", at(3, 6, 10), 10, deleted=True),
                solved("r1", at(3, 2, 8), H),
                solved("r2", at(3, 2, 8), 2 * H),
                solved("r3", at(3, 3, 8), 2 * H),
                solved("r4", at(3, 3, 8), D),
                solved("r5", at(3, 1, 12), 2 * D),  # created before, solved inside
                tk("r6", at(3, 2, 9), solved_at=at(3, 4)),  # reopened: not solved
                solved("r7", at(3, 8, 9), 2 * D),  # solved after the end
            ]
        ),
        {
            # [60, 120, 300, 3600]: h = 3·0.5 = 1.5 → 120 + 0.5·180 = 210;
            # p90 h = 2.7 → 300 + 0.7·3300 = 2610; mean 4080/4 = 1020
            "first_response_time": dur(210, 2610, 1020, 4),
            # [3600, 7200, 7200, 86400, 172800]: median x[2] = 7200;
            # p90 h = 3.6 → 86400 + 0.6·86400 = 138240; mean 277200/5 = 55440
            "resolution_time": dur(7200, 138240, 55440, 5),
            "first_response_time_business": null("s"),  # no calendar
            "resolution_time_business": null("s"),
        },
    ),
    Case(
        "durations: n=5 with a reply stamped before creation, n=1",
        zd(
            tickets=[
                replied("d1", at(3, 2, 10), -30),  # not clamped
                replied("d2", at(3, 3, 10), 60),
                replied("d3", at(3, 4, 10), 120),
                replied("d4", at(3, 5, 10), 300),
                replied("d5", at(3, 6, 10), 3600),
                solved("r1", at(3, 2, 8), 5000),
            ]
        ),
        {
            # [-30, 60, 120, 300, 3600]: median 120; p90 h = 3.6 → 300 + 0.6·3300 = 2280;
            # mean 4050/5 = 810
            "first_response_time": dur(120, 2280, 810, 5),
            "resolution_time": dur(5000, 5000, 5000, 1),  # lo = n-1 → x[0]
        },
    ),
    Case(
        "durations: n=2",
        zd(tickets=[replied("d1", at(3, 2, 10), 100), replied("d2", at(3, 3, 10), 200)]),
        {"first_response_time": dur(150, 190, 150, 2)},  # p90 h = 0.9 → 100 + 0.9·100
    ),
]

# --- response_time -----------------------------------------------------------------------

R1, R2 = at(3, 3, 10), at(3, 4, 9)
RESPONSES = [
    msg("m1", "R1", R1, "customer"),
    msg("m2", "R1", R1 + timedelta(minutes=5), "customer"),
    msg("m3", "R1", R1 + timedelta(minutes=6), "bot"),  # bots are not agents
    msg("m4", "R1", R1 + timedelta(minutes=7), "agent", public=False),  # internal note
    msg("m5", "R1", R1 + timedelta(minutes=20), "agent"),  # answers m1 (1200) and m2 (900)
    msg("m6", "R1", R1 + timedelta(minutes=30), "customer", public=False),
    msg("m7", "R1", R1 + timedelta(hours=1), "customer"),
    msg("m8", "R1", R1 + timedelta(hours=1), "agent"),  # same second: answers m7 (0)
    msg("m9", "R1", R1 + timedelta(hours=2), "customer"),  # never answered: left out
    msg("m10", "R1", R1 + timedelta(hours=2, minutes=30), "system"),
    msg("n1", "R2", R2, "customer"),
    msg("n2", "R2", R2 + timedelta(minutes=10), "agent"),  # 600
    msg("n3", "R2", R2 + timedelta(minutes=20), "customer"),
    msg("n4", "R2", R2 + timedelta(minutes=30), "bot"),
    msg("n5", "R2", R2 + timedelta(minutes=50), "agent"),  # 1800
    msg("o1", "R3", at(3, 2, 10), "customer"),  # R3 was created before the window
    msg("o2", "R3", at(3, 2, 10, 1), "agent"),
    msg("p1", "R4", at(3, 4, 10), "customer"),  # R4 is deleted
    msg("p2", "R4", at(3, 4, 10, 0, 5), "agent"),
]

RESPONSE_TIME = [
    Case(
        "response_time: consecutive customer messages, bots, notes, same-second reply",
        zd(
            tickets=[
                tk("R1", at(3, 3, 9, 55)),
                tk("R2", at(3, 4, 8, 55)),
                tk("R3", at(2, 27)),
                tk("R4", at(3, 4, 9), deleted=True),
            ],
            messages=RESPONSES,
        ),
        # [0, 600, 900, 1200, 1800]: median 900; p90 h = 3.6 → 1200 + 0.6·600 = 1560;
        # mean 4500/5 = 900
        {"response_time": dur(900, 1560, 900, 5)},
    ),
    Case(
        "response_time: no message events",
        zd(tickets=[tk("R1", at(3, 3))], messages=[msg("o1", "R3", at(3, 3), "customer")]),
        {"response_time": null("s")},
    ),
    Case(
        "response_time: messages but no answer",
        zd(tickets=[tk("R1", at(3, 3))], messages=[msg("m1", "R1", at(3, 3, 1), "customer")]),
        {"response_time": null("s")},
    ),
]

# --- fcr, reopens, escalations, replies per solved ----------------------------------------

IN_W = at(3, 4, 12)
SOLVED_TICKETS = [
    tk("f1", at(3, 3), "solved", solved_at=IN_W, agent_replies=1, tags=["vip"]),
    tk("f2", at(3, 3), "solved", solved_at=IN_W, agent_replies=1, reopens=1),
    tk("f3", at(3, 3), "closed", solved_at=IN_W, agent_replies=3, group_changes=1),
    tk("f4", at(3, 3), "solved", solved_at=IN_W, tags=["escalated"]),  # no reply
    tk("f5", at(3, 3), "solved", solved_at=IN_W, agent_replies=2, reopens=2, tags=["vip"]),
    tk("f6", at(3, 3), "open", solved_at=IN_W, agent_replies=1),  # reopened: not solved
    tk("f7", at(3, 3), "solved", solved_at=IN_W, agent_replies=1, deleted=True),
]

SOLVED_RATES = [
    Case(
        "fcr, reopen, escalation by group change or tag, replies per solved",
        zd(tickets=SOLVED_TICKETS),
        {
            "tickets_solved": count(5),  # f1..f5
            "fcr_rate": rate(1, 4),  # of f1 f2 f3 f5 (replied): f1
            "reopen_rate": rate(2, 5),  # f2, f5
            "escalation_rate": rate(2, 5),  # f3 (group change), f4 (tag "escalated")
            "agent_replies_per_solved": {
                "value": 7 / 5,  # (1 + 1 + 3 + 0 + 2) / 5
                "numerator": 7,
                "denominator": 5,
                "unit": "ratio",
            },
        },
    ),
    Case(
        "escalation tags from the config",
        zd(tickets=SOLVED_TICKETS),
        {"escalation_rate": rate(3, 5)},  # f1, f5 (tag "vip"), f3 (group change)
        context=ctx(escalation_tags=("vip",)),
    ),
    Case(
        "escalation tags that JSON escapes, and one merely inside another tag",
        zd(
            tickets=[
                tk("e1", at(3, 3), "solved", solved_at=IN_W, tags=["éscalade"]),
                tk("e2", at(3, 3), "solved", solved_at=IN_W, tags=['say "hi"']),
                tk("e3", at(3, 3), "solved", solved_at=IN_W, tags=["vip-plus"]),
                tk("e4", at(3, 3), "solved", solved_at=IN_W, tags=["vip", "x"]),
            ]
        ),
        {"escalation_rate": rate(3, 4)},  # e1, e2, e4; "vip-plus" is not "vip"
        context=ctx(escalation_tags=("éscalade", 'say "hi"', "vip")),
    ),
    Case(
        "a plain escalation tag found by its text first, but only as a whole tag",
        zd(
            tickets=[
                tk("p1", at(3, 3), "solved", solved_at=IN_W, tags=["vip-plus"]),
                tk("p2", at(3, 3), "solved", solved_at=IN_W, tags=["a", "vip"]),
            ]
        ),
        {"escalation_rate": rate(1, 2)},  # p2
        context=ctx(escalation_tags=("vip",)),
    ),
    Case(
        "no escalation tags configured: group changes only",
        zd(tickets=SOLVED_TICKETS),
        {"escalation_rate": rate(1, 5)},  # f3 (group change)
        context=ctx(escalation_tags=()),
    ),
    Case(
        "no tickets solved",
        zd(tickets=[tk("x", at(3, 3), agent_replies=2)]),
        {
            "fcr_rate": null("%"),
            "reopen_rate": null("%"),
            "escalation_rate": null("%"),
            "agent_replies_per_solved": null("ratio"),
            "resolution_time": null("s"),
        },
    ),
]

# --- SLA ---------------------------------------------------------------------------------

SLA_TICKETS = [
    # urgent 1h / 4h
    tk("s1", at(3, 2, 10), "solved", priority="urgent", first_reply_at=at(3, 2, 10, 30),
       solved_at=at(3, 2, 13)),  # fr 30m met; res 3h met
    tk("s2", at(3, 3, 10), "solved", priority="urgent", first_reply_at=at(3, 3, 11),
       solved_at=at(3, 3, 14, 0, 1)),  # fr exactly 1h met; res 4h+1s breached
    # high 4h / 8h
    tk("s3", at(3, 4, 10), priority="high", first_reply_at=at(3, 4, 14, 0, 1)),
    # ↑ fr 4h+1s breached; unsolved 4d2h at now > 8h: breached
    tk("s4", at(3, 8, 9), priority="high"),  # 3h at now: left out of both
    tk("s5", at(3, 8, 10), priority="urgent"),  # 2h unanswered > 1h: breached; res left out
    tk("s6", at(3, 3), priority="normal"),  # no target
    tk("s7", at(3, 3)),  # no priority
    tk("s8", at(2, 27), priority="urgent"),  # created before the window
    tk("s9", at(3, 5, 10), "solved", priority="high", first_reply_at=at(3, 5, 12),
       solved_at=at(3, 5, 17)),  # fr 2h met; res 7h met
    tk("s10", at(3, 5, 10), priority="urgent", deleted=True),
    tk("s11", at(3, 6, 8), "pending", priority="high", first_reply_at=at(3, 6, 8, 30),
       solved_at=at(3, 6, 9)),  # fr met; reopened, so unsolved: 52h at now > 8h breached
]  # fmt: skip

# Friday 6 March 16:30 to Monday 9 March, 9-17 on weekdays.
BUSINESS_SLA_TICKETS = [
    tk("b1", at(3, 6, 16, 30), "solved", priority="urgent", first_reply_at=at(3, 9, 9, 20),
       solved_at=at(3, 9, 9, 50)),  # business: fr 30m + 20m met; res 30m + 50m met
    tk("b2", at(3, 6, 16), priority="urgent"),  # business 1h + 1h at now: fr breached;
    # res 2h ≤ 4h left out
    tk("b3", at(3, 9, 9, 30), priority="urgent"),  # 30 min at now: left out of both
]  # fmt: skip

# Judged at now = Monday 9 March 00:30, half an hour after W1's end (urgent 1h / 4h).
SLA_AT_NOW_TICKETS = [
    tk("f1", at(3, 8, 23, 20), priority="urgent"),  # waiting 70m at now: fr breached
    # (40m at the end); res left out
    tk("f2", at(3, 8, 23, 45), priority="urgent"),  # waiting 45m at now: left out of both
    tk("f3", at(3, 8, 23, 50), priority="urgent", first_reply_at=at(3, 9, 0, 40)),
    # ↑ replied after now, within target: not known at now, 40m waiting: left out of both
    tk("f4", at(3, 8, 20), "solved", priority="urgent", first_reply_at=at(3, 9, 2),
       solved_at=at(3, 9, 1)),  # replied late after the end (and now): fr breached;
    # solved after now, 4h30m at now: res breached
    tk("f5", at(3, 8, 10), "solved", priority="urgent", first_reply_at=at(3, 8, 10, 30),
       solved_at=at(3, 8, 12)),  # met both
    tk("f6", at(3, 8, 22), "solved", priority="urgent", solved_at=at(3, 9, 0, 50)),
    # ↑ no reply, 2h30m at now: fr breached; solved after now, 2h30m at now: res left out
    tk("f7", at(3, 6, 10), priority="high", first_reply_at=at(3, 6, 10, 30)),
    # ↑ fr met; unsolved 2d14h30m at now > 8h: res breached
]  # fmt: skip

# The week W1 evaluated five weeks later: 87 tickets answered in 30 min and solved in 2 h,
# 14 answered and solved late after the week's end, and 2 created half an hour before the
# end, still waiting: within target at the end, breached at now (urgent 1h / 4h).
FIVE_WEEKS_AGO = [
    *(tk(f"m{i}", at(3, 2, 8) + i * timedelta(hours=1), "solved", priority="urgent",
         first_reply_at=at(3, 2, 8, 30) + i * timedelta(hours=1),
         solved_at=at(3, 2, 10) + i * timedelta(hours=1)) for i in range(87)),
    *(tk(f"l{i}", at(3, 8, 20, i), "solved", priority="urgent", first_reply_at=at(3, 9, 2),
         solved_at=at(3, 9, 5)) for i in range(14)),
    *(tk(f"w{i}", at(3, 8, 23, 30), priority="urgent") for i in range(2)),
]  # fmt: skip

SLA_CASES = [
    Case(
        "sla: met, breached, unanswered within and past target, no target",
        zd(tickets=SLA_TICKETS),
        {
            "sla_first_response": rate(4, 6),  # met s1 s2 s9 s11; breached s3 s5
            "sla_resolution": rate(2, 5),  # met s1 s9; breached s2 s3 s11
        },
        window=replace(W1, now=at(3, 8, 12)),
        context=ctx(sla=SLA),
    ),
    Case(
        "sla in business time",
        zd(tickets=BUSINESS_SLA_TICKETS),
        {"sla_first_response": rate(1, 2), "sla_resolution": rate(1, 1)},
        window=Window(at(3, 2), at(3, 16), BERLIN, at(3, 9, 10)),
        context=ctx(sla=SLA.model_copy(update={"business_hours": True}), business=NINE_TO_FIVE),
    ),
    Case(
        "sla in calendar time, same tickets",
        zd(tickets=BUSINESS_SLA_TICKETS),
        # b1 fr 64h50m, res 65h20m breached; b2 66h breached both; b3 30m left out
        {"sla_first_response": rate(0, 2), "sla_resolution": rate(0, 2)},
        window=Window(at(3, 2), at(3, 16), BERLIN, at(3, 9, 10)),
        context=ctx(sla=SLA, business=NINE_TO_FIVE),
    ),
    Case(
        "sla judged at now, after the end: waiting, replied after now, late after the end",
        zd(tickets=SLA_AT_NOW_TICKETS),
        {
            "sla_first_response": rate(2, 5),  # met f5 f7; breached f1 f4 f6
            "sla_resolution": rate(1, 3),  # met f5; breached f4 f7
        },
        window=replace(W1, now=at(3, 9, 0, 30)),
        context=ctx(sla=SLA),
    ),
    Case(
        "sla of a week five weeks ago: tickets still waiting are breaches by now",
        zd(tickets=FIVE_WEEKS_AGO),
        # 87 met of 101 judged at the week's end (86.1 %); 87 of 103 at now (84.5 %)
        {"sla_first_response": rate(87, 103), "sla_resolution": rate(87, 103)},
        window=replace(W1, now=at(4, 13)),
        context=ctx(sla=SLA),
    ),
    Case(
        "sla not configured",
        zd(tickets=SLA_TICKETS),
        {"sla_first_response": null("%"), "sla_resolution": null("%")},
    ),
]

# --- business time -----------------------------------------------------------------------

BUSINESS_CASES = [
    Case(
        "business durations: weekend, holiday, before opening",
        zd(
            tickets=[
                # Tue 16:00 → Thu 10:00 with Wed 4 March a holiday: 1h + 0 + 1h
                tk("x1", at(3, 3, 16), first_reply_at=at(3, 5, 10)),
                tk("x2", at(3, 7, 12), first_reply_at=at(3, 9, 9, 30)),  # Sat → Mon: 30m
                tk("x3", at(3, 2, 8), first_reply_at=at(3, 2, 8, 30)),  # before opening: 0
                tk("x4", at(3, 2, 10), first_reply_at=at(3, 2, 12, 15)),  # 2h15m
                # Fri 15:00 → Tue 11:00: 2h + 8h + 2h
                tk("y1", at(3, 6, 15), "solved", solved_at=at(3, 10, 11)),
                # Tue 12:00 → Thu 12:00 over the holiday: 5h + 0 + 3h
                tk("y2", at(3, 3, 12), "closed", solved_at=at(3, 5, 12)),
            ]
        ),
        {
            # [0, 1800, 7200, 8100]: median 4500; p90 h = 2.7 → 7200 + 0.7·900 = 7830;
            # mean 17100/4 = 4275
            "first_response_time_business": dur(4500, 7830, 4275, 4),
            # [28800, 43200]: median 36000; p90 28800 + 0.9·14400 = 41760
            "resolution_time_business": dur(36000, 41760, 36000, 2),
            # calendar: [1800, 8100, 151200, 163800]: median (8100+151200)/2 = 79650;
            # p90 151200 + 0.7·12600 = 160020; mean 324900/4 = 81225
            "first_response_time": dur(79650, 160020, 81225, 4),
        },
        window=Window(at(3, 2), at(3, 16), BERLIN, at(3, 16)),
        context=ctx(business=WITH_HOLIDAY),
    ),
    Case(
        # docs/kpis.md: "Durations are not clamped: a reply stamped before creation counts
        # negative". Read as: business time of [reply, created) with a minus sign.
        "business durations of a reply or solve stamped before creation are negative",
        zd(
            tickets=[
                tk("x", at(3, 2, 11), first_reply_at=at(3, 2, 10)),  # Mon 10:00 < 11:00
                tk("y", at(3, 3, 9, 30), "solved", solved_at=at(3, 2, 16, 30)),  # -30m - 30m
            ]
        ),
        {
            "first_response_time": dur(-3600, -3600, -3600, 1),
            "first_response_time_business": dur(-3600, -3600, -3600, 1),
            "resolution_time_business": dur(-3600, -3600, -3600, 1),
        },
        context=ctx(business=NINE_TO_FIVE),
    ),
]

# --- ratings -----------------------------------------------------------------------------


def csat_case(
    name: str, scale: tuple[float, float], scores: list[float], numerator: int, mean: float
) -> Case:
    ratings = [rating(f"r{i}", "csat", s, scale) for i, s in enumerate(scores)]
    value = 100 * numerator / len(scores)
    entry = {"value": value, "numerator": numerator, "n": len(scores), "mean": mean, "unit": "%"}
    return Case(name, zd(ratings=ratings), {"csat": entry})


RATING_CASES = [
    # 5-point: 4 and 5 are positive; mean of (s-1)/4 = (1 + .75 + .5 + 0)/4
    csat_case("csat 5-point", (1, 5), [5, 4, 3, 1], 2, (1 + 0.75 + 0.5 + 0) / 4),
    # 2-point good/bad: good only; mean (1 + 1 + 0)/3
    csat_case("csat 2-point", (0, 1), [1, 1, 0], 2, 2 / 3),
    # 10-point: 9 and 10; mean of (s-1)/9 = (9 + 8 + 7 + 0)/9/4
    csat_case("csat 10-point", (1, 10), [10, 9, 8, 1], 2, (9 + 8 + 7 + 0) / 9 / 4),
    # 3-point: the top box only; mean (1 + .5)/2
    csat_case("csat 3-point", (1, 3), [3, 2], 1, 0.75),
    # 0-10 has 11 points: 9 and 10; mean (1 + .9 + .8)/3
    csat_case("csat 11-point", (0, 10), [10, 9, 8], 2, (1 + 0.9 + 0.8) / 3),
    Case(
        "csat keeps ratings without a stored ticket, drops deleted tickets' and other kinds",
        zd(
            tickets=[tk("gone", at(3, 3), deleted=True), tk("ok", at(2, 1))],
            ratings=[
                rating("a", "csat", 5, (1, 5), ticket_id="ok"),
                rating("b", "csat", 2, (1, 5), ticket_id="never-synced"),
                rating("c", "csat", 5, (1, 5), ticket_id="gone"),  # deleted ticket
                rating("d", "csat", 5, (1, 5), rated_at=at(3, 9)),  # at the end
                rating("e", "esat", 5, (1, 5)),
                rating("f", "nps", 10, (0, 10)),
            ],
        ),
        # a, b: 1 positive of 2; mean (1 + .25)/2
        {"csat": {"value": 50.0, "numerator": 1, "n": 2, "mean": 0.625, "unit": "%"}},
    ),
    Case(
        "nps and ces",
        zd(
            ratings=[
                rating(f"n{i}", "nps", s, (0, 10)) for i, s in enumerate([10, 9, 8, 7, 6, 0, 9])
            ]
            + [rating(f"c{i}", "ces", s, (1, 7)) for i, s in enumerate([7, 6, 5, 2])]
        ),
        {
            # promoters 10 9 9, passives 8 7, detractors 6 0: 100·(3 - 2)/7
            "nps": {
                "value": 100 / 7,
                "n": 7,
                "promoters": 3,
                "passives": 2,
                "detractors": 2,
                "unit": "score",
            },
            # mean (7 + 6 + 5 + 2)/4 = 5; top two boxes of 7 points: 7, 6 → 50 %
            "ces": {"value": 5.0, "n": 4, "top2": 50.0, "unit": "score"},
            "csat": null("%"),
        },
    ),
]

# --- money and accounts ------------------------------------------------------------------

# 25 Jan - 4 Feb 2026 in Berlin: 7 of January's 31 days and 3 of February's 28.
W_MONTHS = Window(at(1, 25), at(2, 4), BERLIN, at(2, 4))
MONTH_SOLVED = [tk(f"s{i}", at(1, 20), "solved", solved_at=at(1, 26 + i)) for i in range(4)]
ACCOUNTS = [
    Account("o1", "One", mrr=400000),  # no created_at: active
    Account("o2", "Two", mrr=467990, created_at=at(1, 1) - timedelta(days=200),
            churned_at=at(2, 1)),  # active at start, churned inside
    Account("o3", mrr=1000, created_at=at(1, 26), churned_at=at(2, 2)),  # created after start
    Account("o4", mrr=5000, churned_at=at(1, 10)),  # churned before start
    Account("o5", mrr=0),
    Account("o6"),
    Account("o7", mrr=10, churned_at=at(1, 25)),  # churned at start: active, and churned in W
]  # fmt: skip

MONEY_CASES = [
    Case(
        "cost prorated over a month boundary, revenue from the config",
        zd(tickets=MONTH_SOLVED),
        {
            # cost = 86800·7/31 + 86800·3/28 = 19600 + 9300 = 28900; 4 solved
            "cost_per_ticket": {
                "value": 7225.0,
                "cost": 28900.0,
                "tickets_solved": 4,
                "unit": "EUR",
            },
            # revenue = 868000·(7/31 + 3/28) = 196000 + 93000 = 289000
            "cost_revenue_ratio": {
                "value": 10.0,
                "cost": 28900.0,
                "revenue": 289000.0,
                "unit": "%",
            },
            "churn_rate": null("%"),  # no organizations
        },
        window=W_MONTHS,
        context=ctx(
            costs=Costs(monthly_support_cost=86800, monthly_revenue=868000, currency="EUR")
        ),
    ),
    Case(
        "revenue from mrr of organizations active at start; churn",
        zd(tickets=MONTH_SOLVED, organizations=ACCOUNTS),
        {
            # active: o1 + o2 + o7 = 868000 a month
            "cost_revenue_ratio": {
                "value": 10.0,
                "cost": 28900.0,
                "revenue": 289000.0,
                "unit": "%",
            },
            "churn_rate": rate(2, 3),  # of o1 o2 o7: o2, o7
            "cost_per_ticket": {
                "value": 7225.0,
                "cost": 28900.0,
                "tickets_solved": 4,
                "unit": "USD",
            },
        },
        window=W_MONTHS,
        context=ctx(costs=Costs(monthly_support_cost=86800)),
    ),
    Case(
        "cost prorated by seconds across a DST change",
        zd(tickets=[tk("s", at(3, 1), "solved", solved_at=at(3, 20))]),
        # March: 16 days - 1 h of its 31 days - 1 h = 1378800/2674800 s; April 5/30 days:
        # 2674800·1378800/2674800 + 2674800/6 = 1378800 + 445800
        {
            "cost_per_ticket": {
                "value": 1824600.0,
                "cost": 1824600.0,
                "tickets_solved": 1,
                "unit": "USD",
            }
        },
        window=Window(at(3, 16), at(4, 6), BERLIN, at(4, 6)),
        context=ctx(costs=Costs(monthly_support_cost=2674800)),
    ),
    Case(
        "no costs configured, no solved tickets",
        zd(organizations=ACCOUNTS),
        {
            "cost_per_ticket": null("USD"),
            "cost_revenue_ratio": null("%"),
            "churn_rate": rate(2, 3),
        },
        window=W_MONTHS,
    ),
    Case(
        "costs configured, nothing solved, no revenue",
        zd(tickets=[]),
        {"cost_per_ticket": null("USD"), "cost_revenue_ratio": null("%")},
        window=W_MONTHS,
        context=ctx(costs=Costs(monthly_support_cost=100)),
    ),
]

# --- submissions by hour across DST -------------------------------------------------------


def _utc(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


SUBMISSIONS = [
    Case(
        "submissions by local weekday and hour over the spring-forward weekend",
        zd(
            tickets=[
                tk("a", _utc(3, 23, 8, 30)),  # Mon 09:30 CET
                tk("b", _utc(3, 29, 0, 30)),  # Sun 01:30 CET
                tk("c", _utc(3, 29, 1, 30)),  # Sun 03:30 CEST (02:xx does not exist)
                tk("d", _utc(3, 28, 23, 30)),  # Sun 00:30 CET
                tk("e", _utc(3, 22, 23, 30)),  # Mon 00:30 CET, the first hour of the window
                tk("f", _utc(3, 22, 22, 59, 59)),  # Sun 22 Mar 23:59:59: before the window
                tk("g", _utc(3, 25, 14, 10)),  # Wed 15:10 CET
                tk("h", _utc(3, 25, 14, 50)),  # Wed 15:50 CET
                tk("i", _utc(3, 29, 21, 59, 59)),  # Sun 23:59:59 CEST, the last second
            ]
        ),
        {
            "tickets_created": count(8),
            "submissions_by_hour": hours(
                (0, 9, 1), (6, 1, 1), (6, 3, 1), (6, 0, 1), (0, 0, 1), (2, 15, 2), (6, 23, 1)
            ),
        },
        window=Window(at(3, 23), at(3, 30), BERLIN, at(3, 30)),
    ),
]

# --- empty, deleted, connectors ------------------------------------------------------------

EVERYTHING = ctx(business=NINE_TO_FIVE, sla=SLA, costs=Costs(monthly_support_cost=1000))
EMPTY = {
    "tickets_created": count(0),
    "tickets_solved": count(0),
    "backlog": count(0),
    "backlog_change": count(0),
    "backlog_age": ages(0, 0, 0, 0),
    "submissions_by_hour": hours(),
    "first_response_time": null("s"),
    "first_response_time_business": null("s"),
    "response_time": null("s"),
    "resolution_time": null("s"),
    "resolution_time_business": null("s"),
    "fcr_rate": null("%"),
    "reopen_rate": null("%"),
    "escalation_rate": null("%"),
    "sla_first_response": null("%"),
    "sla_resolution": null("%"),
    "csat": null("%"),
    "nps": null("score"),
    "ces": null("score"),
    "agent_replies_per_solved": null("ratio"),
    "cost_per_ticket": null("USD"),
    "cost_revenue_ratio": null("%"),
    "churn_rate": null("%"),
}
DELETED = tk(
    "x",
    at(3, 3, 9),
    "solved",
    priority="urgent",
    first_reply_at=at(3, 3, 10),
    solved_at=at(3, 4),
    agent_replies=1,
    deleted=True,
)
DELETED_OPEN = tk("y", at(3, 3, 9), priority="urgent", deleted=True)

TWO_CONNECTORS = Dataset(
    tickets={
        "zd": [tk("1", at(3, 3)), tk("2", at(3, 4))],
        "fd": [tk("1", at(3, 3), "solved", solved_at=at(3, 5))],
    },
    ratings={
        "zd": [rating("r", "csat", 1, (0, 1), ticket_id="1")],
        "fd": [rating("r", "csat", 0, (0, 1), ticket_id="1")],
    },
    organizations={
        "zd": [Account("o", mrr=100, churned_at=at(3, 4))],
        "fd": [Account("o", mrr=100)],
    },
)

SCOPE_CASES = [
    Case("an empty store: counts 0, everything else null", Dataset(), EMPTY, context=EVERYTHING),
    Case(
        "deleted tickets count nowhere, with their messages and ratings",
        zd(
            tickets=[DELETED, DELETED_OPEN],
            messages=[
                msg("m1", "x", at(3, 3, 9), "customer"),
                msg("m2", "x", at(3, 3, 10), "agent"),
            ],
            ratings=[rating("r", "csat", 5, (1, 5), ticket_id="x")],
        ),
        EMPTY,
        context=EVERYTHING,
    ),
    Case(
        "all connectors",
        TWO_CONNECTORS,
        {
            "tickets_created": count(3),
            "tickets_solved": count(1),
            "csat": {"value": 50.0, "numerator": 1, "n": 2, "mean": 0.5, "unit": "%"},
            "churn_rate": rate(1, 2),
        },
    ),
    Case(
        "a connector filter restricts tickets, ratings and organizations",
        TWO_CONNECTORS,
        {
            "tickets_created": count(1),
            "tickets_solved": count(1),
            "backlog": count(0),
            "csat": {"value": 0.0, "numerator": 0, "n": 1, "mean": 0.0, "unit": "%"},
            "churn_rate": rate(0, 1),
        },
        connectors=("fd",),
    ),
]

# --- grouping ----------------------------------------------------------------------------

AGENTS = zd(
    people=[base.Person("a1", "agent", "Ana"), base.Person("a3", "agent", "Bea")],
    tickets=[
        tk("g1", at(3, 3), "solved", assignee_id="a1", solved_at=at(3, 4)),
        tk("g2", at(3, 3), assignee_id="a1"),
        tk("g3", at(3, 3), assignee_id="a2"),  # no Person stored: labelled with its key
        tk("g4", at(3, 3)),
    ],
    ratings=[
        rating("r1", "csat", 5, (1, 5), ticket_id="g1", agent_id="a3"),  # the rated agent
        rating("r2", "csat", 1, (1, 5)),
    ],
)
NOT_SPLIT = {
    "cost_per_ticket": null("USD"),
    "cost_revenue_ratio": null("%"),
    "churn_rate": null("%"),
}
CSAT_ALL = {"value": 100.0, "numerator": 1, "n": 1, "mean": 1.0, "unit": "%"}
CSAT_NONE = {"value": 0.0, "numerator": 0, "n": 1, "mean": 0.0, "unit": "%"}

TAGS = zd(
    tickets=[
        tk("k1", at(3, 3), "solved", tags=["billing", "vip"], solved_at=at(3, 4)),
        tk("k2", at(3, 3), tags=["billing"]),
        tk("k3", at(3, 3)),
        tk("k4", at(2, 20), tags=["vip"]),  # in the backlog only
        tk("k5", at(2, 1), "solved", tags=["old"], solved_at=at(2, 2)),  # in no population
    ],
    ratings=[rating("r", "csat", 5, (1, 5), ticket_id="k1")],
)

GROUP_CASES = [
    Case(
        "by agent: assignee for tickets, rated agent for ratings, Person names, (unassigned) last",
        AGENTS,
        {
            "tickets_created": count(4),
            "csat": {"value": 50.0, "numerator": 1, "n": 2, "mean": 0.5, "unit": "%"},
        },
        by="agent",
        context=ctx(costs=Costs(monthly_support_cost=1000)),
        groups=[
            (
                "zd:a1",
                "Ana",
                {
                    "tickets_created": count(2),
                    "tickets_solved": count(1),
                    "backlog": count(1),
                    "csat": null("%"),
                    **NOT_SPLIT,
                },
            ),
            ("zd:a2", "zd:a2", {"tickets_created": count(1), "backlog": count(1)}),
            ("zd:a3", "Bea", {"tickets_created": count(0), "csat": CSAT_ALL}),
            (None, "(unassigned)", {"tickets_created": count(1), "csat": CSAT_NONE}),
        ],
    ),
    Case(
        "by agent: esat ratings are a population (SPEC §6), so they make a group too",
        zd(
            ratings=[
                rating("r1", "csat", 5, (1, 5), agent_id="a1"),
                rating("r2", "esat", 5, (1, 5), agent_id="a9"),
            ]
        ),
        {},
        by="agent",
        groups=[
            ("zd:a1", "zd:a1", {"csat": CSAT_ALL, "esat": null("score")}),
            (
                "zd:a9",
                "zd:a9",
                {"csat": null("%"), "esat": {"value": 5.0, "n": 1, "top2": 100.0, "unit": "score"}},
            ),
        ],
    ),
    Case(
        "by tag: a tag repeated on a ticket still counts the ticket once",
        zd(tickets=[tk("1", at(3, 3), tags=["vip", "vip"])]),
        {"tickets_created": count(1)},
        by="tag",
        groups=[("vip", "vip", {"tickets_created": count(1), "backlog": count(1)})],
    ),
    Case(
        "by tag: a ticket under each of its tags, untagged under (none)",
        TAGS,
        {"tickets_created": count(3), "backlog": count(3)},
        by="tag",
        groups=[
            (
                "billing",
                "billing",
                {
                    "tickets_created": count(2),
                    "tickets_solved": count(1),
                    "backlog": count(1),
                    "csat": CSAT_ALL,
                },
            ),
            (
                "vip",
                "vip",
                {
                    "tickets_created": count(1),
                    "tickets_solved": count(1),
                    "backlog": count(1),
                    "csat": CSAT_ALL,
                },
            ),
            (None, "(none)", {"tickets_created": count(1), "backlog": count(1), "csat": null("%")}),
        ],
    ),
    Case(
        "by tag: tags JSON escapes in the store are keyed as written",
        zd(
            tickets=[
                tk("1", at(3, 3), tags=['say "hi"', "éscalade"]),
                tk("2", at(3, 3), tags=["a\\b", "éscalade"]),
            ]
        ),
        {"tickets_created": count(2)},
        by="tag",
        groups=[
            ("a\\b", "a\\b", {"tickets_created": count(1), "backlog": count(1)}),
            ('say "hi"', 'say "hi"', {"tickets_created": count(1), "backlog": count(1)}),
            ("éscalade", "éscalade", {"tickets_created": count(2), "backlog": count(2)}),
        ],
    ),
    Case(
        "by group and organization: names from the store",
        zd(
            groups=[base.Group("g1", "Tier 1"), base.Group("g2")],
            tickets=[tk("1", at(3, 3), group_id="g1"), tk("2", at(3, 3), group_id="g2")],
        ),
        {},
        by="group",
        groups=[
            ("zd:g1", "Tier 1", {"tickets_created": count(1)}),
            ("zd:g2", "zd:g2", {"tickets_created": count(1)}),
        ],
    ),
    Case(
        "by organization",
        zd(
            organizations=[Account("o1", "Acme", mrr=10)],
            tickets=[tk("1", at(3, 3), organization_id="o1"), tk("2", at(3, 3))],
        ),
        {"churn_rate": rate(0, 1)},
        by="organization",
        groups=[
            ("zd:o1", "Acme", {"tickets_created": count(1), "churn_rate": null("%")}),
            (None, "(none)", {"tickets_created": count(1)}),
        ],
    ),
    Case(
        "by connector",
        TWO_CONNECTORS,
        {},
        by="connector",
        groups=[
            ("fd", "fd", {"tickets_created": count(1), "csat": CSAT_NONE}),
            ("zd", "zd", {"tickets_created": count(2), "csat": CSAT_ALL}),
        ],
    ),
]

CASES = (
    COUNTS + BACKLOG_HISTORY + DURATIONS + RESPONSE_TIME + SOLVED_RATES + SLA_CASES + BUSINESS_CASES
    + RATING_CASES + MONEY_CASES + SUBMISSIONS + SCOPE_CASES + GROUP_CASES
)  # fmt: skip

# --- running a case ----------------------------------------------------------------------

Evaluate = Callable[[Case], Report]


@pytest.fixture(params=[*DIALECTS, "reference"])
def evaluate(request: pytest.FixtureRequest, tmp_path: Path) -> Evaluate:
    """The engine on each store dialect, and the reference: every value asserted on all."""

    def through_engine(case: Case) -> Report:
        engine = open_engine(new_store(request, request.param, tmp_path))
        try:
            case.data.store(engine)
            report = compute(
                engine,
                case.window,
                case.context,
                connectors=case.connectors,
                by=case.by,
                wall=case.wall,
            )
            return report_as_data(report)
        finally:
            engine.dispose()

    def through_reference(case: Case) -> Report:
        return case.data.reference(case.window, case.context, case.connectors, case.by, case.wall)

    return through_reference if request.param == "reference" else through_engine


def expect(kpis: dict[str, Entry], expected: dict[str, Entry], where: str) -> list[str]:
    missing = [f"{where}: no {key}" for key in expected if key not in kpis]
    return missing + [
        d
        for key, want in expected.items()
        if key in kpis
        for d in differences(kpis[key], want, f"{where}.{key}")
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kpis_by_hand(case: Case, evaluate: Evaluate) -> None:
    report = evaluate(case)
    problems = expect(report["kpis"], case.expected, "kpis")
    if case.groups is not None:
        by = report["by"]
        assert by is not None
        assert by["dimension"] == case.by
        got = [(g["key"], g["label"]) for g in by["groups"]]
        assert got == [(key, label) for key, label, _ in case.groups]
        for group, (key, _, want) in zip(by["groups"], case.groups, strict=True):
            problems += expect(group["kpis"], want, f"group {key}")
    else:
        assert report["by"] is None
    assert not problems, "\n".join(problems)


UNITS = {
    **dict.fromkeys(("tickets_created", "tickets_solved", "backlog", "backlog_change",
                     "backlog_age", "submissions_by_hour"), "count"),
    **dict.fromkeys(("first_response_time", "first_response_time_business", "response_time",
                     "resolution_time", "resolution_time_business", "handle_time"), "s"),
    **dict.fromkeys(("fcr_rate", "reopen_rate", "escalation_rate", "sla_first_response",
                     "sla_resolution", "csat", "cost_revenue_ratio", "churn_rate",
                     "csat_response_rate"), "%"),
    "nps": "score", "ces": "score", "agent_replies_per_solved": "ratio", "cost_per_ticket": "GBP",
    **dict.fromkeys(("first_resolution_time", "first_resolution_time_business",
                     "resolution_stages", "time_in_status"), "s"),
    **dict.fromkeys(("touches", "first_response_distribution", "resolution_distribution",
                     "public_replies", "internal_notes", "tickets_touched", "active_agents",
                     "awaiting_reply", "unique_customers"), "count"),
    "reassignment_rate": "%", "repeat_contact_rate": "%", "esat": "score",
    "backlog_time_to_clear": "days",
}  # fmt: skip


def test_every_kpi_is_reported_with_its_unit(evaluate: Evaluate) -> None:
    case = replace(SCOPE_CASES[0], context=ctx(costs=Costs(monthly_support_cost=1, currency="gbp")))
    report = evaluate(case)
    assert set(report["kpis"]) == set(KPI_KEYS)
    assert {key: entry["unit"] for key, entry in report["kpis"].items()} == UNITS
    for key, entry in report["kpis"].items():
        if entry["value"] is None:
            assert set(entry) == {"value", "reason", "unit"}, key
            assert isinstance(entry["reason"], str), key
            assert entry["reason"], key


@pytest.mark.parametrize("reader", ["arrow", "rows"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_engine_agrees_with_the_reference_on_every_case(
    request: pytest.FixtureRequest,
    dialect: str,
    reader: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond the hand-picked entries: the whole report, every KPI and group, read through
    ADBC (the default) and through the DB-API driver (the in-memory store's reader)."""
    if reader == "rows":
        monkeypatch.setattr(kpis, "load", functools.partial(kpi_data.load, prefer_arrow=False))
    problems = []
    empty_store = store_maker(request, dialect, tmp_path)
    for case in CASES:
        engine = open_engine(empty_store())
        case.data.store(engine)
        report = compute(
            engine,
            case.window,
            case.context,
            connectors=case.connectors,
            by=case.by,
            wall=case.wall,
        )
        engine.dispose()
        expected = case.data.reference(
            case.window, case.context, case.connectors, case.by, case.wall
        )
        problems += [f"{case.id}: {d}" for d in differences(report_as_data(report), expected)]
    assert not problems, "\n".join(problems)


def test_a_groups_replies_are_found_by_binary_search_as_by_a_membership_scan() -> None:
    """Each group's answered messages: the entries of its tickets, in their stored order,
    each once even when a key repeats (a ticket's row per tag), none for unknown keys."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        tickets = rng.integers(0, 40, rng.integers(0, 200)).astype(np.int64)
        keys = rng.integers(0, 50, rng.integers(0, 30)).astype(np.float64)
        rows = kpis.rows_of_tickets(tickets)(keys)
        assert rows.tolist() == np.flatnonzero(np.isin(tickets, keys)).tolist()


def test_a_population_is_partitioned_by_key_in_row_order() -> None:
    keys = np.array(["b", None, "a", "b", 7, None, "a", "7"], dtype=object)
    parts = kpis._partition(kpi_data.Frame({}, keys))
    assert {k: v.tolist() for k, v in parts.items()} == {
        "b": [0, 3],
        None: [1, 5],
        "a": [2, 6],
        "7": [4, 7],
    }


def test_an_overflowing_mrr_or_cost_is_null_with_a_reason(tmp_path: Path) -> None:
    """Issue 23, item 15: a 1e308 MRR or cost overflows to infinity; the entry is null with a
    reason, never Infinity or NaN (invalid JSON)."""
    from cskpi.core.kpis.output import json_text

    huge = [Account("o1", mrr=1e308), Account("o2", mrr=1e308)]
    engine = open_engine(f"sqlite:///{tmp_path / 'kpi.db'}")
    try:
        zd(tickets=MONTH_SOLVED, organizations=huge).store(engine)
        report = compute(engine, W_MONTHS, ctx(costs=Costs(monthly_support_cost=1e308)))
    finally:
        engine.dispose()
    for key in ("cost_per_ticket", "cost_revenue_ratio"):
        assert report.kpis[key] == {
            "value": None, "reason": formulas.NOT_FINITE, "unit": report.kpis[key]["unit"]
        }  # fmt: skip
    assert report.kpis["churn_rate"]["value"] == 0.0
    assert "Infinity" not in json_text(report)
    assert "NaN" not in json_text(report)
