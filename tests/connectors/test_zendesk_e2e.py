"""End to end: the zendesk connector syncs the local Zendesk imitation into SQLite.

The imitation (tests/connectors/zendesk_server.py) enforces the incremental exports' 10
requests per minute on the same fake clock the connector paces on, so these tests also prove
that a sync stays under the limit, and they never sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cskpi.connectors.zendesk import ZendeskConnector, ZendeskSettings
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import AuthError
from cskpi.core.sync import Source, run_sync
from tests.connectors.e2e import (
    TABLES,
    by_id,
    content,
    cursors,
    database,
    positions,
    rows,
    sync,
)
from tests.connectors.openapi.check import ZENDESK_DEVIATIONS, RequestCheck
from tests.connectors.zendesk_desk import _ID_SHIFT, export_cursor
from tests.connectors.zendesk_server import ZendeskImitation

TICKETS = 3000
TICKET_EXPORT = "/api/v2/incremental/tickets/cursor.json"


# Rate limits and retries wait on a FakeClock: any real sleep fails the test.
# Every request the connector sends is checked against the vendor's published document.
pytestmark = pytest.mark.usefixtures("no_real_sleep", "documented_requests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[ZendeskImitation]:
    with ZendeskImitation(TICKETS, seed=3, clock=clock, export_limit=10) as imitation:
        yield imitation


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ZD_E2E_TOKEN", "zd-test-token-1234")
    return "env:ZD_E2E_TOKEN"


def zendesk(server: ZendeskImitation, clock: FakeClock, token: str) -> ZendeskConnector:
    settings = ZendeskSettings(
        type="zendesk", subdomain="acme", email="ops@acme.test", api_token=token,
        base_url=server.url, per_page=500,
    )  # fmt: skip
    return ZendeskConnector("zd", settings, clock=clock)


def test_a_full_sync_stays_within_the_export_limit_and_flags_deleted_and_merged_tickets(
    server: ZendeskImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    server.script(TICKET_EXPORT, "ok", 429)  # edge protection: text/plain, Retry-After 7
    engine = database(tmp_path)

    report = sync(engine, zendesk(server, clock, token))

    assert report.ok, [s.error for s in report.streams]
    desk = server.desk
    flagged = rows(engine, "SELECT external_id, raw_status FROM ticket WHERE deleted ORDER BY id")
    assert flagged == [("5", "deleted"), ("9", "closed")]  # deleted, and merged
    # Retry-After honoured, and the limit itself never tripped
    assert [e.status for e in server.log].count(429) == 1
    assert server.throttled == 0
    assert 7.0 in clock.sleeps
    exports = [e.at for e in server.requests_to("/api/v2/incremental/") if e.status < 400]
    assert all(later - first > 60 for first, later in zip(exports, exports[10:], strict=False))
    # pages after the first carry only the cursor, and the last cursor is kept
    ticket_requests = [e.query for e in server.requests_to(TICKET_EXPORT) if e.status == 200]
    assert "start_time" in ticket_requests[0]
    assert all("cursor" in q and "start_time" not in q for q in ticket_requests[1:])
    last = desk.ticket_keys[-1]
    assert cursors(engine)["tickets"] == export_cursor(last >> _ID_SHIFT, last & 0xFFFFFFFF)


def test_a_resync_changes_nothing_and_server_changes_change_exactly_those_tickets(
    server: ZendeskImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, zendesk(server, clock, token)).ok
    before = content(engine)
    stored = cursors(engine)

    assert sync(engine, zendesk(server, clock, token)).ok
    assert content(engine) == before
    resumed = [e.query for e in server.requests_to(TICKET_EXPORT)][-1]
    assert resumed["cursor"] == [stored["tickets"]]
    assert "start_time" not in resumed

    changed = [11, 222, 1500, 2999]
    columns = "external_id, priority, tags, deleted"
    [doomed] = rows(engine, f"SELECT {columns} FROM ticket WHERE external_id = '1234'")
    server.desk.change_tickets(changed, priority="urgent", tags=["changed"])
    server.desk.delete_ticket(1234)
    assert sync(engine, zendesk(server, clock, token)).ok
    after = content(engine)

    assert [t for t in TABLES if after[t] != before[t]] == ["ticket", "status_change"]
    added = set(after["status_change"]) - set(before["status_change"])
    assert set(before["status_change"]) <= set(after["status_change"])
    assert {(row[0], row[2]) for row in added} == {("zd:1234", "closed")}  # the deletion
    old, new = by_id(before["ticket"]), by_id(after["ticket"])
    assert old.keys() == new.keys()
    assert sorted(k for k in old if old[k] != new[k]) == sorted(f"zd:{i}" for i in [*changed, 1234])
    assert rows(engine, f"SELECT {columns} FROM ticket WHERE external_id IN ('11', '1234')") == [
        ("11", "urgent", '["changed"]', 0),
        (*doomed[:3], 1),  # deleted: flagged, everything else as it was
    ]


Thread = list[tuple[int, str, bool]]  # (unix time, author role, public) in time order


def threads(engine: Engine) -> dict[object, Thread]:
    found: dict[object, Thread] = {}
    sql = "SELECT ticket_id, created_at, author_role, public FROM message ORDER BY created_at"
    for ticket_id, at, role, public in rows(engine, sql):
        found.setdefault(ticket_id, []).append((int(str(at)), str(role), bool(public)))
    return found


def agree(ticket: tuple[object, ...], thread: Thread) -> bool:
    """The ticket's metric-derived fields against its comment events; True when the first
    reply was checked to the second (messaging tickets carry reply_time_in_seconds)."""
    _, channel, first_reply, replies, reopens, first_solved, solved = ticket
    agent = [at for at, role, public in thread if role == "agent" and public]
    assert replies == len(agent)
    if not agent:
        assert first_reply is None
    else:  # whole minutes from creation (reply_time_in_minutes), exact for messaging
        assert 0 <= agent[0] - int(str(first_reply)) < (1 if channel == "messaging" else 60)
    if solved is not None:
        # first_solved_at comes from whole minutes too: a reopen is a customer message
        # after the first solve's minute and up to the last solve
        span = range(int(str(first_solved)) + 60, int(str(solved)) + 1)
        assert reopens == sum(1 for at, role, _ in thread if role == "customer" and at in span)
    return bool(agent) and channel == "messaging"


def test_metric_derived_fields_agree_with_the_comment_events(
    server: ZendeskImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, zendesk(server, clock, token)).ok
    tickets = rows(
        engine,
        "SELECT id, channel, first_reply_at, agent_replies, reopens, first_solved_at, solved_at "
        "FROM ticket WHERE NOT deleted",
    )
    by_ticket = threads(engine)

    exact = [agree(ticket, by_ticket[ticket[0]]) for ticket in tickets]

    assert len(exact) == TICKETS - 3  # all but the deleted, the merged and the unparseable one
    assert sum(exact) > 100  # plenty of messaging tickets were checked to the second
    assert sum(t[4] for t in tickets) > 50  # type: ignore[misc]  # and plenty of reopens
    assert any(role == "bot" for thread in by_ticket.values() for _, role, _ in thread)


def status_history(engine: Engine) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    sql = "SELECT ticket_id, at, status FROM status_change ORDER BY ticket_id, at"
    for ticket_id, at, status in rows(engine, sql):
        found.setdefault(str(ticket_id), []).append((int(str(at)), str(status)))
    return found


def served_history(server: ZendeskImitation) -> dict[str, list[tuple[int, str]]]:
    """Every ticket's status changes as its events record them, normalised (deleted is
    closed). Tickets 5 and 9 were deleted and merged with no event: their status now is not
    in their history."""
    named = {"hold": "on_hold", "deleted": "closed"}
    return {
        f"zd:{t.id}": [(at, named.get(status, status)) for at, status in t.history]
        for t in server.desk.tickets.values()
    }


def test_status_changes_are_the_history_the_ticket_events_record(
    server: ZendeskImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, zendesk(server, clock, token)).ok

    stored, served = status_history(engine), served_history(server)

    assert stored == served
    statuses = {status for history in stored.values() for _, status in history}
    assert statuses == {"new", "open", "pending", "solved", "closed"}
    current = dict(rows(engine, "SELECT id, status FROM ticket WHERE NOT deleted"))
    assert all(stored[t][-1][1] == status for t, status in current.items())
    reopened = [h for h in stored.values() if [s for _, s in h].count("solved") > 1]
    assert len(reopened) > 50

    server.desk.delete_ticket(1234)
    assert sync(engine, zendesk(server, clock, token)).ok  # a re-sync adds just the change
    assert status_history(engine) == {**served, "zd:1234": served_history(server)["zd:1234"]}
    assert status_history(engine)["zd:1234"][-1][1] == "closed"


def test_check_passes_with_the_token_and_names_the_connector_when_rejected(
    server: ZendeskImitation, clock: FakeClock, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    zendesk(server, clock, token).check()
    monkeypatch.setenv("ZD_E2E_TOKEN", "a-wrong-token")
    with pytest.raises(AuthError, match="the token for connector zd is rejected"):
        zendesk(server, clock, token).check()


def test_since_backfills_history_without_moving_the_cursor_back(
    server: ZendeskImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    late = datetime(2026, 4, 1, tzinfo=UTC)
    run_sync(engine, [Source("zd", zendesk(server, clock, token), start_date=late)])
    first = positions(engine)
    partial = rows(engine, "SELECT COUNT(*) FROM ticket")[0][0]
    assert 0 < int(str(partial)) < TICKETS - 1

    report = run_sync(
        engine, [Source("zd", zendesk(server, clock, token))], since=late - timedelta(days=200)
    )

    assert report.ok
    assert rows(engine, "SELECT COUNT(*) FROM ticket") == [(TICKETS - 1,)]
    after = positions(engine)
    assert after["tickets"] == first["tickets"]  # the backfill ended where the cursor stood


def test_every_request_is_checked_against_oas_yaml_and_its_two_errors_are_recorded(
    documented_requests: list[RequestCheck], server: ZendeskImitation, clock: FakeClock,
    token: str, tmp_path: Path,
) -> None:  # fmt: skip
    """The deviations of Zendesk's document from its API, with their evidence, are in
    tests/connectors/openapi/check.py (ZENDESK_DEVIATIONS): start_time marked required beside
    cursor on the cursor exports, and a user_id path parameter on GET /groups. A sync meets
    both, and nothing else it sends is outside the document."""
    assert sync(database(tmp_path), zendesk(server, clock, token)).ok

    [check] = documented_requests
    assert check.checked >= 10
    assert set(check.met) == {d.name for d in ZENDESK_DEVIATIONS}
    assert check.violations == []
