"""SPEC §3b's email rules, one small mailbox each, against a real Dovecot (issue 22).

Auto-replies are bot messages that never open, join, merge or reopen a thread by subject;
one Message-ID in several folders is one message; where mail sits tells only the thread's
state now; a reopen is a customer mail after a solve the connector has established.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cskpi.core.store.engine import open_engine
from tests.connectors.email import test_email as corpus
from tests.connectors.email.dovecot import Dovecot, available
from tests.connectors.email.test_email import connector, mail, query, sync, ts

server, dovecot, password = corpus.server, corpus.dovecot, corpus.password

pytestmark = [
    pytest.mark.skipif(not available(), reason="Dovecot is not installed (apt dovecot-imapd)"),
    pytest.mark.usefixtures("no_real_sleep"),
]

FIELDS = (
    "status, raw_status, created_at, first_reply_at, first_solved_at, solved_at, "
    "agent_replies, reopens"
)


def msg(sender: str, to: str, subject: str, at: str, mid: str | None, *extra: str,
        body: str = "Hello") -> bytes:  # fmt: skip
    """A mail dated ``2026-11-DD HH:MM`` UTC."""
    when = datetime.strptime(at, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    headers = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
               f"Date: {when:%a, %d %b %Y %H:%M:%S} +0000"]  # fmt: skip
    if mid:
        headers.append(f"Message-ID: <{mid}>")
    return mail(*headers, *extra, body=body)


def by_requester(engine: Engine) -> dict[str, tuple[Any, ...]]:
    rows = query(engine, f"SELECT requester_id, {FIELDS} FROM ticket WHERE deleted = 0")
    return {str(r[0]).removeprefix("box:"): r[1:] for r in rows}


def message_roles(engine: Engine) -> list[tuple[str, str]]:
    rows = query(
        engine,
        "SELECT t.requester_id, m.author_role FROM message m JOIN ticket t ON t.id = m.ticket_id "
        "ORDER BY m.created_at",
    )
    return [(str(r[0]).removeprefix("box:"), r[1]) for r in rows]


def engine_in(tmp_path: Path) -> Engine:
    return open_engine(f"sqlite:///{tmp_path / 'mail.db'}")


SUPPORT = "support@acme.test"
AUTO = "Auto-Submitted: auto-replied"


def test_the_shared_address_auto_acknowledgements_merge_no_threads(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """Two customers write "Help"; the auto-acknowledgements (sent folder, read first) share
    a subject and a sender: they once made one thread of both customers' mail."""
    dovecot.append("Sent", [
        msg(SUPPORT, "ann@a.test", "Re: Help", "2026-11-16 09:00", "ack1@acme.test", AUTO,
            "In-Reply-To: <ann1@a.test>"),
        msg(SUPPORT, "bo@b.test", "Re: Help", "2026-11-16 10:00", "ack2@acme.test", AUTO,
            "In-Reply-To: <bo1@b.test>"),
    ])  # fmt: skip
    dovecot.append("INBOX", [
        msg("ann@a.test", SUPPORT, "Help", "2026-11-16 09:00", "ann1@a.test"),
        msg("bo@b.test", SUPPORT, "Help", "2026-11-16 10:00", "bo1@b.test"),
    ])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))

    found = by_requester(engine)
    assert sorted(found) == ["ann@a.test", "bo@b.test"]
    assert found["ann@a.test"][:2] == ("open", "open")
    assert found["ann@a.test"][3] is None  # an auto-acknowledgement is no first reply
    assert sorted(message_roles(engine)) == [
        ("ann@a.test", "bot"), ("ann@a.test", "customer"),
        ("bo@b.test", "bot"), ("bo@b.test", "customer"),
    ]  # fmt: skip


def test_an_out_of_office_joins_no_thread_by_subject_and_ends_no_resolution(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """Cy's out-of-office without threading headers stays out of her thread; Di's, answering
    the agent's reply after the thread was filed, is stored but reopens nothing."""
    dovecot.append("Sent", [
        msg("ana@acme.test", "cy@c.test", "Re: Login", "2026-11-16 10:00", "a1@acme.test",
            "In-Reply-To: <cy1@c.test>"),
        msg("ana@acme.test", "di@d.test", "Re: Refund", "2026-11-17 10:00", "a2@acme.test",
            "In-Reply-To: <di1@d.test>"),
    ])  # fmt: skip
    dovecot.append("Resolved", [
        msg("cy@c.test", SUPPORT, "Login", "2026-11-16 09:00", "cy1@c.test"),
        msg("di@d.test", SUPPORT, "Refund", "2026-11-17 09:00", "di1@d.test"),
    ])  # fmt: skip
    dovecot.append("INBOX", [
        msg("cy@c.test", SUPPORT, "Re: Login", "2026-11-16 11:00", "ooo1@c.test",
            "X-Autoreply: yes"),
        msg("di@d.test", "ana@acme.test", "Automatic reply: Re: Refund", "2026-11-17 11:00",
            "ooo2@d.test", "Precedence: auto_reply", "In-Reply-To: <a2@acme.test>"),
    ])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))

    found = by_requester(engine)
    solved_at = ts("2026-11-16 10:00"), ts("2026-11-16 10:00")
    assert found["cy@c.test"] == ("solved", "resolved_folder", ts("2026-11-16 09:00"),
                                  ts("2026-11-16 10:00"), *solved_at, 1, 0)  # fmt: skip
    solved_at = ts("2026-11-17 10:00"), ts("2026-11-17 10:00")
    assert found["di@d.test"] == ("solved", "resolved_folder", ts("2026-11-17 09:00"),
                                  ts("2026-11-17 10:00"), *solved_at, 1, 0)  # fmt: skip
    assert sorted(message_roles(engine)) == [
        ("cy@c.test", "agent"), ("cy@c.test", "customer"),
        ("di@d.test", "agent"), ("di@d.test", "bot"), ("di@d.test", "customer"),
    ]  # fmt: skip


def test_only_the_spec_s_headers_make_an_auto_reply(dovecot: Dovecot, tmp_path: Path) -> None:
    """Outlook puts X-Auto-Response-Suppress on people's own mail: that is a customer's."""
    dovecot.append("INBOX", [
        msg("ed@e.test", SUPPORT, "Quote", "2026-11-16 09:00", "ed1@e.test",
            "X-Auto-Response-Suppress: All"),
        msg("fay@f.test", SUPPORT, "Quote", "2026-11-16 09:00", "fay1@f.test",
            "Auto-Submitted: no"),
        msg("gus@g.test", SUPPORT, "Out of office", "2026-11-16 09:00", "gus1@g.test",
            "Precedence: bulk"),
    ])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))
    assert sorted(by_requester(engine)) == ["ed@e.test", "fay@f.test"]


def test_one_message_id_in_two_folders_is_one_message(dovecot: Dovecot, tmp_path: Path) -> None:
    """Ana Cc'd the shared address: each of her two replies sits in Sent and in INBOX, and
    the second one was filed into Resolved with the thread."""
    replies = [
        msg("ana@acme.test", "hal@h.test", "Re: Export", "2026-11-16 10:00", "a1@acme.test",
            f"Cc: {SUPPORT}", "In-Reply-To: <hal1@h.test>"),
        msg("ana@acme.test", "hal@h.test", "Re: Export", "2026-11-16 12:00", None,
            f"Cc: {SUPPORT}", "References: <hal1@h.test> <a1@acme.test> <hal2@h.test>"),
    ]  # fmt: skip
    dovecot.append("Sent", replies)
    dovecot.append("INBOX", [
        msg("hal@h.test", SUPPORT, "Export", "2026-11-16 09:00", "hal1@h.test"),
        replies[0],
        msg("hal@h.test", SUPPORT, "Re: Export", "2026-11-16 11:00", "hal2@h.test",
            "In-Reply-To: <a1@acme.test>"),
    ])  # fmt: skip
    dovecot.append("Resolved", [replies[1]])
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))

    (hal,) = by_requester(engine).values()
    assert hal[6:] == (2, 0)
    assert query(engine, "SELECT author_role, count(*) FROM message GROUP BY 1 ORDER BY 1") == [
        ("agent", 2),
        ("customer", 2),
    ]


def test_a_thread_read_once_all_in_resolved_has_no_reopens(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """Three rounds, all filed together: solved once, at its latest message."""
    dovecot.append("Resolved", [
        msg("ivy@i.test", SUPPORT, "Refund", "2026-11-16 09:00", "i1@i.test"),
        msg("ivy@i.test", SUPPORT, "Re: Refund", "2026-11-16 11:00", "i2@i.test",
            "In-Reply-To: <ai1@acme.test>"),
        msg("ivy@i.test", SUPPORT, "Re: Refund", "2026-11-16 13:00", "i3@i.test",
            "In-Reply-To: <ai2@acme.test>"),
    ])  # fmt: skip
    dovecot.append("Sent", [
        msg("ana@acme.test", "ivy@i.test", "Re: Refund", f"2026-11-16 {h}:00", f"ai{n}@acme.test",
            f"In-Reply-To: <i{n}@i.test>")
        for n, h in ((1, 10), (2, 12), (3, 14))
    ])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot, page_size=2))

    (ivy,) = by_requester(engine).values()
    last = ts("2026-11-16 14:00")
    assert ivy == ("solved", "resolved_folder", ts("2026-11-16 09:00"),
                   ts("2026-11-16 10:00"), last, last, 3, 0)  # fmt: skip


def test_earlier_rounds_filed_with_a_later_one_are_one_solve(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """Rounds 1 and 2 were filed together, then Jo wrote again: one solve, one reopen."""
    dovecot.append("Resolved", [
        msg("jo@j.test", SUPPORT, "Login", "2026-11-16 09:00", "j1@j.test"),
        msg("jo@j.test", SUPPORT, "Re: Login", "2026-11-16 11:00", "j2@j.test",
            "References: <j1@j.test> <aj1@acme.test>"),
    ])  # fmt: skip
    dovecot.append("Sent", [
        msg("ana@acme.test", "jo@j.test", "Re: Login", f"2026-11-16 {h}:00", f"aj{n}@acme.test",
            f"In-Reply-To: <j{n}@j.test>")
        for n, h in ((1, 10), (2, 12))
    ])  # fmt: skip
    dovecot.append("INBOX", [
        msg("jo@j.test", SUPPORT, "Re: Login", "2026-11-17 09:00", "j3@j.test",
            "In-Reply-To: <aj2@acme.test>"),
    ])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))

    (jo,) = by_requester(engine).values()
    solve = ts("2026-11-16 12:00")
    assert jo == ("open", "open", ts("2026-11-16 09:00"), ts("2026-11-16 10:00"),
                  solve, solve, 2, 1)  # fmt: skip


def test_a_thread_seen_solved_reopens_even_when_the_new_mail_is_filed_too(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """A sync saw Kay's thread solved; her next mail and its answer were filed before the
    next sync, so no folder tells of the reopen: the earlier sync does."""
    dovecot.append("Resolved", [msg("kay@k.test", SUPPORT, "VPN", "2026-11-16 09:00", "k1@k.test")])
    dovecot.append("Sent", [msg("ana@acme.test", "kay@k.test", "Re: VPN", "2026-11-16 10:00",
                                "ak1@acme.test", "In-Reply-To: <k1@k.test>")])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))
    (kay,) = by_requester(engine).values()
    assert kay[0] == "solved"

    dovecot.append("Resolved", [msg("kay@k.test", SUPPORT, "Re: VPN", "2026-11-18 09:00",
                                    "k2@k.test", "In-Reply-To: <ak1@acme.test>")])  # fmt: skip
    dovecot.append("Sent", [msg("ana@acme.test", "kay@k.test", "Re: VPN", "2026-11-18 10:00",
                                "ak2@acme.test", "In-Reply-To: <k2@k.test>")])  # fmt: skip
    sync(engine, connector(dovecot))

    (kay,) = by_requester(engine).values()
    assert kay == ("solved", "resolved_folder", ts("2026-11-16 09:00"), ts("2026-11-16 10:00"),
                   ts("2026-11-16 10:00"), ts("2026-11-18 10:00"), 2, 1)  # fmt: skip
    # A third sync with nothing new changes nothing: the solve is not counted again.
    sync(engine, connector(dovecot))
    assert by_requester(engine)["kay@k.test"] == kay


def test_wild_mail_still_makes_one_exact_ticket(dovecot: Dovecot, tmp_path: Path) -> None:
    """A sender in another letter case, an obsolete zone name, In-Reply-To-only,
    References-only and subject-only replies, no Message-ID, a broken MIME tree in an unknown
    charset and a 3 MB attachment (only the first 16 KiB of a body is fetched)."""
    attachment = base64.encodebytes(bytes(range(256)) * 12288)  # 3 MiB before encoding
    dovecot.append("INBOX", [
        mail("From: Lu <LU@L.Test>", f"To: {SUPPORT}", "Subject: Printer",
             "Date: Mon, 16 Nov 2026 04:00:00 EST", "Message-ID: <lu1@l.test>"),
        mail("From: lu@l.test", f"To: {SUPPORT}", "Subject: Re: Printer",
             "Date: Mon, 16 Nov 2026 11:00:00 +0000", "References: <lu1@l.test> <al1@acme.test>",
             "Content-Type: multipart/mixed", raw_body=b"--x\r\nContent-Type: text/plain; "
             b"charset=bogus\r\n\r\n\xff\xfe broken\r\n"),
        mail("From: Lu@l.test", f"To: {SUPPORT}", "Subject: AW: Printer",
             "Date: Mon, 16 Nov 2026 13:00:00 +0000", "Message-ID: <lu3@l.test>",
             'Content-Type: multipart/mixed; boundary="b"',
             raw_body=b"--b\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nScan "
             b"attached\r\n--b\r\nContent-Type: application/pdf\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b--\r\n"),
    ])  # fmt: skip
    dovecot.append("Sent", [
        msg("ana@acme.test", "LU@l.test", "Re: Printer", "2026-11-16 10:00", "al1@acme.test",
            "In-Reply-To: <lu1@l.test>"),
        msg("ana@acme.test", "lu@L.TEST", "Re: Printer", "2026-11-16 14:00", "al2@acme.test"),
    ])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot))

    assert by_requester(engine) == {
        "lu@l.test": ("open", "answered", ts("2026-11-16 09:00"), ts("2026-11-16 10:00"),
                      None, None, 2, 0),
    }  # fmt: skip
    assert [r for _, r in message_roles(engine)] == [
        "customer",
        "agent",
        "customer",
        "customer",
        "agent",
    ]
    assert query(engine, "SELECT external_id, name FROM person WHERE role = 'customer'") == [
        ("lu@l.test", "Lu")
    ]


def test_a_quiet_solve_seen_by_a_sync_stays_a_solve_when_the_agent_writes_again(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    """A sync saw Max's thread solved by resolve_after; then Ana followed up and Max answered
    within an hour. No quiet period and no folder tell of that solve any more: the sync did."""
    dovecot.append("INBOX", [msg("max@m.test", SUPPORT, "Setup", "2026-11-16 09:00", "x1@m.test")])
    dovecot.append("Sent", [msg("ana@acme.test", "max@m.test", "Re: Setup", "2026-11-16 10:00",
                                "ax1@acme.test", "In-Reply-To: <x1@m.test>")])  # fmt: skip
    engine = engine_in(tmp_path)
    sync(engine, connector(dovecot, datetime(2026, 11, 19, tzinfo=UTC), resolve_after="48h"))
    assert by_requester(engine)["max@m.test"][:2] == ("solved", "resolved_after")

    dovecot.append("Sent", [msg("ana@acme.test", "max@m.test", "Re: Setup", "2026-11-19 12:00",
                                "ax2@acme.test", "In-Reply-To: <x1@m.test>")])  # fmt: skip
    dovecot.append("INBOX", [msg("max@m.test", SUPPORT, "Re: Setup", "2026-11-19 13:00",
                                 "x2@m.test", "In-Reply-To: <ax2@acme.test>")])  # fmt: skip
    sync(engine, connector(dovecot, datetime(2026, 11, 19, 14, 0, tzinfo=UTC), resolve_after="48h"))

    solve = ts("2026-11-16 10:00")
    assert by_requester(engine)["max@m.test"] == (
        "open", "open", ts("2026-11-16 09:00"), solve, solve, solve, 2, 1,
    )  # fmt: skip
