"""End to end: the intercom connector syncs the local Intercom imitation into SQLite.

The imitation (tests/connectors/intercom_server.py) enforces a rate limit per 10-second window
on the same fake clock the connector paces on, so these tests also prove that a sync stays
under the limit from the headers alone, and they never sleep.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cskpi.connectors.intercom import IntercomConnector, IntercomSettings
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import AuthError
from tests.connectors.e2e import (
    by_id,
    content,
    cursors,
    database,
    rows,
    sync,
)
from tests.connectors.intercom_desk import (
    MANY_PARTS,
    SAME_SECOND,
    TOKEN,
)
from tests.connectors.intercom_server import IntercomImitation
from tests.connectors.openapi.check import RequestCheck

CONVERSATIONS = 400
LIMIT = 40  # requests per 10-second window

# Every request the connector sends is checked against the vendor's published document.
pytestmark = pytest.mark.usefixtures("no_real_sleep", "documented_requests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # wall time 1.7e9: the imitation's data lies before it


@pytest.fixture
def server(clock: FakeClock) -> Iterator[IntercomImitation]:
    with IntercomImitation(CONVERSATIONS, seed=3, clock=clock, limit=LIMIT) as imitation:
        yield imitation


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IC_E2E_TOKEN", TOKEN)
    return "env:IC_E2E_TOKEN"


def intercom(server: IntercomImitation, clock: FakeClock, token: str) -> IntercomConnector:
    settings = IntercomSettings(type="intercom", access_token=token, base_url=server.url)
    return IntercomConnector("ic", settings, clock=clock)


def test_a_full_sync_keeps_vanished_conversations_and_the_shared_second_within_the_limit(
    server: IntercomImitation, clock: FakeClock, token: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    server.delete_on_fetch(300)
    engine = database(tmp_path)

    with caplog.at_level(logging.WARNING, "cskpi.intercom"):
        report = sync(engine, intercom(server, clock, token))

    assert report.ok, [s.error for s in report.streams]
    ws = server.ws
    assert rows(engine, "SELECT external_id FROM ticket WHERE deleted") == [("300",)]
    assert rows(engine, "SELECT COUNT(*) FROM message WHERE ticket_id = 'ic:300'") == [(0,)]
    assert "conversation 42 has more parts than the API returns" in caplog.text
    # every conversation of the shared second, across the first page boundary, once each
    same = ",".join(f"'{i}'" for i in SAME_SECOND)
    assert rows(engine, f"SELECT COUNT(*) FROM ticket WHERE external_id IN ({same})") == [(6,)]
    assert sorted(server.fetched()) == sorted({*range(1, CONVERSATIONS + 1)} - {300})
    # the limit itself never answered 429
    assert server.throttled == 0
    served = [int(e.at) // 10 for e in server.log if 0 < e.status < 400]
    assert max(served.count(w) for w in set(served)) <= LIMIT
    newest = max(c.updated for c in ws.convs.values())
    last = [str(c.id) for c in ws.convs.values() if c.updated == newest]
    assert cursors(engine)["tickets"] == f"{newest}:{','.join(sorted(last))}"


def test_ticket_fields_agree_with_the_conversation_timelines(
    server: IntercomImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, intercom(server, clock, token)).ok
    found = rows(
        engine,
        "SELECT external_id, status, first_reply_at, first_solved_at, solved_at, reopens, "
        "agent_replies, group_id, assignee_id FROM ticket ORDER BY CAST(external_id AS INT)",
    )
    expected = []
    for c in sorted(server.ws.convs.values(), key=lambda c: c.id):
        s = c.stats()
        replies = sum(1 for p in c.parts[-500:] if p.kind == "comment" and p.author[0] == "admin")
        solved = s["last_close_at"] if c.state == "closed" else None
        status = {"open": "open", "snoozed": "pending", "closed": "solved"}[c.state]
        expected.append((
            str(c.id), status, s["first_admin_reply_at"], s["first_close_at"], solved,
            s["count_reopens"], replies, f"ic:{c.team}" if c.team else None,
            f"ic:{c.admin}" if c.admin else None,
        ))  # fmt: skip
    assert found == expected
    assert sum(1 for f in found if f[5]) > 10  # plenty of reopens
    roles = dict(rows(engine, "SELECT author_role, COUNT(*) FROM message GROUP BY author_role"))
    assert set(roles) == {"customer", "agent", "bot"}


def test_status_changes_are_the_state_changes_the_parts_record(
    server: IntercomImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    """Every conversation here was started by a contact: open from its creation, then each
    state a part records (closes, reopens, snoozes, snoozes that ran out)."""
    engine = database(tmp_path)
    assert sync(engine, intercom(server, clock, token)).ok
    named = {"open": "open", "snoozed": "pending", "closed": "solved"}

    stored: dict[str, list[tuple[int, str]]] = {}
    sql = "SELECT ticket_id, at, status FROM status_change ORDER BY ticket_id, at"
    for ticket_id, at, status in rows(engine, sql):
        stored.setdefault(str(ticket_id), []).append((int(str(at)), str(status)))

    assert stored == {
        f"ic:{c.id}": [(at, named[state]) for at, state in c.history()]
        for c in server.ws.convs.values()
    }
    kinds = {p.kind for c in server.ws.convs.values() for p in c.parts}
    assert {"close", "open", "snoozed", "timer_unsnooze"} <= kinds
    assert {s for history in stored.values() for _, s in history} == {"open", "pending", "solved"}


def test_a_resync_fetches_nothing_and_changes_refetch_exactly_those(
    server: IntercomImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, intercom(server, clock, token)).ok
    before, fetched = content(engine), len(server.fetched())

    assert sync(engine, intercom(server, clock, token)).ok
    assert content(engine) == before
    assert server.fetched()[fetched:] == []  # the boundary second's ids were dropped

    changed = [5, 150, 151, 399]
    server.ws.touch(changed, priority="urgent")
    assert sync(engine, intercom(server, clock, token)).ok
    after = content(engine)

    assert sorted(server.fetched()[fetched:]) == changed
    old, new = by_id(before["ticket"]), by_id(after["ticket"])
    assert sorted(k for k in old if old[k] != new[k]) == sorted(f"ic:{i}" for i in changed)
    assert len(after["message"]) == len(before["message"]) + 4  # a note each
    assert rows(engine, "SELECT priority FROM ticket WHERE external_id = '150'") == [("urgent",)]


def test_check_passes_with_the_token_and_names_the_secret_when_rejected(
    server: IntercomImitation, clock: FakeClock, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    intercom(server, clock, token).check()
    monkeypatch.setenv("IC_E2E_TOKEN", "a-wrong-token")
    with pytest.raises(AuthError, match=r"connector ic is rejected.*check access_token"):
        intercom(server, clock, token).check()


def test_the_many_parts_conversation_keeps_its_500_most_recent_parts(
    server: IntercomImitation, clock: FakeClock, token: str, tmp_path: Path
) -> None:
    engine = database(tmp_path)
    assert sync(engine, intercom(server, clock, token)).ok
    c = server.ws.convs[MANY_PARTS]
    assert len(c.parts) > 600
    shown = [p for p in c.parts[-500:] if p.kind in ("comment", "note")]
    sql = f"SELECT COUNT(*) FROM message WHERE ticket_id = 'ic:{MANY_PARTS}'"
    assert rows(engine, sql) == [(len(shown) + 1,)]  # and the opening message


def test_every_request_is_checked_against_intercom_openapi_2_16(
    documented_requests: list[RequestCheck], server: IntercomImitation, clock: FakeClock,
    token: str, tmp_path: Path,
) -> None:  # fmt: skip
    """Search bodies, Intercom-Version headers, paths and queries all as 2.16 documents them;
    2.16's one known gap that concerns us (mixed filter lists) is recorded in test_intercom.py."""
    assert sync(database(tmp_path), intercom(server, clock, token)).ok

    [check] = documented_requests
    assert check.checked >= 10
    assert (check.violations, dict(check.met)) == ([], {})
