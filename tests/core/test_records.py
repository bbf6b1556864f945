"""Records no KPI can survive are skipped and counted, whoever sent them; the rest of the
page is stored and the cursor moves on, so the next sync does not meet them again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from cskpi.connectors import base
from cskpi.core.records import screen
from cskpi.core.store.engine import open_engine
from cskpi.core.sync import Source, run_sync
from tests.fakes import T0, FakeConnector, FakeStream, ticket


def rating(**overrides: Any) -> base.Rating:
    values: dict[str, Any] = {"external_id": "r1", "kind": "csat", "score": 4, "scale_min": 1,
                              "scale_max": 5, "rated_at": T0, "ticket_id": "1"}  # fmt: skip
    return base.Rating(**{**values, **overrides})


# payload -> the reason logged (None: stored as it is)
BAD: list[tuple[str, base.Record, str | None]] = [
    (
        "lone surrogate in a subject",
        ticket(1, subject="Hi \ud800"),
        "subject: text that is not valid",
    ),
    (
        "lone surrogate in a name",
        base.Person("p1", "customer", "Ann \udfff"),
        "name: text that is not valid",
    ),
    ("lone surrogate in a tag", ticket(1, tags=["ok", "\ud83d"]), "tags: text that is not valid"),
    (
        "year 9999",
        ticket(1, first_reply_at=datetime(9999, 12, 31, tzinfo=UTC)),
        "first_reply_at: 9999-12-31T00:00:00+00:00 is outside",
    ),
    (
        "year 1",
        ticket(1, created_at=datetime(1, 1, 1, tzinfo=UTC)),
        "created_at: 0001-01-01T00:00:00+00:00 is outside",
    ),
    ("a score of Infinity", rating(score=float("inf")), "score: inf is not a usable number"),
    ("a score of 1e300", rating(score=1e300), "score: 1e+300 is not a usable number"),
    ("NaN on a scale", rating(scale_max=float("nan")), "scale_max: nan is not a usable number"),
    ("a status SPEC does not name", ticket(1, status="weird"), "status: 'weird' is not one of"),
    ("a channel SPEC does not name", ticket(1, channel="fax"), "channel: 'fax' is not one of"),
    (
        "a role SPEC does not name",
        base.Message("m1", "1", T0, "robot"),
        "author_role: 'robot' is not one of",
    ),  # type: ignore[arg-type]
    ("a rating kind SPEC does not name", rating(kind="stars"), "kind: 'stars' is not one of"),
    ("a negative counter", ticket(1, reopens=-1), "reopens: -1 is not a count"),
    (
        "a counter past INTEGER",
        ticket(1, agent_replies=2**31),
        "agent_replies: 2147483648 is not a count",
    ),
    (
        "a naive time",
        ticket(1, solved_at=datetime(2026, 1, 2)),
        "solved_at: 2026-01-02T00:00:00 has no time zone",
    ),
    ("not a record at all", None, "not a record: NoneType"),  # type: ignore[list-item]
    ("a fine ticket", ticket(1, subject="Ünïcödé ✓", priority=None), None),
]


@pytest.mark.parametrize(("case", "record", "reason"), BAD, ids=[case for case, _, _ in BAD])
def test_a_record_no_kpi_can_survive_is_skipped_with_the_field_named(
    case: str, record: base.Record, reason: str | None
) -> None:
    kept, skipped = screen(base.Page([record, ticket(2)]))
    if reason is None:
        assert (kept, skipped) == ([record, ticket(2)], [])
        return
    assert kept == [ticket(2)]
    assert len(skipped) == 1
    assert skipped[0].reason.startswith(reason), skipped[0].reason


def test_a_time_before_creation_is_dropped_from_the_ticket_and_counted() -> None:
    early = ticket(1, first_reply_at=T0 - timedelta(days=1), solved_at=T0 - timedelta(hours=1))
    kept, skipped = screen(base.Page([early]))
    (repaired,) = kept
    assert isinstance(repaired, base.Ticket)
    assert (repaired.first_reply_at, repaired.solved_at) == (None, None)
    assert [s.reason for s in skipped] == [
        "first_reply_at before created_at: dropped from the ticket",
        "solved_at before created_at: dropped from the ticket",
    ]
    assert early.first_reply_at is not None  # the connector's record is left alone


def test_bad_records_never_block_a_connector(tmp_path: Path) -> None:
    """Each bad record in its own page: every page stored, the cursor at the end, the
    skips counted in sync_run, and the next sync has nothing left to fail on."""
    tickets = [ticket(i) for i in range(6)]
    tickets[1].subject = "\ud800"
    tickets[3].created_at = datetime(9999, 1, 1, tzinfo=UTC)
    stream = FakeStream(tickets, page_size=2)
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    report = run_sync(engine, [Source("zd", FakeConnector(stream))])  # type: ignore[arg-type]
    assert report.ok
    assert [(s.rows, s.skipped) for s in report.streams] == [(4, 2)]
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT external_id FROM ticket ORDER BY 1")).scalars().all()
        run = conn.execute(text("SELECT status, skipped FROM sync_run")).one()
        cursor = conn.execute(text("SELECT cursor FROM sync_state")).scalar_one()
    assert (ids, tuple(run), cursor) == (["0", "2", "4", "5"], ("ok", 2), "6")
    again = run_sync(engine, [Source("zd", FakeConnector(stream))])  # type: ignore[arg-type]
    assert again.ok
    assert stream.calls[-1] == ("6", None)


# --- generated tickets against an independent statement of the rules ----------------------

_PLAIN = st.text(st.sampled_from(["a", "Z", " ", "é", "✓", "="]), max_size=4)
_TEXT = st.one_of(_PLAIN, _PLAIN, _PLAIN, st.text(st.sampled_from(["a", "\ud800", "\udfff"])))


# Mostly times a store takes, and now and then one on the wrong side of a bound or naive.
def _moments(years: list[int]) -> st.SearchStrategy[datetime]:
    return st.builds(
        datetime, st.sampled_from(years), st.integers(1, 12), st.integers(1, 28),
        st.integers(0, 23), st.integers(0, 59), st.integers(0, 59),
    )  # fmt: skip


_GOOD = _moments([1970, 2025, 2026, 2199]).map(lambda d: d.replace(tzinfo=UTC))
_BAD = _moments([1, 1969, 2200, 2300, 9999]).map(lambda d: d.replace(tzinfo=UTC)) | _moments([2026])
_TIME = st.one_of(st.none(), _GOOD, _GOOD, _GOOD, _GOOD, _GOOD, _BAD)
_COUNT = st.one_of(*[st.integers(0, 9)] * 4, st.sampled_from([-1, 2**31 - 1, 2**31]))
_TIMES = ("first_reply_at", "first_solved_at", "solved_at", "closed_at")


@st.composite
def tickets(draw: st.DrawFn) -> base.Ticket:
    created = draw(_TIME.filter(lambda d: d is not None))
    return base.Ticket(
        external_id=draw(_TEXT), created_at=created, updated_at=created,
        status=draw(st.sampled_from([*base.TICKET_STATUSES, "weird"])),
        subject=draw(st.none() | _TEXT), priority=draw(st.sampled_from([None, "high", "p1"])),
        tags=draw(st.lists(_TEXT, max_size=2)),
        **{name: draw(_TIME) for name in _TIMES},
        **{name: draw(_COUNT) for name in ("agent_replies", "reopens")},
    )  # type: ignore[arg-type]  # fmt: skip


def fit_to_store(t: base.Ticket) -> bool:
    """SPEC §3 said again, independently of core/records.py."""
    texts = [t.external_id, t.subject or "", *t.tags]
    times = [t.created_at, t.updated_at, *(getattr(t, n) for n in _TIMES)]
    return (
        not any(0xD800 <= ord(c) <= 0xDFFF for text in texts for c in text)
        and all(x is None or (x.tzinfo is not None and 1970 <= x.year < 2200) for x in times)
        and all(0 <= n < 2**31 for n in (t.agent_replies, t.reopens))
        and t.status in base.TICKET_STATUSES
        and t.priority in (None, *base.PRIORITIES)
    )


@settings(max_examples=200, deadline=None)
@given(tickets())
def test_generated_tickets_are_kept_exactly_when_the_rules_allow(t: base.Ticket) -> None:
    kept, skipped = screen(base.Page([t]))
    if not fit_to_store(t):
        assert (kept, len(skipped)) == ([], 1)
        return
    (stored,) = kept
    assert isinstance(stored, base.Ticket)
    early = [n for n in _TIMES if getattr(t, n) is not None and getattr(t, n) < t.created_at]
    for name in _TIMES:
        assert getattr(stored, name) == (None if name in early else getattr(t, name))
    assert len(skipped) == len(early)
