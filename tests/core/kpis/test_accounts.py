"""The account view of `--by organization` (SPEC §6 Accounts), worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from cskpi.core.kpis.drill import accounts_at_risk
from cskpi.core.kpis.report import compute
from cskpi.core.store.engine import open_engine
from tests.core.kpis.kpi_reference import Account, Dataset
from tests.core.kpis.test_kpis import W1, at, ctx, rating, tk
from tests.postgres import DIALECTS, new_store

FIVE = (1.0, 5.0)
DATA = Dataset(
    organizations={"zd": [
        Account("risky", "Risky", mrr=500),
        Account("calm", "Calm", mrr=100),
        Account("gone", "Gone", mrr=300, churned_at=at(3, 5)),  # churned in W
        Account("later", "Later", mrr=50, churned_at=at(3, 9)),  # churns at `to`: not yet
        Account("free", "Free"),  # no mrr
    ]},
    tickets={"zd": [
        # risky: 5 created in W against 2 in the week before (a surge), one backlog ticket
        # 17 days old at the end (stale), csat 1 of 3 positive (low)
        *(tk(f"r{i}", at(3, 3 + i), organization_id="risky") for i in range(5)),
        tk("r-prev1", at(2, 25), "solved", organization_id="risky", solved_at=at(2, 26)),
        tk("r-prev2", at(2, 26), "solved", organization_id="risky", solved_at=at(2, 27)),
        tk("r-old", at(2, 20), organization_id="risky"),
        # calm: 5 created (c-week too), 3 before (fewer than twice); 2 bad ratings (n < 3);
        # a backlog ticket exactly 7 days old at the end is stale (backlog_age >7d)
        *(tk(f"c{i}", at(3, 3), "solved", organization_id="calm", solved_at=at(3, 4))
          for i in range(4)),
        tk("c-prev1", at(2, 25), "solved", organization_id="calm", solved_at=at(2, 26)),
        tk("c-prev2", at(2, 25), "solved", organization_id="calm", solved_at=at(2, 26)),
        tk("c-prev3", at(3, 1), "solved", organization_id="calm", solved_at=at(3, 1, 12)),
        tk("c-week", at(3, 2), organization_id="calm"),
        tk("g-old", at(2, 1), organization_id="gone"),
        tk("l-old", at(2, 1), organization_id="later"),
        tk("f-old", at(2, 1), organization_id="free"),
        tk("nobody", at(3, 3)),
    ]},
    ratings={"zd": [
        rating("1", "csat", 5, FIVE, ticket_id="r0"),
        rating("2", "csat", 2, FIVE, ticket_id="r1"),
        rating("3", "csat", 1, FIVE, ticket_id="r2"),
        rating("4", "csat", 1, FIVE, ticket_id="c0"),
        rating("5", "csat", 1, FIVE, ticket_id="c1"),
    ]},
)  # fmt: skip

EXPECTED = [  # (key, mrr, churned, at_risk, reasons), by mrr
    ("zd:risky", 500, False, True, ["low_csat", "stale_ticket", "ticket_surge"]),
    ("zd:gone", 300, True, False, ["stale_ticket"]),
    ("zd:calm", 100, False, True, ["stale_ticket"]),
    ("zd:later", 50, True, True, ["stale_ticket"]),
    ("zd:free", None, False, False, ["stale_ticket"]),
]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_accounts_at_risk_by_hand(
    request: pytest.FixtureRequest, dialect: str, tmp_path: Path
) -> None:
    engine = open_engine(new_store(request, dialect, tmp_path))
    try:
        DATA.store(engine)
        report = compute(engine, W1, ctx(), by="organization")
        risky = accounts_at_risk(engine, W1, ctx())
    finally:
        engine.dispose()
    assert report.by is not None
    groups = report.by.groups
    got = [(g.key, g.account["mrr"], g.account["churned_at"] is not None, g.account["at_risk"],
            g.account["reasons"]) for g in groups if g.account is not None]  # fmt: skip
    assert got == EXPECTED
    assert (groups[-1].key, groups[-1].account) == (None, None)  # no organization: last
    assert [g.key for g in risky] == ["zd:risky", "zd:calm", "zd:later"]
