"""`cskpi tickets` (SPEC §6 Drill-down): the listed rows are the KPI's denominator (or n),
the ``in_numerator`` rows its numerator, the ``seconds`` its durations — for every ticket
KPI of §4, on the demo store and on random stores; and the unhappy ratings by hand."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from cskpi.core.config.file import PriorityTargets, Sla
from cskpi.core.config.periods import Window
from cskpi.core.kpis import drill
from cskpi.core.kpis.filters import EVERYTHING, Where
from cskpi.core.kpis.formulas import percentile
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import Account, Dataset
from tests.core.kpis.test_filters import filters
from tests.core.kpis.test_kpis import BERLIN, NINE_TO_FIVE, W1, at, rating, tk
from tests.core.kpis.test_kpis_property import WALL, migrated, pg_store, scenarios
from tests.postgres import DIALECTS, PgServer, new_store

__all__ = ["migrated", "pg_store"]  # the fixtures, used by name


def mismatches(entry: dict[str, Any], listing: drill.Listing, key: str) -> list[str]:
    """How the listing disagrees with the KPI entry it stands behind."""
    n, cols = len(listing), listing.columns
    if entry["value"] is None:
        return [] if n == 0 else [f"{key}: null KPI but {n} rows"]
    numerator = int(np.count_nonzero(cols["in_numerator"])) if "in_numerator" in cols else None
    want: dict[str, Any] = {}
    got: dict[str, Any] = {}
    if key in ("tickets_created", "tickets_solved", "backlog"):
        want["rows"], got["rows"] = entry["value"], n
    elif key in (
        "backlog_age",
        "touches",
        "first_response_distribution",
        "resolution_distribution",
        "awaiting_reply",
    ):  # counts split into buckets
        want["rows"], got["rows"] = sum(entry["value"].values()), n
    elif key == "submissions_by_hour":
        want["rows"], got["rows"] = sum(map(sum, entry["value"])), n
    elif key == "agent_replies_per_solved":
        want = {"rows": entry["denominator"], "numerator": entry["numerator"]}
        got = {"rows": n, "numerator": int(cols["agent_replies"].sum())}
    elif "denominator" in entry:
        want = {"rows": entry["denominator"], "numerator": entry["numerator"]}
        got = {"rows": n, "numerator": numerator}
    elif entry["unit"] == "s":
        seconds = np.sort(cols["seconds"])
        want = {"rows": entry["n"], "median": entry["median"], "mean": entry["mean"]}
        got = {"rows": n, "median": percentile(seconds, 0.5), "mean": float(seconds.mean())}
    elif key == "nps":
        want, got = (
            {"rows": entry["n"], "promoters": entry["promoters"]},
            {"rows": n, "promoters": numerator},
        )
    elif key == "ces":
        want = {"rows": entry["n"], "top2": entry["top2"]}
        got = {"rows": n, "top2": 100 * (numerator or 0) / n}
    else:  # csat
        want = {"rows": entry["n"], "numerator": entry["numerator"]}
        got = {"rows": n, "numerator": numerator}
    return [f"{key}: {f} {got[f]!r} != {want[f]!r}" for f in want
            if not np.isclose(got[f], want[f], rtol=1e-9, atol=1e-6)]  # fmt: skip


def drill_problems(
    engine: Engine,
    window: Window,
    ctx: KpiContext,
    *,
    connectors: tuple[str, ...] = (),
    where: Where = EVERYTHING,
    wall: datetime | None = None,
) -> list[str]:
    report = compute(engine, window, ctx, connectors=connectors, where=where, wall=wall)
    problems = []
    for key in (*drill.DRILLS, *drill.RATING_KPIS):
        try:
            listing = drill.tickets(engine, window, ctx, key, connectors=connectors, where=where,
                                    wall=wall)  # fmt: skip
        except drill.DrillError:  # the config table it needs is missing: the KPI is null
            assert report.kpis[key]["value"] is None
            continue
        problems += mismatches(report.kpis[key], listing, key)
    return problems


SLA = Sla(
    first_response=PriorityTargets(urgent="1h", high="4h", normal="8h"),
    resolution=PriorityTargets(urgent="4h", high="1d", normal="3d"),
)


def test_every_listing_matches_its_kpi_on_the_demo_store(tmp_path: Path) -> None:
    from cskpi.cli import app
    from tests.test_cli import runner, synced

    cfg = synced(tmp_path)
    assert runner.invoke(app, ["status", "-c", str(cfg)]).exit_code == 0
    engine = open_engine(f"sqlite:///{cfg.parent / 'kpi.db'}")
    ctx = KpiContext(timezone=BERLIN, business=NINE_TO_FIVE, sla=SLA)
    end = datetime.fromisoformat("2026-11-01T00:00:00+00:00")
    try:
        for days in (1, 7, 20):
            window = Window(end - timedelta(days=days), end, BERLIN, end)
            problems = drill_problems(engine, window, ctx)
            assert not problems, "\n".join(problems)
        listing = drill.tickets(engine, window, ctx, "sla_first_response")
        assert 0 < np.count_nonzero(listing.columns["in_numerator"]) < len(listing)
    finally:
        engine.dispose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios(), where=st.none() | filters())
def test_every_listing_matches_its_kpi_on_random_stores(
    migrated: Path, scenario: dict[str, Any], where: dict[str, Any] | None
) -> None:
    chosen = Where(tuple((where or {}).items()))
    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}")
        try:
            scenario["data"].store(engine)
            problems = drill_problems(engine, scenario["window"], scenario["context"],
                                      connectors=scenario["connectors"], where=chosen,
                                      wall=WALL)  # fmt: skip
        finally:
            engine.dispose()
    assert not problems, "\n".join(problems)


# --- unhappy customers, by hand ------------------------------------------------------------

FIVE, TEN, TWO = (1.0, 5.0), (0.0, 10.0), (0.0, 1.0)
UNHAPPY = Dataset(
    organizations={"zd": [Account("big", "Big", mrr=900), Account("small", "Small", mrr=10)]},
    tickets={"zd": [tk("1", at(3, 3), organization_id="small", requester_id="c1"),
                    tk("2", at(3, 3), organization_id="big"), tk("3", at(3, 3))]},
    ratings={"zd": [
        rating("csat-top", "csat", 4, FIVE, ticket_id="1"),  # top two boxes: happy
        rating("csat-3", "csat", 3, FIVE, ticket_id="1", rated_at=at(3, 5), comment="meh"),
        rating("csat-bad-big", "csat", 0, TWO, ticket_id="2", rated_at=at(3, 6)),
        rating("nps-6", "nps", 6, TEN, ticket_id="3", rated_at=at(3, 3)),
        rating("nps-7", "nps", 7, TEN, ticket_id="3"),  # a passive: not unhappy
        rating("ces-2", "ces", 2, (1.0, 7.0), ticket_id="2", rated_at=at(3, 4)),  # bottom two
        rating("ces-3", "ces", 3, (1.0, 7.0), ticket_id="2"),
        rating("csat-later", "csat", 1, FIVE, ticket_id="2", rated_at=at(3, 9)),  # after W
    ]},
)  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unhappy_ratings_by_mrr_then_time(
    request: pytest.FixtureRequest, dialect: str, tmp_path: Path
) -> None:
    engine = open_engine(new_store(request, dialect, tmp_path))
    try:
        UNHAPPY.store(engine)
        listing = drill.unhappy(engine, W1)
        top = drill.unhappy(engine, W1, limit=2)
        vip = drill.unhappy(engine, W1, where=Where((("organization", ("zd:small",)),)))
    finally:
        engine.dispose()
    # Big (900): ces-2 on the 4th, csat-bad-big on the 6th; Small (10): csat-3; none: nps-6
    assert listing.columns["id"].tolist() == ["zd:ces-2", "zd:csat-bad-big", "zd:csat-3",
                                              "zd:nps-6"]  # fmt: skip
    assert listing.columns["mrr"].tolist()[:3] == [900, 900, 10]
    assert listing.columns["comment"].tolist()[2] == "meh"
    assert listing.columns["organization"].tolist()[:3] == ["Big", "Big", "Small"]
    assert top.columns["id"].tolist() == ["zd:ces-2", "zd:csat-bad-big"]
    assert vip.columns["id"].tolist() == ["zd:csat-3"]


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios(), where=st.none() | filters())
def test_every_listing_matches_its_kpi_on_postgresql(
    pg_server: PgServer, pg_store: str, scenario: dict[str, Any], where: dict[str, Any] | None
) -> None:
    pg_server.clear(pg_store)
    engine = open_engine(pg_store)
    try:
        scenario["data"].store(engine)
        problems = drill_problems(engine, scenario["window"], scenario["context"],
                                  connectors=scenario["connectors"],
                                  where=Where(tuple((where or {}).items())), wall=WALL)  # fmt: skip
    finally:
        engine.dispose()
    assert not problems, "\n".join(problems)
