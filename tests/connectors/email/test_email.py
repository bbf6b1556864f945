"""End to end: the email connector syncs a real Dovecot (tests/connectors/dovecot.py) into SQLite.

The mailbox holds realistic threads, appended over IMAP: replies with and without References,
a subject-only thread, an auto-reply, an internal forward, a Latin-1 message, a message
without Date or Message-ID, a broken MIME message, a survey reply, a reopened thread and a
resolved folder. Every ticket, message and derived field is asserted exactly.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cskpi.connectors.email.connector import EmailConnector, EmailSettings
from cskpi.connectors.email.parse import key
from cskpi.core.clock import FakeClock
from cskpi.core.http.client import AuthError
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, SyncReport, run_sync
from tests.connectors.email.dovecot import Dovecot, available

pytestmark = [
    pytest.mark.skipif(not available(), reason="Dovecot is not installed (apt dovecot-imapd)"),
    pytest.mark.usefixtures("no_real_sleep"),
]

NOW = datetime(2026, 11, 23, tzinfo=UTC)
DAY = "Mon, 16 Nov 2026"
NO_DATE_RECEIVED = datetime(2026, 11, 19, 14, 0, tzinfo=UTC)


def mail(*headers: str, body: str = "Hello", raw_body: bytes | None = None) -> bytes:
    head = "\r\n".join(headers).encode()
    return head + b"\r\n\r\n" + (raw_body if raw_body is not None else body.encode() + b"\r\n")


def ts(text: str) -> int:
    """Unix seconds of ``2026-11-DD HH:MM`` (UTC), as stored."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp())


INBOX = [
    # T1: Carla's invoice; her follow-up answers Ana's reply with In-Reply-To only.
    mail("From: Carla Ruiz <carla@customer.test>", "To: support@acme.test",
         "Subject: Invoice 1142 is wrong", f"Date: {DAY} 09:00:00 +0000",
         "Message-ID: <c1@customer.test>"),
    mail("From: carla@customer.test", "To: support@acme.test",
         "Subject: Re: Invoice 1142 is wrong", f"Date: {DAY} 11:00:00 +0000",
         "Message-ID: <c2@customer.test>", "In-Reply-To: <a1@acme.test>"),
    # T2: Dave writes from Gmail; the answers carry no threading headers at all.
    mail("From: Dave <dave@gmail.com>", "To: support@acme.test", "Subject: Password reset",
         "Date: Tue, 17 Nov 2026 08:00:00 +0000", "Message-ID: <d1@mail.gmail.com>"),
    mail("From: Dave <dave@gmail.com>", "To: support@acme.test",
         "Subject: AW: Password reset", "Date: Tue, 17 Nov 2026 10:00:00 +0000",
         "Message-ID: <d2@mail.gmail.com>"),
    # T3: Erin's order question gets our autoresponder, nothing else.
    mail("From: erin@initech.test", "To: support@acme.test", "Subject: Where is order 77?",
         "Date: Wed, 18 Nov 2026 09:00:00 +0000", "Message-ID: <e1@initech.test>"),
    mail("From: support@acme.test", "To: erin@initech.test", "Subject: Re: Where is order 77?",
         "Date: Wed, 18 Nov 2026 09:00:05 +0000", "Message-ID: <auto1@acme.test>",
         "In-Reply-To: <e1@initech.test>", "Auto-Submitted: auto-replied"),
    # T4: Latin-1 headers and body, and a sender name in an unknown charset.
    b"From: =?x-unknown?Q?Fr=E4nk?= <frank@umbrella.test>\r\nTo: support@acme.test\r\n"
    b"Subject: Gr\xfc\xdfe aus K\xf6ln\r\nDate: Wed, 18 Nov 2026 12:00:00 +0100\r\n"
    b"Message-ID: <f1@umbrella.test>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
    b"Sch\xf6ne Gr\xfc\xdfe\r\n",
    # T5: no Date and no Message-ID: INTERNALDATE and a hash of date, sender and subject.
    mail("From: grace@globex.test", "To: support@acme.test", "Subject: Cancel my plan"),
    # T6: Henry writes again after his thread was filed as resolved: a reopen.
    mail("From: henry@hooli.test", "To: support@acme.test", "Subject: Re: Export fails",
         "Date: Thu, 12 Nov 2026 09:00:00 +0000", "Message-ID: <h2@hooli.test>",
         "In-Reply-To: <ah1@acme.test>", "References: <h1@hooli.test> <ah1@acme.test>"),
    # T8: a multipart message without a boundary, in a charset nobody knows.
    mail("From: jack@stark.test", "To: support@acme.test", "Subject: Help",
         "Date: Fri, 20 Nov 2026 08:00:00 +0000", "Message-ID: <j1@stark.test>",
         "Content-Type: multipart/mixed", raw_body=b"--x\r\nContent-Type: text/plain; "
         b"charset=bogus\r\n\r\n\xff\xfe broken\r\n"),
]  # fmt: skip
SENT = [
    mail("From: Ana <ana@acme.test>", "To: carla@customer.test",
         "Subject: Re: Invoice 1142 is wrong", f"Date: {DAY} 10:00:00 +0000",
         "Message-ID: <a1@acme.test>", "In-Reply-To: <c1@customer.test>",
         "References: <c1@customer.test>"),
    # An internal forward to a colleague: not a reply.
    mail("From: Ana <ana@acme.test>", "To: bob@acme.test",
         "Subject: Fwd: Invoice 1142 is wrong", f"Date: {DAY} 11:30:00 +0000",
         "Message-ID: <fw1@acme.test>", "References: <c1@customer.test> <c2@customer.test>"),
    mail("From: Bob <bob@acme.test>", "To: carla@customer.test", "Cc: ana@acme.test",
         "Subject: Re: Invoice 1142 is wrong", f"Date: {DAY} 12:00:00 +0000",
         "Message-ID: <a2@acme.test>", "In-Reply-To: <c2@customer.test>",
         "References: <c1@customer.test> <a1@acme.test> <c2@customer.test>"),
    mail("From: Ben <ben@acme.test>", "To: dave@gmail.com", "Subject: RE: Password reset",
         "Date: Tue, 17 Nov 2026 09:00:00 +0000", "Message-ID: <b1@acme.test>"),
    mail("From: Ana <ana@acme.test>", "To: henry@hooli.test", "Subject: Re: Export fails",
         "Date: Tue, 10 Nov 2026 10:00:00 +0000", "Message-ID: <ah1@acme.test>",
         "In-Reply-To: <h1@hooli.test>", "References: <h1@hooli.test>"),
    mail("From: Ana <ana@acme.test>", "To: ivy@wayne.test", "Subject: Re: Refund",
         "Date: Fri, 13 Nov 2026 11:00:00 +0000", "Message-ID: <ai1@acme.test>",
         "In-Reply-To: <i1@wayne.test>", "References: <i1@wayne.test>"),
    # Outbound mail nobody answered: no ticket.
    mail("From: Ana <ana@acme.test>", "To: lead@prospect.test", "Subject: Your trial",
         "Date: Fri, 20 Nov 2026 09:00:00 +0000", "Message-ID: <o1@acme.test>"),
]  # fmt: skip
RESOLVED = [
    mail("From: henry@hooli.test", "To: support@acme.test", "Subject: Export fails",
         "Date: Tue, 10 Nov 2026 09:00:00 +0000", "Message-ID: <h1@hooli.test>"),
    mail("From: Ivy <ivy@wayne.test>", "To: support@acme.test", "Subject: Refund",
         "Date: Fri, 13 Nov 2026 09:00:00 +0000", "Message-ID: <i1@wayne.test>"),
    # Ivy's survey answer: a rating, not a reopen.
    mail("From: Ivy <ivy@wayne.test>", "To: support@acme.test", "Subject: Re: Refund",
         "Date: Sat, 14 Nov 2026 08:00:00 +0000", "Message-ID: <i2@wayne.test>",
         "In-Reply-To: <ai1@acme.test>", body="Rating: 5/5 - thanks!"),
]  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    running = Dovecot()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def dovecot(server: Dovecot) -> Dovecot:
    """An empty mailbox of its own for each test."""
    return server.mailbox()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Dovecot:
    dovecot.append("INBOX", INBOX[:7])
    dovecot.append("INBOX", [INBOX[7]], when=NO_DATE_RECEIVED)
    dovecot.append("INBOX", INBOX[8:])
    dovecot.append("Sent", SENT)
    dovecot.append("Resolved", RESOLVED)
    return dovecot


def connector(server: Dovecot, now: datetime = NOW, **extra: Any) -> EmailConnector:
    extra.setdefault("port", server.port)
    extra.setdefault("page_size", 4)
    settings = EmailSettings(
        type="email", host="127.0.0.1", tls="none", username=server.user,
        password="env:MAILBOX_PASSWORD", agent_addresses=["support@acme.test", "*@acme.test"],
        resolved_folders=["Resolved"], rating_pattern=r"Rating: (\d)/5", **extra,
    )  # fmt: skip
    return EmailConnector("box", settings, clock=FakeClock(wall_start=now.timestamp()))


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOX_PASSWORD", "dovecot-test-password")


def sync(engine: Engine, box: EmailConnector) -> SyncReport:
    report = run_sync(engine, [Source("box", box)])
    assert report.ok, [s.error for s in report.streams]
    return report


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    assert engine.url.database is not None
    with sqlite3.connect(engine.url.database) as conn:
        return conn.execute(sql).fetchall()


def tickets(engine: Engine) -> dict[str, tuple[Any, ...]]:
    found = query(
        engine,
        "SELECT external_id, subject, status, raw_status, requester_id, organization_id, "
        "assignee_id, created_at, first_reply_at, first_solved_at, solved_at, agent_replies, "
        "reopens, channel, deleted FROM ticket ORDER BY created_at",
    )
    return {row[0]: tuple(unprefixed(v) for v in row[1:]) for row in found}


def unprefixed(value: Any) -> Any:
    """Stored references carry the connector's name; the expectations leave it out."""
    return value.removeprefix("box:") if isinstance(value, str) else value


def messages(engine: Engine) -> list[tuple[Any, ...]]:
    found = query(
        engine,
        "SELECT m.id, t.subject, m.author_id, m.author_role, m.public, m.created_at "
        "FROM message m JOIN ticket t ON t.id = m.ticket_id ORDER BY m.created_at, m.id",
    )
    return [tuple(unprefixed(v) for v in row) for row in found]


def content(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("ticket", "message", "rating", "person", "organization")
    return {t: query(engine, f"SELECT * FROM {t} ORDER BY id") for t in tables}


def k(message_id: str) -> str:
    return key(message_id)


GRACE = key(f"{NO_DATE_RECEIVED.isoformat()}|grace@globex.test|Cancel my plan")
EXPECTED_TICKETS = {
    k("h1@hooli.test"): (
        "Export fails", "open", "open", "henry@hooli.test", "hooli.test", "ana@acme.test",
        ts("2026-11-10 09:00"), ts("2026-11-10 10:00"), ts("2026-11-10 10:00"),
        ts("2026-11-10 10:00"), 1, 1, "email", 0,
    ),
    k("i1@wayne.test"): (
        "Refund", "solved", "resolved_folder", "ivy@wayne.test", "wayne.test", "ana@acme.test",
        ts("2026-11-13 09:00"), ts("2026-11-13 11:00"), ts("2026-11-13 11:00"),
        ts("2026-11-13 11:00"), 1, 0, "email", 0,
    ),
    k("c1@customer.test"): (
        "Invoice 1142 is wrong", "open", "answered", "carla@customer.test", "customer.test",
        "bob@acme.test", ts("2026-11-16 09:00"), ts("2026-11-16 10:00"), None, None, 2, 0,
        "email", 0,
    ),
    k("d1@mail.gmail.com"): (
        "Password reset", "open", "open", "dave@gmail.com", None, "ben@acme.test",
        ts("2026-11-17 08:00"), ts("2026-11-17 09:00"), None, None, 1, 0, "email", 0,
    ),
    k("e1@initech.test"): (
        "Where is order 77?", "open", "open", "erin@initech.test", "initech.test", None,
        ts("2026-11-18 09:00"), None, None, None, 0, 0, "email", 0,
    ),
    k("f1@umbrella.test"): (
        "Grüße aus Köln", "open", "open", "frank@umbrella.test", "umbrella.test", None,
        ts("2026-11-18 11:00"), None, None, None, 0, 0, "email", 0,
    ),
    GRACE: (
        "Cancel my plan", "open", "open", "grace@globex.test", "globex.test", None,
        ts("2026-11-19 14:00"), None, None, None, 0, 0, "email", 0,
    ),
    k("j1@stark.test"): (
        "Help", "open", "open", "jack@stark.test", "stark.test", None,
        ts("2026-11-20 08:00"), None, None, None, 0, 0, "email", 0,
    ),
}  # fmt: skip


def test_a_mailbox_becomes_exactly_these_tickets(
    mailbox: Dovecot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cskpi")
    engine = open_engine(f"sqlite:///{tmp_path / 'mail.db'}")

    sync(engine, connector(mailbox))

    assert tickets(engine) == EXPECTED_TICKETS
    carla = [m[2:] for m in messages(engine) if m[1] == "Invoice 1142 is wrong"]
    assert carla == [
        ("carla@customer.test", "customer", 1, ts("2026-11-16 09:00")),
        ("ana@acme.test", "agent", 1, ts("2026-11-16 10:00")),
        ("carla@customer.test", "customer", 1, ts("2026-11-16 11:00")),
        ("ana@acme.test", "agent", 0, ts("2026-11-16 11:30")),  # the internal forward
        ("bob@acme.test", "agent", 1, ts("2026-11-16 12:00")),
    ]
    roles = {(m[1], m[3]) for m in messages(engine)}
    assert ("Where is order 77?", "bot") in roles
    assert len(messages(engine)) == 19  # every mail but the unanswered outbound one
    assert query(engine, "SELECT id, ticket_id, kind, score, scale_min, scale_max, agent_id "
                         "FROM rating") == [
        (f"box:{k('i2@wayne.test')}", f"box:{k('i1@wayne.test')}", "csat", 5.0, 1.0, 5.0,
         "box:ana@acme.test"),
    ]  # fmt: skip
    people = query(engine, "SELECT external_id, role, name FROM person ORDER BY external_id")
    assert ("carla@customer.test", "customer", "Carla Ruiz") in people
    assert ("ben@acme.test", "agent", "Ben") in people
    assert "INBOX UID 8: Date missing, unparseable or absurd; using INTERNALDATE" in caplog.text
    assert "INBOX UID 7: headers are not UTF-8; decoded best-effort" in caplog.text
    stored = histories(engine)
    for tid, row in tickets(engine).items():
        if not row[-1]:  # a ticket merged away has no history
            assert_history_agrees(stored[tid], row)


def histories(engine: Engine) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for ticket_id, at, status in query(
        engine, "SELECT ticket_id, at, status FROM status_change ORDER BY ticket_id, at"
    ):
        found.setdefault(unprefixed(ticket_id), []).append((at, status))
    return found


def assert_history_agrees(history: list[tuple[int, str]], row: tuple[Any, ...]) -> None:
    """SPEC §3 of a mail thread: open at creation, solved at each solve its rules
    established, open at each reopen, ending in the ticket's status."""
    status, created, first_solved, solved, reopens = row[1], row[6], row[8], row[9], row[11]
    assert history[0] == (created, "open")
    assert [s for _, s in history] == ["open", "solved"] * reopens + ["open"] + (
        ["solved"] if status == "solved" else []
    ), history
    solves = [at for at, s in history if s == "solved"]
    assert (solves[0] if solves else None) == first_solved
    assert (solves[-1] if solves else None) == solved


def test_sync_leaves_the_mailbox_unread(mailbox: Dovecot, tmp_path: Path) -> None:
    sync(open_engine(f"sqlite:///{tmp_path / 'mail.db'}"), connector(mailbox))
    with mailbox.client() as imap:
        imap.select_folder("INBOX", readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    assert all(b"\\Seen" not in f for f in flags.values())


def test_check_logs_in_and_opens_every_folder(mailbox: Dovecot) -> None:
    connector(mailbox).check()
    with pytest.raises(Exception, match="Archive"):
        connector(mailbox, folders=["INBOX", "Archive"]).check()


def test_a_wrong_password_names_the_secret_to_fix(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBOX_PASSWORD", "not-the-password")
    with pytest.raises(AuthError, match=r"check the password of connector box") as caught:
        connector(dovecot).check()
    assert "connectors.box.password" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


def test_an_unreachable_server_is_named(dovecot: Dovecot) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        box = connector(dovecot, port=port)
    with pytest.raises(ConnectionError, match=rf"cannot reach the IMAP server 127.0.0.1:{port}"):
        box.check()
