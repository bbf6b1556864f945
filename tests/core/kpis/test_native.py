"""`cskpi kpis --native` (SPEC §7): each KPI beside its vendor twin, the divergence rules,
handle_time and csat_response_rate, on both store dialects and against counts by hand.

The vendor figures are built from the vendors' documented payloads (Zendesk's Ticket Metric
and satisfaction rating examples in tests/samples, Intercom's statistics) with known
offsets from our own times, one ticket per reason."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cskpi.connectors import base, intercom_map, zendesk_map
from cskpi.core.config.periods import Window
from cskpi.core.kpis import native
from cskpi.core.kpis.business_hours import BusinessCalendar
from cskpi.core.kpis.output import csv_text, json_text
from cskpi.core.kpis.populations import load
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.store.engine import open_engine
from tests.connectors.test_vendor_metrics import sample
from tests.core.kpis.kpi_reference import Dataset
from tests.postgres import DIALECTS, new_store

UTC_ZONE = ZoneInfo("UTC")
NINE_TO_FIVE = BusinessCalendar(
    UTC_ZONE, [[(timedelta(hours=9), timedelta(hours=17))]] * 5 + [[], []], holidays=[]
)
MONDAY = datetime(2026, 11, 2, tzinfo=UTC)  # Monday 2 November 2026
W = Window(MONDAY, MONDAY + timedelta(days=7), UTC_ZONE, MONDAY + timedelta(days=7))
CTX = KpiContext(timezone=UTC_ZONE, business=NINE_TO_FIVE)


def on(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def metric_set(
    reply: tuple[int, int] | None = None,
    first: tuple[int, int] | None = None,
    full: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Zendesk's documented Ticket Metric object with these (calendar, business) minutes."""
    found = copy.deepcopy(sample("zendesk", "ticket_metric_docs_example.json"))
    found["replies"] = 1 if reply else 0
    for key, pair in (("reply_time_in_minutes", reply), ("first_resolution_time_in_minutes",
                      first), ("full_resolution_time_in_minutes", full)):  # fmt: skip
        found[key] = {"calendar": None, "business": None} if pair is None else {
            "calendar": pair[0], "business": pair[1]}  # fmt: skip
    return found


def zendesk(ticket_id: str, metrics: dict[str, Any]) -> base.VendorMetrics:
    found = zendesk_map.vendor_metrics({"id": ticket_id}, metrics)
    assert found is not None
    return found


def ticket(ext: str, **fields: Any) -> base.Ticket:
    created = fields.pop("created_at", on(0, 10))
    return base.Ticket(ext, created, created, fields.pop("status", "open"), **fields)


def message(ext: str, ticket_id: str, role: str, when: datetime) -> base.Message:
    return base.Message(ext, ticket_id, when, role)  # type: ignore[arg-type]


def rating(ext: str, raw: dict[str, Any]) -> base.Rating:
    """Zendesk's documented satisfaction rating, mapped by the connector."""
    found = zendesk_map.map_rating({**sample("zendesk", "satisfaction_rating_docs_example.json"),
                                    "id": int(ext), **raw})  # fmt: skip
    assert found is not None
    return found


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dataset() -> Dataset:
    """One ticket per reason (all on Monday, inside business hours):

    t1 rounding     first reply 20 m 30 s, Zendesk 20 min; solved at 1 h 0 m 45 s, Zendesk 60 min
    t2 calendar     first reply 1 h, Zendesk 60 min calendar but 30 min business
    t3 reopened     first reply 10 min (agrees), first solve 2 h (agrees), solved again
                    Tuesday 12:00 (26 h; business 7 h + 3 h), Zendesk full resolution 120 min
    t4 agent        created by an agent: first reply 5 min, Zendesk's second comment 125 min
    t5 unexplained  first reply 1 h, Zendesk 90 min
    t6 no native    first reply 1 h and solved, no metric set: never compared
    """
    tickets = [
        ticket("1", first_reply_at=on(0, 10, 20, 30), solved_at=on(0, 11, 0, 45),
               first_solved_at=on(0, 11, 0, 45), status="solved"),
        ticket("2", first_reply_at=on(0, 11)),
        ticket("3", first_reply_at=on(0, 10, 10), first_solved_at=on(0, 12),
               solved_at=on(1, 12), status="solved", reopens=1),
        ticket("4", first_reply_at=on(0, 10, 5)),
        ticket("5", first_reply_at=on(0, 11)),
        ticket("6", first_reply_at=on(0, 11), solved_at=on(0, 12), first_solved_at=on(0, 12),
               status="solved"),
    ]  # fmt: skip
    metrics = [
        zendesk("1", metric_set(reply=(20, 20), first=(60, 60), full=(60, 60))),
        zendesk("2", metric_set(reply=(60, 30))),
        zendesk("3", metric_set(reply=(10, 10), first=(120, 120), full=(120, 120))),
        zendesk("4", metric_set(reply=(125, 125))),
        zendesk("5", metric_set(reply=(90, 90))),
    ]
    stats = {**sample("intercom", "conversation_statistics_schema_examples_oas_2.16.json"),
             "handling_time": 900}  # fmt: skip
    intercom = intercom_map.vendor_metrics("1", stats)
    assert intercom is not None
    handling = [(n, s) for n, s in intercom.metrics if n == "handling_time"]
    handled = base.VendorMetrics("1", [*metrics[0].metrics, *handling])
    messages = [
        message(f"{t.external_id}00", t.external_id, "customer", t.created_at)
        for t in tickets
        if t.external_id != "4"
    ] + [message("400", "4", "agent", on(0, 10))]
    ratings = [  # offered in W, not answered; offered and answered in W; offered before W
        rating("71", {"score": "offered", "created_at": iso(on(0, 12)),
                      "updated_at": iso(on(0, 12))}),
        rating("72", {"score": "good", "created_at": iso(on(0, 13)),
                      "updated_at": iso(on(1, 9))}),
        rating("73", {"score": "bad", "created_at": iso(on(-3, 13)),
                      "updated_at": iso(on(0, 9))}),
    ]  # fmt: skip
    return Dataset(
        tickets={"zd": tickets}, messages={"zd": messages}, ratings={"zd": ratings},
        metrics={"zd": [handled, *metrics[1:]]},
    )  # fmt: skip


def zero(**counts: int) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in native.RULE_NAMES}


EXPECTED = {
    # compared: t1..t5 (t6 has no vendor figure); median of 20, 60, 10, 125, 90 min
    "first_response_time": {"value": 3600.0, "n": 5, "diverging": 2,
                            "reasons": zero(minute_rounding=1, agent_created=1, unexplained=1)},
    # business: 20, 30, 10, 125, 90 min; t2 diverges here only
    "first_response_time_business": {
        "value": 1800.0, "n": 5, "diverging": 3,
        "reasons": zero(minute_rounding=1, business_calendar=1, agent_created=1, unexplained=1)},
    # solved in W: t1, t3 (t6 has none); median of 60 and 120 min
    "resolution_time": {"value": 5400.0, "n": 2, "diverging": 1,
                        "reasons": zero(minute_rounding=1, reopened=1)},
    "resolution_time_business": {"value": 5400.0, "n": 2, "diverging": 1,
                                 "reasons": zero(minute_rounding=1, reopened=1)},
    "handle_time": {"value": 900.0, "n": 1, "diverging": 0, "reasons": zero()},
    # §6's first solves of t1 and t3 agree with the vendor's within the tolerance
    "first_resolution_time": {"value": 5400.0, "n": 2, "diverging": 0,
                              "reasons": zero(minute_rounding=1)},
    "first_resolution_time_business": {"value": 5400.0, "n": 2, "diverging": 0,
                                       "reasons": zero(minute_rounding=1)},
}  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_reason_is_found_with_the_counts_made_by_hand(
    request: pytest.FixtureRequest, dialect: str, tmp_path: Path
) -> None:
    engine = open_engine(new_store(request, dialect, tmp_path))
    data = dataset()
    data.store(engine)
    report = compute(engine, W, CTX, native=True)
    got = {k: e["native"] for k, e in report.kpis.items() if "native" in e}
    assert got == EXPECTED
    kpis = report.kpis
    assert (kpis["handle_time"]["value"], kpis["handle_time"]["n"]) == (900.0, 1)
    # offered in W: 71 (unanswered) and 72 (answered); 73 was offered before W
    rate = kpis["csat_response_rate"]
    assert (rate["value"], rate["numerator"], rate["denominator"]) == (50.0, 1, 2)
    assert (kpis["csat"]["n"], kpis["csat"]["numerator"]) == (2, 1)  # 72 good, 73 bad
    # without --native: the same KPIs, no "native" beside them
    plain = compute(engine, W, CTX)
    assert not any("native" in e for e in plain.kpis.values())
    assert {k: {f: v for f, v in e.items() if f != "native"} for k, e in kpis.items()} == (
        plain.kpis
    )
    reference = data.reference(W, CTX)["kpis"]
    for key in ("handle_time", "csat_response_rate", "csat"):
        assert plain.kpis[key] == reference[key], key
    engine.dispose()


def test_the_diverging_tickets_are_listed_with_both_figures_and_the_reason(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine = open_engine(new_store(request, "sqlite", tmp_path))
    dataset().store(engine)
    p = load(engine, W, (), None, native=True)
    assert native.diverging_tickets(p, "first_response_time_business", CTX) == [
        {"id": "zd:2", "seconds": 3600.0, "native_seconds": 1800.0,
         "reason": "business_calendar"},
        {"id": "zd:4", "seconds": 300.0, "native_seconds": 7500.0, "reason": "agent_created"},
        {"id": "zd:5", "seconds": 3600.0, "native_seconds": 5400.0, "reason": "unexplained"},
    ]  # fmt: skip
    assert native.diverging_tickets(p, "resolution_time", CTX) == [
        {"id": "zd:3", "seconds": 93600.0, "native_seconds": 7200.0, "reason": "reopened"},
    ]
    # first_resolution_time (§6): first solves of t1 and t3 agree within the tolerance
    pair = native.compared(p, native.TWIN_OF["first_resolution_time"], CTX)
    assert pair is not None
    assert native.summary(pair.canonical, pair.native, pair.reason) == {
        "value": 5400.0, "n": 2, "diverging": 0, "reasons": zero(minute_rounding=1),
    }  # fmt: skip
    with pytest.raises(ValueError, match="backlog has no vendor twin"):
        native.diverging_tickets(p, "backlog", CTX)
    engine.dispose()


def test_output_carries_the_native_figures_in_json_and_csv(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import json

    engine = open_engine(new_store(request, "sqlite", tmp_path))
    dataset().store(engine)
    report = compute(engine, W, CTX, native=True)
    doc = json.loads(json_text(report))
    assert doc["kpis"]["first_response_time"]["native"] == EXPECTED["first_response_time"]
    assert "native" not in doc["kpis"]["backlog"]
    rows = [line for line in csv_text(report).splitlines() if '"resolution_time","native' in line]
    assert [r.split(",")[7:10] for r in rows] == [
        ['"native"', "5400.0", '"s"'], ['"native.diverging"', "1", '"count"'],
        ['"native.minute_rounding"', "1", '"count"'],
        ['"native.business_calendar"', "0", '"count"'], ['"native.reopened"', "1", '"count"'],
        ['"native.agent_created"', "0", '"count"'], ['"native.unexplained"', "0", '"count"'],
    ]  # fmt: skip
    engine.dispose()


def test_without_business_hours_the_business_twins_say_why() -> None:
    frame_ctx = KpiContext(timezone=UTC_ZONE)
    entry = native.with_native(
        {"first_response_time_business": {"value": None, "reason": "x", "unit": "s"}},
        _empty_populations(), frame_ctx,
    )["first_response_time_business"]["native"]  # fmt: skip
    assert entry == {"value": None, "n": 0, "diverging": 0, "reasons": zero(),
                     "reason": "no [business_hours] in the config"}  # fmt: skip


def _empty_populations() -> Any:
    from cskpi.core.kpis.populations import Frame, Populations

    empty = Frame({"rowid": np.zeros(0), "created_at": np.zeros(0),
                   "first_reply_at": np.zeros(0)}, None)  # fmt: skip
    return Populations(empty, empty, empty, empty, empty, False, empty, empty, empty, empty, empty)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.integers(-5000, 5000),
            st.integers(0, 3),
            st.booleans(),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_reasons_follow_the_rules_in_order(rows: list[tuple[int, int, int, bool, bool]]) -> None:
    """Against the rules written out ticket by ticket: a difference under a minute is
    rounding; beyond max(60 s, 1 %) the first of business calendar, reopened, agent created,
    unexplained that holds; otherwise no reason."""
    nat = np.array([r[0] for r in rows], dtype=np.float64)
    ours = nat + np.array([r[1] for r in rows], dtype=np.float64)
    reopens = np.array([r[2] for r in rows], dtype=np.float64)
    agent = np.array([r[3] for r in rows], dtype=np.float64)
    agrees = np.array([r[4] for r in rows], dtype=bool)
    found = native.reasons(ours, nat, calendar_agrees=agrees, reopens=reopens, first_agent=agent)
    for (n, d, reopened, by_agent, calendar_agrees), reason in zip(rows, found, strict=True):
        if 0 < abs(d) < 60:
            expected: str | None = "minute_rounding"
        elif abs(d) <= max(60, 0.01 * n):
            expected = None
        elif calendar_agrees:
            expected = "business_calendar"
        elif reopened:
            expected = "reopened"
        elif by_agent:
            expected = "agent_created"
        else:
            expected = "unexplained"
        assert reason == expected, (n, d)


def test_a_ticket_without_a_native_figure_is_not_compared() -> None:
    ours = np.array([100.0, 200.0, 300.0])
    theirs = np.array([np.nan, 5000.0, np.nan])
    why = native.reasons(ours, theirs, calendar_agrees=None, reopens=np.zeros(3),
                         first_agent=np.zeros(3))  # fmt: skip
    assert why.tolist() == [None, "unexplained", None]
    assert native.summary(ours, theirs, why) == {
        "value": 5000.0, "n": 1, "diverging": 1, "reasons": zero(unexplained=1)}  # fmt: skip


def test_the_docs_section_is_generated_from_the_rules() -> None:
    """docs/kpis.md holds ``why_section()`` as it is, and its list names exactly the rules,
    in the order they are tried, each with a worked example."""
    import re

    docs = (Path(__file__).parents[3] / "docs" / "kpis.md").read_text(encoding="utf-8")
    section = native.why_section()
    assert section in docs
    listed = re.findall(r"^\d+\. `(\w+)`: .*\*Example:\*", section, flags=re.MULTILINE)
    assert tuple(listed) == native.RULE_NAMES == (
        "minute_rounding", "business_calendar", "reopened", "agent_created", "unexplained",
    )  # fmt: skip


def test_the_native_read_takes_exactly_the_twins_metrics() -> None:
    from cskpi.core.kpis.populations import NATIVE_READ

    assert set(NATIVE_READ) == {twin.metric for twin in native.TWINS}


def test_tickets_native_lists_the_diverging_tickets_with_links_columns(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`cskpi tickets --kpi resolution_time --native` (drill.diverging): the one reopened
    ticket, with both figures, its reason and the columns a link is made from."""
    from cskpi.core.kpis import drill

    engine = open_engine(new_store(request, "sqlite", tmp_path))
    dataset().store(engine)
    listing = drill.diverging(engine, W, CTX, "resolution_time")
    cols = {k: v.tolist() for k, v in listing.columns.items()}
    assert cols == {"id": ["zd:3"], "seconds": [93600.0], "native_seconds": [7200.0],
                    "reason": ["reopened"], "connector": ["zd"], "external_id": ["3"]}  # fmt: skip
    with pytest.raises(drill.DrillError, match="backlog has no vendor twin"):
        drill.diverging(engine, W, CTX, "backlog")
    engine.dispose()
