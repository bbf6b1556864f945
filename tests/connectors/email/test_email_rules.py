"""SPEC §3b's email rules, one small mailbox each, against a real Dovecot (issue 22).

Auto-replies are bot messages that never open, join, merge or reopen a thread by subject;
one Message-ID in several folders is one message; where mail sits tells only the thread's
state now; a reopen is a customer mail after a solve the connector has established.
"""

from __future__ import annotations

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
