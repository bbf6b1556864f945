"""The divergence report over the Zendesk imitation (SPEC §7): the connector syncs the
imitation's tickets and metric sets, `kpis --native` compares them, and the result equals a
count made here by hand from the imitation's own timelines.

The imitation computes its metric sets as Zendesk does, truncated to whole minutes; the
connector's first reply comes from those minutes, except on messaging tickets, which carry
``reply_time_in_seconds``; its solve times are exact. So every difference is a rounding of
less than a minute, on the tickets whose exact duration is not a whole number of minutes,
and none diverges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cskpi.connectors.zendesk import ZendeskConnector, ZendeskSettings
from cskpi.core.clock import FakeClock
from cskpi.core.config.periods import Window
from cskpi.core.kpis.native import RULE_NAMES
from cskpi.core.kpis.report import KpiContext, compute
from tests.connectors.e2e import database, sync
from tests.connectors.zendesk_desk import NOW, SPAN, T0, TicketData
from tests.connectors.zendesk_server import ZendeskImitation

pytestmark = pytest.mark.usefixtures("no_real_sleep", "documented_requests")
UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[ZendeskImitation]:
    with ZendeskImitation(400, seed=11, clock=clock, export_limit=10) as imitation:
        yield imitation


def _stamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _live(t: TicketData) -> bool:
    return t.status != "deleted" and "closed_by_merge" not in t.tags


def _reply_gap(t: TicketData) -> int:
    """Our first response minus Zendesk's, in seconds."""
    first = next(c.ts for c in t.comments if t.is_agent_reply(c)) - t.created
    ours = first if t.messaging else first // 60 * 60
    return ours - first // 60 * 60


def test_the_divergence_report_equals_a_count_by_hand(
    server: ZendeskImitation, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZD_NATIVE_TOKEN", "zd-test-token-1234")
    settings = ZendeskSettings(
        type="zendesk", subdomain="acme", email="ops@acme.test", api_token="env:ZD_NATIVE_TOKEN",
        base_url=server.url, per_page=500,
    )  # fmt: skip
    engine = database(tmp_path)
    assert sync(engine, ZendeskConnector("zd", settings, clock=clock)).ok
    start, end = T0 + 30 * 86400, T0 + SPAN  # a window inside the imitation's data
    window = Window(_stamp(start), _stamp(end), UTC_ZONE, _stamp(NOW))
    kpis = compute(engine, window, KpiContext(timezone=UTC_ZONE), native=True).kpis

    tickets = [t for t in server.desk.tickets.values() if _live(t)]
    replied = [t for t in tickets if start <= t.created < end
               and any(t.is_agent_reply(c) for c in t.comments)]  # fmt: skip
    rounded = [t for t in replied if _reply_gap(t) != 0]
    solved = [t for t in tickets if t.status in ("solved", "closed") and t.solves
              and start <= t.solves[-1] < end]  # fmt: skip
    uneven = [t for t in solved if (t.solves[-1] - t.created) % 60]
    # the imitation has messaging tickets whose replies are not whole minutes
    assert 0 < len(rounded) < len(replied)
    assert 0 < len(uneven) < len(solved)

    def expected(n: int, rounding: int) -> dict[str, object]:
        reasons = {r: rounding if r == "minute_rounding" else 0 for r in RULE_NAMES}
        return {"n": n, "diverging": 0, "reasons": reasons}

    first = kpis["first_response_time"]["native"]
    assert {k: first[k] for k in ("n", "diverging", "reasons")} == expected(
        len(replied), len(rounded)
    )
    resolution = kpis["resolution_time"]["native"]
    assert {k: resolution[k] for k in ("n", "diverging", "reasons")} == expected(
        len(solved), len(uneven)
    )
    engine.dispose()
