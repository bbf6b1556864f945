"""The digest's unhappy customers and accounts at risk (docs/digest.md) on generated stores:
the rows are the first five of what `cskpi tickets --unhappy` lists for the digest's window,
and the first ten of the ``accounts_at_risk`` drill (all of them counted), as a lead reads
them: the rating on its scale, the organization, the mrr, the reasons in words.

Both listings are tested against their own references in tests/core/kpis/; here what is
checked by hand is what the digest adds: its window, the cut, the order by mrr and the words.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cskpi.connectors import base
from cskpi.connectors.registry import installed
from cskpi.core import app
from cskpi.core.config.file import load_config
from cskpi.core.digest.content import build
from cskpi.core.kpis.drill import accounts_at_risk
from cskpi.core.kpis.report import KpiContext
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.sync_state import finish_stream
from tests.core.kpis.kpi_reference import Account, Dataset
from tests.core.kpis.test_kpis_property import BASE, SCALES

CONNECTORS = ("zd", "fd")
ORGS = (None, "o1", "o2", "o3", "o4", "o5", "o6")
# The mrr values the generated accounts take, as a digest writes them: thousands with a
# comma, cents only when there are some, "-" for none.
MRR = {None: "-", 0.0: "0", 100.0: "100", 250.5: "250.50", 1000.0: "1,000", 12345.0: "12,345"}
HOUR = timedelta(hours=1)


def hours_before(at: datetime, most: int) -> st.SearchStrategy[datetime]:
    return st.integers(0, most).map(lambda h: at - h * HOUR)


@st.composite
def connector(draw: st.DrawFn, c: str, at: datetime) -> Dataset:
    """Organizations with and without mrr; tickets of the last 40 days, open (stale after a
    week) or solved, most of them an organization's; ratings of the last day and a half, week
    or 40 days, on every scale, most of them linked to a ticket."""
    orgs = [Account(o, draw(st.sampled_from((None, f"Org {c} {o}"))),
                    mrr=draw(st.sampled_from(list(MRR))))
            for o in ORGS[1:] if draw(st.booleans())]  # fmt: skip
    tickets = []
    for i in range(draw(st.integers(0, 14))):
        created = draw(hours_before(at, 40 * 24))
        done = draw(st.booleans())
        tickets.append(base.Ticket(f"t{i}", created, created, "solved" if done else "open",
                                   organization_id=draw(st.sampled_from(ORGS)),
                                   solved_at=created + HOUR if done else None))  # fmt: skip
    ratings = []
    for i in range(draw(st.integers(0, 14))):
        kind: Any = draw(st.sampled_from(("csat", "csat", "nps", "ces", "esat")))
        low, high = (0, 10) if kind == "nps" else draw(st.sampled_from(SCALES))
        ratings.append(base.Rating(
            f"r{i}", kind, draw(st.integers(low, high)), low, high,
            draw(st.sampled_from((36, 8 * 24, 40 * 24)).flatmap(lambda h: hours_before(at, h))),
            ticket_id=draw(st.sampled_from([None, *(t.external_id for t in tickets)])),
        ))  # fmt: skip
    return Dataset(tickets={c: tickets}, ratings={c: ratings}, organizations={c: orgs})


@st.composite
def stores(draw: st.DrawFn) -> tuple[Dataset, datetime]:
    at = BASE + timedelta(days=draw(st.integers(0, 30)), hours=9)
    parts = [draw(connector(c, at)) for c in CONNECTORS]
    data = Dataset(**{kind: {c: records for part in parts
                             for c, records in getattr(part, kind).items()}
                      for kind in ("tickets", "ratings", "organizations")})  # fmt: skip
    return data, at


REASONS = {"low_csat": "low CSAT", "stale_ticket": "ticket open over 7 days",
           "ticket_surge": "ticket surge"}  # fmt: skip


def config_text(url: str, zone: str, period: str) -> str:
    connectors = "".join(f'[connectors.{c}]\ntype = "demo"\n\n' for c in CONNECTORS)
    digest = f'schedule = "0 9 * * *"\nperiod = "{period}"\nunhappy = true\nat_risk = true\n'
    return f'timezone = "{zone}"\ndatabase = "{url}"\n\n{connectors}[digests.daily]\n{digest}'


def stored(data: Dataset, url: str) -> None:
    engine = open_engine(url)
    try:
        data.store(engine)
        with write_transaction(engine) as conn:  # `cskpi tickets` refuses a never-synced store
            for c in CONNECTORS:
                finish_stream(conn, c, "tickets", None)
    finally:
        engine.dispose()


def unhappy(kind: str, score: float, low: float, high: float) -> bool:
    """docs/kpis.md: csat below its top two boxes (top box on a 2- or 3-point scale), nps of
    6 or less, ces in its bottom two boxes (bottom box likewise)."""
    boxes = 2 if high - low + 1 >= 4 else 1
    if kind == "csat":
        return score <= high - boxes
    if kind == "ces":
        return score <= low + boxes - 1
    return kind == "nps" and score <= 6


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sections-template") / "kpis.db"
    open_engine(f"sqlite:///{path}").dispose()
    return path


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    store=stores(),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    period=st.sampled_from(["yesterday", "last-7d", "last-30d"]),
)
def test_the_sections_are_the_listings_of_the_window_cut_by_mrr(
    migrated: Path, store: tuple[Dataset, datetime], zone: str, period: str
) -> None:
    data, at = store
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{shutil.copy(migrated, Path(folder) / 'kpis.db')}"
        stored(data, url)
        path = Path(folder) / "cskpi.toml"
        path.write_text(config_text(url, zone, period), encoding="utf-8")
        config = load_config(path, installed())
        request = app.KpiRequest(period=period, now=at.isoformat())
        window, listing = app.tickets(config, app.TicketsRequest(request, unhappy=True))
        engine = open_engine(url)
        try:  # the digest as `preview` makes it, without drawing its chart
            digest = build(engine, config, "daily", at)
            risky = accounts_at_risk(engine, digest.window, KpiContext.from_config(config))
        finally:
            engine.dispose()
    event(f"unhappy listed: {'more than 5' if len(listing) > 5 else len(listing)}")
    event(f"at risk: {len(risky)}")
    assert (window.start, window.end) == (digest.window.start, digest.window.end)
    check_unhappy(digest.unhappy, listing.columns)
    assert digest.at_risk_total == len(risky)
    assert [(a.organization, a.mrr, a.reasons) for a in digest.at_risk or []] == [
        (g.label, MRR[g.account["mrr"]], ", ".join(REASONS[r] for r in g.account["reasons"]))
        for g in risky[:10]
        if g.account is not None
    ]
    shown = [g.account["mrr"] for g in risky if g.account is not None]
    assert all(m is not None and m > 0 for m in shown)  # mrr > 0 is part of being at risk
    assert shown == sorted(shown, reverse=True)


def check_unhappy(rows: Any, c: dict[str, Any]) -> None:
    """The digest's rows are the listing's first five, every listed rating is unhappy, and
    the listing runs from the highest mrr down (none last)."""
    n = len(c["kind"])
    assert all(unhappy(c["kind"][i], c["score"][i], c["scale_min"][i], c["scale_max"][i])
               for i in range(n))  # fmt: skip
    mrr = [-1.0 if m != m else float(m) for m in c["mrr"]]  # NaN (no mrr) sorts last
    assert mrr == sorted(mrr, reverse=True)
    expected = [
        (f"{c['kind'][i]} {c['score'][i]:g} ({c['scale_min'][i]:g}-{c['scale_max'][i]:g})",
         c["organization"][i] or "-", MRR[None if c["mrr"][i] != c["mrr"][i] else c["mrr"][i]],
         c["ticket"][i] or "-")
        for i in range(min(n, 5))
    ]  # fmt: skip
    assert [(r.rating, r.organization, r.mrr, r.ticket_id) for r in rows] == expected


@pytest.mark.parametrize(
    ("kind", "low", "high", "worst_happy", "best_unhappy"),
    [("csat", 1, 5, 4, 3), ("csat", 1, 3, 3, 2), ("csat", 0, 1, 1, 0), ("ces", 1, 7, 3, 2),
     ("nps", 0, 10, 7, 6)],
)  # fmt: skip
def test_the_reference_reads_the_scales_as_docs_kpis_md_does(
    kind: str, low: int, high: int, worst_happy: int, best_unhappy: int
) -> None:
    """Where each scale turns: csat and ces by their boxes, nps at 6; esat is never listed."""
    assert unhappy(kind, best_unhappy, low, high)
    assert not unhappy(kind, worst_happy, low, high)
    assert not unhappy("esat", 0, 0, 10)
