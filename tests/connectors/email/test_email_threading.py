"""The email connector's parts without a server: parsing, threading, derived fields, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cskpi.connectors.email.connector import EmailSettings
from cskpi.connectors.email.parse import key, parse_mail
from cskpi.connectors.email.threads import (
    AGENT,
    BOT,
    CUSTOMER,
    INTERNAL,
    Arrival,
    Entry,
    MailState,
    Thread,
    normalise_subject,
)
from cskpi.connectors.email.tickets import Rules, status_history, ticket_of

NOW = datetime(2026, 11, 23, tzinfo=UTC)
WEEK = timedelta(days=7)
H = 3600
T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())  # a Monday, 09:00
RULES = Rules(resolve_after=None, rating_kind="csat", rating_scale=(1, 5))


def arrival(
    mid: str, at: int, role: str = CUSTOMER, *, parents: tuple[str, ...] = (),
    subject: str = "Order", customer: str | None = "c@x.test", resolved: bool = False,
    score: float | None = None,
) -> Arrival:  # fmt: skip
    author = customer if role == CUSTOMER else "ana@acme.test"
    entry = Entry(mid, at, role, author, resolved, score)
    return Arrival(mid, parents, subject, customer, entry)


def thread_of(*entries: Entry) -> Thread:
    return Thread(1, "Order", "c@x.test", {e.id: e for e in entries})


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Order 7", ("order 7", True)),
        ("AW: WG: Re[2]:  Order 7", ("order 7", True)),
        ("SV: Fwd: order 7", ("order 7", True)),
        ("Order 7", ("order 7", False)),
        ("Reorder 7", ("reorder 7", False)),
        ("", ("", False)),
    ],
)
def test_subjects_lose_reply_and_forward_prefixes(subject: str, expected: tuple[str, bool]) -> None:
    assert normalise_subject(subject) == expected


def test_a_message_linking_two_threads_merges_them_and_retires_the_later_ticket() -> None:
    state = MailState()
    state.add(arrival("c1", T0), WEEK)
    state.add(arrival("c2", T0 + 2 * H, parents=("a1",), subject="Other"), WEEK)
    state.threads[2].ticket = "c2"  # emitted already
    state.take_changes()

    state.add(arrival("a1", T0 + H, AGENT, parents=("c1",)), WEEK)

    touched, retired, _ = state.take_changes()
    assert [t.no for t in touched] == [2]  # the thread with an emitted ticket stays
    assert sorted(touched[0].entries) == ["a1", "c1", "c2"]
    assert retired == []  # thread 1 had emitted no ticket
    ticket = ticket_of(touched[0], RULES, NOW)
    assert ticket is not None
    assert (ticket.external_id, ticket.subject, ticket.agent_replies) == ("c1", "Order", 1)


def test_a_phantom_parent_arriving_later_joins_its_replies() -> None:
    state = MailState()
    state.add(arrival("c2", T0 + 2 * H, parents=("c1", "a1")), WEEK)
    state.add(arrival("c1", T0), WEEK)
    assert len(state.threads) == 1
    assert state.threads[1].phantoms == {"a1"}


@pytest.mark.parametrize(
    ("later", "customer", "subject", "joins"),
    [
        (6 * 24 * H, "c@x.test", "Re: Order", True),
        (8 * 24 * H, "c@x.test", "Re: Order", False),  # outside the window
        (H, "d@x.test", "Re: Order", False),  # another customer
        (H, "c@x.test", "Order", False),  # not a reply: a new request
    ],
)
def test_the_subject_joins_a_reply_of_the_same_customer_within_the_window(
    later: int, customer: str, subject: str, joins: bool
) -> None:
    state = MailState()
    state.add(arrival("c1", T0), WEEK)
    state.add(arrival("c2", T0 + later, subject=subject, customer=customer), WEEK)
    assert (len(state.threads) == 1) is joins


@pytest.mark.parametrize("role", [BOT, INTERNAL])
def test_a_mail_linked_only_to_mail_without_a_customer_still_joins_by_subject(role: str) -> None:
    """The sent folder is read first: an auto-acknowledgement or an internal forward citing
    the customer's mail, and the agent's reply without threading headers. The customer's
    mail, linked to the first by headers, must still bring the reply's thread along."""
    state = MailState()
    state.add(arrival("x1", T0 + 60, role, parents=("c1",), subject="Re: Order", customer=None),
              WEEK)  # fmt: skip
    state.add(arrival("a1", T0 + H, AGENT, subject="Re: Order"), WEEK)
    state.add(arrival("c1", T0), WEEK)
    assert [sorted(t.entries) for t in state.threads.values()] == [["a1", "c1", "x1"]]
    assert [t.subject for t in state.threads.values()] == ["Order"]


def test_an_auto_reply_without_a_known_link_waits_alone_and_lends_no_subject() -> None:
    state = MailState()
    state.add(arrival("c1", T0), WEEK)
    state.add(arrival("b1", T0 + H, BOT, subject="Re: Order"), WEEK)  # no headers: no join
    state.add(arrival("b2", T0 + H, BOT, subject="Order", customer="d@x.test"), WEEK)
    state.add(arrival("c2", T0 + 2 * H, subject="Order", customer="d@x.test"), WEEK)
    assert [sorted(t.entries) for t in state.threads.values()] == [["c1"], ["b1"], ["b2"], ["c2"]]
    assert [(t.subject, t.customer) for t in state.threads.values()][1:3] == [("", None)] * 2


def test_the_cursor_keeps_every_thread_and_the_index() -> None:
    state = MailState(folders={"INBOX": (7, 42)})
    state.add(arrival("c1", T0, parents=("x0",), subject="Grüße"), WEEK)
    state.add(arrival("a1", T0 + H, AGENT, parents=("c1",), resolved=True), WEEK)

    loaded = MailState.load(state.dump())

    assert loaded.folders == {"INBOX": (7, 42)}
    assert loaded.threads == state.threads
    assert loaded.index == state.index
    assert loaded.next_no == 2
    assert loaded.position == T0 + H
    with pytest.raises(ValueError, match="--full"):
        MailState.load("opaque")


def test_a_cursor_written_before_the_solves_seen_were_kept_still_loads() -> None:
    row = [1, "Order", "c@x.test", "c1", "solved", [["c1", T0, CUSTOMER, "c@x.test", 1, None]],
           [], T0]  # fmt: skip
    thread = Thread.load(row)
    assert (thread.solved, thread.seen, thread.status) == (None, set(), "solved")
    assert Thread.load(thread.dump()) == thread


def test_rounds_give_replies_reopens_and_solves() -> None:
    thread = thread_of(
        Entry("c1", T0, CUSTOMER, "c@x.test"),
        Entry("c2", T0 + 60, CUSTOMER, "c@x.test", resolved=True),  # one round, filed
        Entry("b1", T0 + 61, BOT, "noreply@acme.test"),
        Entry("i1", T0 + 2 * H, INTERNAL, "ana@acme.test"),
        Entry("a1", T0 + 3 * H, AGENT, "ana@acme.test"),
        Entry("s1", T0 + 4 * H, CUSTOMER, "c@x.test", score=4.0),  # survey: no reopen
        Entry("c3", T0 + 30 * H, CUSTOMER, "c@x.test"),  # after the solve: a reopen
        Entry("a2", T0 + 31 * H, AGENT, "bob@acme.test"),
    )
    ticket = ticket_of(thread, RULES, NOW)
    assert ticket is not None
    assert (ticket.status, ticket.raw_status, ticket.reopens, ticket.agent_replies) == (
        "open", "answered", 1, 2,
    )  # fmt: skip
    assert ticket.first_reply_at == datetime.fromtimestamp(T0 + 3 * H, UTC)
    assert ticket.solved_at == ticket.first_solved_at == datetime.fromtimestamp(T0 + 3 * H, UTC)
    assert ticket.assignee_id == "bob@acme.test"

    quiet = Rules(timedelta(hours=72), "csat", (1, 5))
    solved = ticket_of(thread, quiet, datetime.fromtimestamp(T0 + 31 * H + 72 * H, UTC))
    assert solved is not None
    assert (solved.status, solved.raw_status, solved.reopens) == ("solved", "resolved_after", 1)
    waiting = ticket_of(thread, quiet, datetime.fromtimestamp(T0 + 31 * H + 72 * H - 1, UTC))
    assert waiting is not None
    assert waiting.status == "open"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_a_thread_all_in_resolved_is_one_solve_at_its_latest_message() -> None:
    thread = thread_of(
        Entry("c1", T0, CUSTOMER, "c@x.test", resolved=True),
        Entry("a1", T0 + H, AGENT, "ana@acme.test"),
        Entry("c2", T0 + 2 * H, CUSTOMER, "c@x.test", resolved=True),
        Entry("a2", T0 + 3 * H, AGENT, "ana@acme.test"),
        Entry("b1", T0 + 4 * H, BOT, "c@x.test"),  # her out-of-office: no part in it
    )
    ticket = ticket_of(thread, RULES, NOW)
    assert ticket is not None
    assert (ticket.status, ticket.reopens, ticket.first_solved_at, ticket.solved_at) == (
        "solved", 0, at(T0 + 3 * H), at(T0 + 3 * H),
    )  # fmt: skip
    assert status_history(thread, RULES, NOW) == [(at(T0), "open"), (at(T0 + 3 * H), "solved")]


def test_each_established_solve_followed_by_customer_mail_is_one_reopen() -> None:
    quiet = Rules(timedelta(hours=48), "csat", (1, 5))
    thread = thread_of(
        Entry("c1", T0, CUSTOMER, "c@x.test", resolved=True),
        Entry("c2", T0 + H, CUSTOMER, "c@x.test", resolved=True),  # filed with c1: no solve
        Entry("a1", T0 + 2 * H, AGENT, "ana@acme.test"),
        Entry("c3", T0 + 5 * H, CUSTOMER, "c@x.test"),  # came after the filing: reopen 1
        Entry("a2", T0 + 6 * H, AGENT, "ana@acme.test"),
        Entry("c4", T0 + 60 * H, CUSTOMER, "c@x.test", resolved=True),  # after quiet: 2
        Entry("a3", T0 + 61 * H, AGENT, "ana@acme.test"),
        Entry("c5", T0 + 70 * H, CUSTOMER, "c@x.test", resolved=True),  # seen solved: 3
        Entry("a4", T0 + 71 * H, AGENT, "ana@acme.test"),
        Entry("c6", T0 + 80 * H, CUSTOMER, "c@x.test"),  # came after c5 was filed: 4
    )
    thread.seen = {T0 + 61 * H, T0 + 6 * H}  # the second coincides with the quiet solve
    ticket = ticket_of(thread, quiet, at(T0 + 81 * H))
    assert ticket is not None
    assert (ticket.status, ticket.raw_status, ticket.reopens) == ("open", "open", 4)
    assert (ticket.first_solved_at, ticket.solved_at) == (at(T0 + 2 * H), at(T0 + 71 * H))
    assert status_history(thread, quiet, at(T0 + 81 * H)) == [
        (at(T0), "open"),
        (at(T0 + 2 * H), "solved"), (at(T0 + 5 * H), "open"),
        (at(T0 + 6 * H), "solved"), (at(T0 + 60 * H), "open"),
        (at(T0 + 61 * H), "solved"), (at(T0 + 70 * H), "open"),
        (at(T0 + 71 * H), "solved"), (at(T0 + 80 * H), "open"),
    ]  # fmt: skip


_ROLE = st.sampled_from([CUSTOMER, CUSTOMER, AGENT, AGENT, BOT, INTERNAL])


@settings(max_examples=100, deadline=None, database=None)
@given(
    shape=st.lists(st.tuples(_ROLE, st.booleans(), st.integers(1, 80)), min_size=1, max_size=12),
    seen=st.sets(st.integers(0, 600), max_size=3),
    quiet=st.sampled_from([None, 24]),
    later=st.integers(0, 100),
)
def test_the_status_history_agrees_with_the_ticket(
    shape: list[tuple[str, bool, int]], seen: set[int], quiet: int | None, later: int
) -> None:
    """Whatever the thread: first and last ``solved`` are first_solved_at and solved_at, each
    ``open`` after the first is a reopen, statuses alternate, the last is the status."""
    entries, t = [], T0
    for n, (role, resolved, gap) in enumerate(shape):
        t += gap * H
        author = "c@x.test" if role in (CUSTOMER, BOT) else "ana@acme.test"
        entries.append(Entry(f"m{n}", t, role, author, resolved))
    thread = thread_of(*entries)
    thread.seen = {T0 + s * H for s in seen}
    rules = Rules(timedelta(hours=quiet) if quiet else None, "csat", (1, 5))
    now = at(t + later * H)
    ticket = ticket_of(thread, rules, now)
    history = status_history(thread, rules, now)
    if ticket is None:
        assert history == []
        return
    solves = [when for when, status in history if status == "solved"]
    assert history[0] == (ticket.created_at, "open")
    assert [s for _, s in history] == ["open", "solved"] * (len(history) // 2) + ["open"] * (
        len(history) % 2
    )
    assert [w for w, _ in history] == sorted(w for w, _ in history)
    assert ticket.first_solved_at == (solves[0] if solves else None)
    assert ticket.solved_at == (solves[-1] if solves else None)
    assert ticket.reopens == len(history[1:]) - len(solves)
    assert history[-1][1] == ticket.status


def test_a_thread_without_customer_mail_is_no_ticket() -> None:
    thread = thread_of(Entry("a1", T0, AGENT, "ana@acme.test"))
    assert ticket_of(thread, RULES, NOW) is None


def test_absurd_or_missing_dates_give_way_to_internaldate() -> None:
    received = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    for date in ("Date: Thu, 01 Jan 1970 00:00:00 +0000", "Date: Sat, 01 Jan 2028 00:00:00 +0000",
                 "Date: someday", ""):  # fmt: skip
        raw = f"From: c@x.test\r\n{date}\r\n\r\n".encode()
        assert parse_mail("INBOX", 1, raw, received, NOW).sent_at == received
    raw = b"From: c@x.test\r\nDate: Fri, 20 Nov 2026 10:00:00 -0500\r\n\r\n"
    assert parse_mail("INBOX", 1, raw, received, NOW).sent_at == datetime(2026, 11, 20, 15, 0,
                                                                          tzinfo=UTC)  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "hours"),
    [("EST", 5), ("EDT", 4), ("PST", 8), ("GMT", 0), ("UT", 0), ("Z", 0), ("A", 0), ("-0000", 0)],
)
def test_obsolete_zone_names_are_read_as_rfc_5322_says(zone: str, hours: int) -> None:
    """RFC 5322 §4.3: the US names are their offsets; military letters but Z are unknown,
    read as -0000 (UTC)."""
    raw = f"From: c@x.test\r\nDate: Fri, 20 Nov 2026 10:00:00 {zone}\r\n\r\n".encode()
    sent = parse_mail("INBOX", 1, raw, None, NOW).sent_at
    assert sent == datetime(2026, 11, 20, 10 + hours, 0, tzinfo=UTC)


def test_references_are_read_through_junk_and_exclude_the_mail_itself() -> None:
    raw = (
        b"From: C <C@X.test>\r\nMessage-ID: <m3@x>\r\nReferences: <m1@x> junk\r\n <m2@x> <m3@x>"
        b"\r\nIn-Reply-To: <m2@x> (comment)\r\nTo: a@acme.test, B <b@acme.test>\r\n\r\n"
    )
    mail = parse_mail("INBOX", 3, raw, None, NOW)
    assert mail.id == key("m3@x")
    assert mail.parents == (key("m1@x"), key("m2@x"))
    assert (mail.sender, mail.sender_name) == ("c@x.test", "C")
    assert mail.recipients == ("a@acme.test", "b@acme.test")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls": "none", "host": "imap.acme.test"}, "only for 127.0.0.1"),
        ({"rating_pattern": r"Rating: \d"}, "needs a group"),
        ({"rating_pattern": r"Rating: (\d"}, "not a regular expression"),
        ({"agent_addresses": []}, "agent_addresses"),
        ({"resolve_after": "soon"}, "resolve_after"),
    ],
)
def test_settings_refuse_what_cannot_work(changes: dict[str, object], message: str) -> None:
    table = {"type": "email", "host": "127.0.0.1", "tls": "none", "username": "u",
             "password": "a-literal-secret", "agent_addresses": ["*@acme.test"]}  # fmt: skip
    table.update(changes)
    with pytest.raises(ValidationError, match=message):
        EmailSettings.model_validate(table)


def test_the_email_type_comes_through_the_entry_point_group() -> None:
    from cskpi.connectors import registry
    from cskpi.connectors.email.connector import EmailConnector

    assert registry.installed()["email"] is EmailConnector
