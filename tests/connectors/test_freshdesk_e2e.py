"""End to end: the freshdesk connector syncs the local Freshdesk imitation into SQLite.

The imitation (tests/connectors/freshdesk_server.py) serves at most 5 pages of the ticket
list (Freshdesk: 300) over 700 tickets, and enforces the growth plan's 200 credits and 20
ticket-list calls per minute on the same fake clock the connector paces on, so these tests
also prove that a sync never asks past the cap and stays under the limits; they never sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from cskpi.connectors.freshdesk import FreshdeskConnector, FreshdeskSettings
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
from tests.connectors.freshdesk_desk import DELETED, SPAM, TICKET_LIST, TIE, TicketData
from tests.connectors.freshdesk_server import FreshdeskImitation
from tests.connectors.imitation import iso
from tests.connectors.openapi.check import RequestCheck

TICKETS = 700
PAGE_CAP = 5

# Rate limits and retries wait on a FakeClock: any real sleep fails the test.
# Every request the connector sends is checked against the vendor's published document.
pytestmark = pytest.mark.usefixtures("no_real_sleep", "documented_requests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FreshdeskImitation]:
    with FreshdeskImitation(
        TICKETS, seed=3, clock=clock, limits=(200, 20), page_cap=PAGE_CAP
    ) as imitation:
        yield imitation


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FD_E2E_KEY", "fd-test-key-1234")
    return "env:FD_E2E_KEY"


def freshdesk(server: FreshdeskImitation, clock: FakeClock, key: str) -> FreshdeskConnector:
    settings = FreshdeskSettings(
        type="freshdesk", domain="acme", api_key=key, base_url=server.url,
        status_map={6: "on_hold"},
    )  # fmt: skip
    return FreshdeskConnector("fd", settings, clock=clock)


def conversation_requests(server: FreshdeskImitation) -> list[str]:
    return [e.path for e in server.log if e.path.endswith("/conversations") and e.status == 200]


def boundary(tickets: list[TicketData]) -> str:
    """The cursor after these tickets (in list order): the last second and its ids."""
    last = tickets[-1].updated
    ids = sorted(t.id for t in tickets if t.updated == last)
    return f"{iso(last)}|{','.join(map(str, ids))}"


def in_list_order(server: FreshdeskImitation) -> list[TicketData]:
    return sorted(server.desk.listed(), key=lambda t: (t.updated, t.id))


def test_a_full_sync_flags_deleted_and_spam_within_the_page_cap_and_the_limits(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    server.script(TICKET_LIST, "ok", 429)  # Retry-After 7 on the 2nd page
    engine = database(tmp_path)

    report = sync(engine, freshdesk(server, clock, key))

    assert report.ok, [s.error for s in report.streams]
    # the docs' malformed rating timestamp: skipped with its id
    assert rows(engine, "SELECT COUNT(*) FROM rating WHERE id = 'fd:400'") == [(0,)]
    flagged = rows(engine, "SELECT CAST(external_id AS INT) FROM ticket WHERE deleted ORDER BY 1")
    assert [f[0] for f in flagged] == sorted((*DELETED, *SPAM))
    # Retry-After honoured, the limits never tripped, no page past the cap
    statuses = [e.status for e in server.log]
    assert (statuses.count(429), server.throttled) == (1, 0)
    assert 7.0 in clock.sleeps
    pages = [int(e.query.get("page", ["1"])[0]) for e in server.requests_to(TICKET_LIST)]
    assert max(pages) == 2  # a second page only inside the bulk update's one second
    assert all(e.status != 400 for e in server.log)
    lists = [e.at for e in server.requests_to(TICKET_LIST) if e.status < 400]
    assert all(later - first > 60 for first, later in zip(lists, lists[20:], strict=False))
    assert cursors(engine)["tickets"] == boundary(in_list_order(server))


def test_the_bulk_updated_second_is_read_across_pages_without_gaps_or_doubles(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, freshdesk(server, clock, key)).ok

    span = f"CAST(external_id AS INT) BETWEEN {TIE.start} AND {TIE.stop - 1}"
    [(count, first, last)] = rows(
        engine, f"SELECT COUNT(*), MIN(updated_at), MAX(updated_at) FROM ticket WHERE {span}"
    )
    assert count == len(TIE)
    assert first == last
    # each ticket's conversations were read once: no boundary ticket fetched twice
    assert len(conversation_requests(server)) == len(server.desk.listed())


def test_a_resync_changes_nothing_and_server_changes_update_exactly_those_tickets(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, freshdesk(server, clock, key)).ok
    before, stored = content(engine), cursors(engine)
    read = len(conversation_requests(server))

    assert sync(engine, freshdesk(server, clock, key)).ok
    assert content(engine) == before
    assert len(conversation_requests(server)) == read  # nothing changed: no conversation read
    resumed = [e.query for e in server.requests_to(TICKET_LIST) if "filter" not in e.query][-1]
    assert resumed["updated_since"] == [str(stored["tickets"]).partition("|")[0]]

    changed = [11, 222, 500, 699]
    columns = "SELECT id, priority, tags, deleted FROM ticket WHERE id IN ('fd:11', 'fd:300')"
    doomed = rows(engine, columns)[1]
    server.desk.change_tickets(changed, priority=4, tags=["changed"])
    server.desk.delete_ticket(300)
    assert sync(engine, freshdesk(server, clock, key)).ok
    after = content(engine)

    assert [t for t in TABLES if after[t] != before[t]] == ["ticket"]
    old, new = by_id(before["ticket"]), by_id(after["ticket"])
    assert old.keys() == new.keys()
    assert sorted(k for k in old if old[k] != new[k]) == sorted(f"fd:{i}" for i in [*changed, 300])
    assert sorted(conversation_requests(server)[read:]) == sorted(
        f"/api/v2/tickets/{i}/conversations" for i in changed
    )
    assert rows(engine, columns) == [
        ("fd:11", "urgent", '["changed"]', 0),
        (*doomed[:3], 1),  # deleted: flagged, everything else as it was
    ]


def test_tickets_updated_while_the_list_is_read_lose_no_other_ticket(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    # Offset pages over updated_at: a ticket updated mid-read moves to the end and every
    # ticket behind it moves up one place, so plain page links would skip one per update.
    def agent_at_work(served: int) -> None:
        if served in (2, 3, 4):
            server.desk.change_tickets([served * 7], priority=4)

    server.on_list = agent_at_work
    engine = database(tmp_path)
    assert sync(engine, freshdesk(server, clock, key)).ok

    stored = dict(rows(engine, "SELECT id, updated_at FROM ticket"))
    expected = {f"fd:{t.id}": t.updated for t in server.desk.tickets.values()}
    assert len(stored) == TICKETS
    assert stored == expected  # every ticket, each as it is now


def test_stats_and_conversations_agree(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, freshdesk(server, clock, key)).ok
    got = {
        int(str(r[0])): r[1:]
        for r in rows(engine, "SELECT external_id, agent_replies, first_reply_at, reopens, "
                      "status, raw_status FROM ticket WHERE NOT deleted")
    }  # fmt: skip
    for t in server.desk.listed():
        replies = t.public_agent_replies()
        assert got[t.id][:3] == (len(replies), replies[0].ts if replies else None,
                                 int(t.reopened is not None))  # fmt: skip
    assert {s for *_, s, raw in got.values() if raw == "6"} == {"on_hold"}  # status_map
    roles = rows(engine, "SELECT author_role, public, COUNT(*) FROM message GROUP BY 1, 2")
    assert {(r[0], r[1]) for r in roles} == {("customer", 1), ("agent", 1), ("agent", 0)}


def visible(history: list[tuple[int, int]]) -> list[tuple[int, str]]:
    """What ``stats`` keeps of a status history: the creation, then everything from the last
    reopen on (a reopen erases the resolution and close before it), with the statuses named
    and repeats dropped. The imitation's tickets go pending at most once, so pending_since
    loses nothing here."""
    named = {2: "open", 3: "pending", 4: "solved", 5: "closed", 6: "on_hold"}
    done = (4, 5)
    reopens = [ts for (_, was), (ts, code) in pairwise(history) if was in done and code not in done]
    kept = [history[0]] + [h for h in history[1:] if not reopens or h[0] >= reopens[-1]]
    found: list[tuple[int, str]] = []
    for ts, code in kept:
        if not found or found[-1][1] != named[code]:
            found.append((ts, named[code]))
    return found


def test_status_changes_are_what_the_stats_stamps_keep_of_each_history(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, freshdesk(server, clock, key)).ok

    stored: dict[int, list[tuple[int, str]]] = {}
    sql = "SELECT ticket_id, at, status FROM status_change ORDER BY ticket_id, at"
    for ticket_id, at, status in rows(engine, sql):
        stored.setdefault(int(str(ticket_id).removeprefix("fd:")), []).append(
            (int(str(at)), str(status))
        )

    assert stored == {t.id: visible(t.history) for t in server.desk.tickets.values()}
    lost = [t for t in server.desk.tickets.values() if len(visible(t.history)) < len(t.history)]
    assert len(lost) > 10  # reopened: their first resolution is gone
    statuses = {s for history in stored.values() for _, s in history}
    assert statuses == {"open", "pending", "solved", "closed", "on_hold"}


def test_check_passes_with_the_key_and_names_it_when_rejected(
    server: FreshdeskImitation, clock: FakeClock, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    freshdesk(server, clock, key).check()
    monkeypatch.setenv("FD_E2E_KEY", "a-wrong-key")
    with pytest.raises(AuthError, match=r"connector fd is rejected.*check api_key"):
        freshdesk(server, clock, key).check()


def test_since_backfills_history_without_moving_the_cursor_back(
    server: FreshdeskImitation, clock: FakeClock, key: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    late = datetime(2026, 4, 1, tzinfo=UTC)
    assert run_sync(engine, [Source("fd", freshdesk(server, clock, key), start_date=late)]).ok
    first = positions(engine)
    [(partial,)] = rows(engine, "SELECT COUNT(*) FROM ticket")
    assert 0 < int(str(partial)) < TICKETS - len(DELETED) - len(SPAM)
    assert first["tickets_deleted"] == ("2026-04-01T00:00:00Z|", late)  # nothing that late

    report = run_sync(
        engine, [Source("fd", freshdesk(server, clock, key))], since=late - timedelta(days=200)
    )

    assert report.ok
    assert rows(engine, "SELECT COUNT(*) FROM ticket") == [(TICKETS,)]
    after = positions(engine)
    assert after["tickets"] == first["tickets"]  # the backfill ended where the cursor stood


def test_every_request_is_checked_against_the_documented_parameters(
    documented_requests: list[RequestCheck], server: FreshdeskImitation, clock: FakeClock,
    key: str, tmp_path: Path,
) -> None:  # fmt: skip
    """No OpenAPI document: the table in tests/connectors/openapi/freshdesk_documented.py."""
    assert sync(database(tmp_path), freshdesk(server, clock, key)).ok

    [check] = documented_requests
    assert check.checked >= 10
    assert check.violations == []
