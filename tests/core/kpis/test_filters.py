"""`--where` (SPEC §6 Filters) against counts worked out by hand, on both store dialects and
the independent reference, and the resolution of what a person types."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cskpi.connectors import base
from cskpi.core.kpis.filters import FilterError, Where, parse, resolve
from cskpi.core.kpis.report import compute
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import Account, Dataset, differences, report_as_data
from tests.core.kpis.test_kpis import W1, at, count, ctx, null, rate, rating, tk
from tests.core.kpis.test_kpis_property import WALL, migrated, scenarios
from tests.postgres import DIALECTS, new_store

__all__ = ["migrated"]  # the fixture, used by name

FIVE = (1.0, 5.0)
DATA = Dataset(
    people={
        "zd": [base.Person("a1", "agent", "Ana"), base.Person("a2", "agent", "Bo")],
        "fd": [base.Person("a1", "agent", "ana")],
    },
    groups={"zd": [base.Group("g1", "Tier 1")]},
    organizations={"zd": [Account("o1", "Acme", mrr=100)]},
    tickets={
        "zd": [
            tk("1", at(3, 3), channel="email", assignee_id="a1", tags=["vip"], priority="high"),
            tk("2", at(3, 4), "solved", channel="chat", assignee_id="a2", solved_at=at(3, 5)),
            tk("3", at(3, 5), "pending", channel="email", tags=["vip", "b2b"]),
            tk(
                "4",
                at(3, 5),
                "solved",
                channel="web",
                assignee_id="a1",
                group_id="g1",
                organization_id="o1",
                solved_at=at(3, 6),
            ),
        ],
        "fd": [tk("9", at(3, 5), channel="email", assignee_id="a1")],
    },
    ratings={
        "zd": [
            rating("r1", "csat", 5, FIVE, ticket_id="1", agent_id="a1"),
            rating("r2", "csat", 1, FIVE, ticket_id="2", agent_id="a2"),
            rating("r3", "csat", 4, FIVE, agent_id="a1"),  # no ticket
        ]
    },
)


def csat(positive: int, n: int) -> dict[str, Any]:
    return {"value": 100 * positive / n, "numerator": positive, "n": n}


CASES: list[tuple[str, dict[str, tuple[str | None, ...]], dict[str, Any]]] = [
    (
        "no filter",
        {},
        {
            "tickets_created": count(5),
            "tickets_solved": count(2),
            "csat": csat(2, 3),
            "churn_rate": rate(0, 1),
        },
    ),
    (
        "one channel",
        {"channel": ("email",)},
        {
            "tickets_created": count(3),
            "tickets_solved": count(0),
            "backlog": count(3),
            "csat": csat(1, 1),
            "churn_rate": null("%"),
        },
    ),
    (
        "values OR within a dimension",
        {"channel": ("email", "chat")},
        {"tickets_created": count(4), "tickets_solved": count(1), "csat": csat(1, 2)},
    ),
    # the rated agent for ratings: r3 has no ticket, so no channel, and is left out
    (
        "dimensions AND",
        {"channel": ("email",), "agent": ("zd:a1",)},
        {"tickets_created": count(1), "csat": csat(1, 1)},
    ),
    (
        "agent: the assignee, the rated agent",
        {"agent": ("zd:a1",)},
        {"tickets_created": count(2), "tickets_solved": count(1), "csat": csat(2, 2)},
    ),
    ("unassigned", {"agent": (None,)}, {"tickets_created": count(1), "csat": null("%")}),
    ("a tag", {"tag": ("vip",)}, {"tickets_created": count(2), "backlog": count(2)}),
    ("no tag", {"tag": (None,)}, {"tickets_created": count(3)}),
    ("two tags", {"tag": ("b2b", "vip")}, {"tickets_created": count(2)}),
    (
        "status",
        {"status": ("solved",)},
        {"tickets_created": count(2), "tickets_solved": count(2), "backlog": count(0)},
    ),
    (
        "connector, like --connector",
        {"connector": ("zd",)},
        {"tickets_created": count(4), "csat": csat(2, 3), "churn_rate": rate(0, 1)},
    ),
    (
        "organization",
        {"organization": ("zd:o1",)},
        {"tickets_created": count(1), "tickets_solved": count(1), "churn_rate": null("%")},
    ),
]


@pytest.fixture(params=DIALECTS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    engine = open_engine(new_store(request, request.param, tmp_path))
    DATA.store(engine)
    yield engine
    engine.dispose()


def test_where_by_hand_and_against_the_reference(store: Any) -> None:
    problems = []
    for name, where, want in CASES:
        for by in (None, "agent", "tag"):
            report = report_as_data(
                compute(store, W1, ctx(), by=by, where=Where(tuple(where.items())))
            )
            expected = DATA.reference(W1, ctx(), by=by, where=where)
            problems += [f"{name} by {by}: {d}" for d in differences(report, expected)]
        got = report_as_data(compute(store, W1, ctx(), where=Where(tuple(where.items()))))["kpis"]
        for key, entry in want.items():
            problems += [f"{name}: {key}: {d}" for d in differences(
                {k: got[key][k] for k in entry}, entry)]  # fmt: skip
    assert not problems, "\n".join(problems)


def test_money_is_null_under_where_with_a_reason(store: Any) -> None:
    kpis = compute(store, W1, ctx(), where=Where((("channel", ("email",)),))).kpis
    assert kpis["churn_rate"] == {"value": None, "reason": "not split by --where", "unit": "%"}


def test_a_name_an_id_or_none_resolves_to_stored_values(store: Any) -> None:
    connectors = ["zd", "fd"]
    typed = parse(["agent=Bo", "agent=zd:a1", "agent=(unassigned)", "group=tier 1",
                   "channel=EMAIL", "tag=vip", "organization=Acme"])  # fmt: skip
    assert resolve(store, typed, connectors) == Where((
        ("agent", ("zd:a2", "zd:a1", None)), ("group", ("zd:g1",)), ("channel", ("email",)),
        ("tag", ("vip",)), ("organization", ("zd:o1",)),
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("agent=ana", "--where agent=ana: 2 agents have that name (fd:a1, zd:a1); give the id"),
        ("agent=Nobody", "--where agent=Nobody: no agent with that id or name"),
        ("colour=red", "--where colour=…: use one of agent, group"),
        ("channel=fax", "--where channel=fax: unknown; use one of email"),
        ("connector=xx", "--where connector=xx: no such connector; configured: zd, fd"),
    ],
)
def test_an_unknown_or_ambiguous_value_is_an_error_naming_it(
    store: Any, typed: str, message: str
) -> None:
    with pytest.raises(FilterError) as raised:
        resolve(store, parse([typed]), ["zd", "fd"])
    assert str(raised.value).startswith(message)


def test_a_where_without_a_value_is_refused() -> None:
    with pytest.raises(FilterError, match="write DIM=VALUE"):
        parse(["agent"])


def test_a_digest_where_table_takes_a_value_or_a_list() -> None:
    from pydantic import ValidationError

    from cskpi.core.config.file import DigestSettings

    settings = DigestSettings.model_validate(
        {"schedule": "0 9 * * *", "where": {"channel": "email", "tag": ["vip", "b2b"]}}
    )
    assert settings.where == {"channel": ("email",), "tag": ("vip", "b2b")}
    with pytest.raises(ValidationError, match=r"where\.colour"):
        DigestSettings.model_validate({"schedule": "0 9 * * *", "where": {"colour": "red"}})


# --- random stores and random filters against the reference -------------------------------

VALUES: dict[str, tuple[str | None, ...]] = {
    "agent": (None, "zd:a1", "fd:a2", "ic:a3", "zd:a4"),
    "group": (None, "zd:g1", "fd:g2"),
    "channel": (None, "email", "chat"),
    "type": (None, "question", "bug"),
    "priority": (None, "urgent", "high", "normal", "low"),
    "tag": (None, "billing", "vip", "escalated"),
    "connector": ("zd", "fd", "ic"),
    "organization": (None, "zd:o1", "fd:o2", "ic:o3"),
    "status": ("new", "open", "pending", "on_hold", "solved", "closed"),
}


@st.composite
def filters(draw: st.DrawFn) -> dict[str, tuple[str | None, ...]]:
    dimensions = draw(
        st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=2, unique=True)
    )
    return {d: tuple(draw(st.lists(st.sampled_from(VALUES[d]), min_size=1, max_size=2,
                                   unique=True))) for d in dimensions}  # fmt: skip


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios(), where=filters())
def test_random_filters_equal_the_reference(
    migrated: Path, scenario: dict[str, Any], where: dict[str, tuple[str | None, ...]]
) -> None:
    data: Dataset = scenario["data"]
    window, context = scenario["window"], scenario["context"]
    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}")
        try:
            data.store(engine)
            chosen = Where(tuple(where.items()))
            report = compute(engine, window, context, connectors=scenario["connectors"],
                             by=scenario["by"], wall=WALL, where=chosen)  # fmt: skip
        finally:
            engine.dispose()
    expected = data.reference(window, context, scenario["connectors"], scenario["by"], WALL, where)
    problems = differences(report_as_data(report), expected)
    assert not problems, "\n".join(problems[:20])
