"""End to end, over time: the email connector against a real Dovecot across several syncs.

Second syncs fetch nothing, new mail becomes exactly the new messages and tickets, a new
UIDVALIDITY doubles nothing, an interrupted sync resumes, quiet and filing solve tickets.
The mailbox and its expected tickets are those of test_email.py.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, StreamResult, run_sync
from tests.connectors.email import test_email as corpus
from tests.connectors.email.dovecot import Dovecot, available
from tests.connectors.email.test_email import (
    EXPECTED_TICKETS,
    NO_DATE_RECEIVED,
    NOW,
    RESOLVED,
    connector,
    content,
    k,
    mail,
    query,
    sync,
    tickets,
    ts,
)

# The same server, mailbox and password fixtures (pytest finds them as module attributes).
server, dovecot, mailbox, password = corpus.server, corpus.dovecot, corpus.mailbox, corpus.password

pytestmark = [
    pytest.mark.skipif(not available(), reason="Dovecot is not installed (apt dovecot-imapd)"),
    pytest.mark.usefixtures("no_real_sleep"),
]


def test_a_second_sync_fetches_nothing_and_new_mail_becomes_exactly_that(
    mailbox: Dovecot, tmp_path: Path
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")
    sync(engine, connector(mailbox))
    before = content(engine)

    again = sync(engine, connector(mailbox))
    assert [(s.pages, s.rows) for s in again.streams] == [(0, 0)]
    assert content(engine) == before

    mailbox.append("INBOX", [
        mail("From: carla@customer.test", "To: support@acme.test",
             "Subject: Re: Invoice 1142 is wrong", "Date: Sat, 21 Nov 2026 09:00:00 +0000",
             "Message-ID: <c3@customer.test>", "In-Reply-To: <a2@acme.test>"),
        mail("From: kim@tyrell.test", "To: support@acme.test", "Subject: New laptop",
             "Date: Sat, 21 Nov 2026 10:00:00 +0000", "Message-ID: <k1@tyrell.test>"),
    ])  # fmt: skip
    sync(engine, connector(mailbox))

    after = tickets(engine)
    assert set(after) - set(EXPECTED_TICKETS) == {k("k1@tyrell.test")}
    assert after[k("k1@tyrell.test")][:7] == (
        "New laptop", "open", "open", "kim@tyrell.test", "tyrell.test", None,
        ts("2026-11-21 10:00"),
    )  # fmt: skip
    assert after[k("c1@customer.test")][2] == "open"  # Carla waits again
    assert query(engine, "SELECT updated_at FROM ticket WHERE subject LIKE 'Invoice%'") == [
        (ts("2026-11-21 09:00"),)
    ]
    assert {a: b for a, b in after.items() if a != k("c1@customer.test")} == {
        **{a: b for a, b in EXPECTED_TICKETS.items() if a != k("c1@customer.test")},
        k("k1@tyrell.test"): after[k("k1@tyrell.test")],
    }
    new = [m for m in content(engine)["message"] if m not in before["message"]]
    assert sorted(m[0] for m in new) == sorted(
        [f"box:{k('c3@customer.test')}", f"box:{k('k1@tyrell.test')}"]
    )


def test_a_new_uidvalidity_rescans_the_folder_and_doubles_nothing(
    mailbox: Dovecot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A filed mail with neither Message-ID nor Date: its id must survive the rescan too.
    filed = mail("From: liz@pied.test", "To: support@acme.test", "Subject: Thanks")
    mailbox.append("Resolved", [filed], when=NO_DATE_RECEIVED)
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")
    sync(engine, connector(mailbox))
    before = content(engine)
    assert len(before["ticket"]) == len(EXPECTED_TICKETS) + 1

    assert mailbox.recreate("Resolved") == [*RESOLVED, filed]  # INBOX cannot be deleted
    caplog.set_level(logging.WARNING, logger="cskpi")
    report = sync(engine, connector(mailbox))

    assert "folder Resolved has a new UIDVALIDITY" in caplog.text
    assert report.streams[0].rows == 0  # every rescanned mail was recognised
    assert content(engine) == before


def test_quiet_after_an_agent_reply_solves_the_ticket_on_a_later_sync(
    mailbox: Dovecot, tmp_path: Path
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")
    earlier = datetime(2026, 11, 19, 13, 0, tzinfo=UTC)
    sync(engine, connector(mailbox, earlier, resolve_after="96h"))
    assert tickets(engine)[k("c1@customer.test")][1:3] == ("open", "answered")

    report = sync(engine, connector(mailbox, NOW, resolve_after="96h"))

    carla = tickets(engine)[k("c1@customer.test")]
    assert carla[1:3] == ("solved", "resolved_after")
    assert carla[8:10] == (ts("2026-11-16 12:00"), ts("2026-11-16 12:00"))
    # Dave and Henry wrote last: quiet solves nothing there.
    assert tickets(engine)[k("d1@mail.gmail.com")][1:3] == ("open", "open")
    assert tickets(engine)[k("h1@hooli.test")][1:3] == ("open", "open")
    assert report.streams[0].pages == 1


def test_a_sync_stopped_between_pages_resumes_to_the_same_result(
    mailbox: Dovecot, tmp_path: Path
) -> None:
    clean = open_engine(f"sqlite:///{tmp_path / 'clean.db'}")
    sync(clean, connector(mailbox))
    engine = open_engine(f"sqlite:///{tmp_path / 'resumed.db'}")
    told = threading.Event()

    class StopAfterTwoPages:
        def stream_started(self, connector: str, stream: str) -> None:
            pass

        def page_stored(self, result: StreamResult) -> None:
            if result.pages == 2:
                told.set()

        def stream_finished(self, result: StreamResult) -> None:
            pass

    source = Source("box", connector(mailbox))
    first = run_sync(engine, [source], observer=StopAfterTwoPages(), stop=told.is_set)
    assert first.streams[0].pages == 2
    assert content(engine) != content(clean)
    sync(engine, connector(mailbox))

    assert content(engine) == content(clean)


def test_a_start_date_reads_every_thread_but_stores_those_active_since(
    mailbox: Dovecot, tmp_path: Path
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")
    start = datetime(2026, 11, 15, tzinfo=UTC)
    report = run_sync(engine, [Source("box", connector(mailbox), start_date=start)])
    assert report.ok

    stored = tickets(engine)
    assert set(stored) == set(EXPECTED_TICKETS) - {k("h1@hooli.test"), k("i1@wayne.test")}
    assert stored[k("c1@customer.test")] == EXPECTED_TICKETS[k("c1@customer.test")]


def test_filing_a_thread_into_the_resolved_folder_solves_it_on_the_next_sync(
    mailbox: Dovecot, tmp_path: Path
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")
    sync(engine, connector(mailbox))
    with mailbox.client() as imap:
        imap.select_folder("INBOX")
        imap.move(imap.search(["HEADER", "Message-ID", "d2@mail.gmail.com"]), "Resolved")

    report = sync(engine, connector(mailbox))

    dave = tickets(engine)[k("d1@mail.gmail.com")]
    assert dave[1:3] == ("solved", "resolved_folder")
    assert dave[8:12] == (ts("2026-11-17 10:00"), ts("2026-11-17 10:00"), 1, 0)
    assert report.streams[0].rows == 3  # the ticket and its history (open, solved)
