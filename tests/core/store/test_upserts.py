from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from cskpi.connectors import base
from cskpi.core.store import schema
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.pages import store_page
from cskpi.core.store.upserts import Written
from tests.fakes import T0, ticket


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """The store on SQLite and on PostgreSQL (``store_url`` is parametrised)."""
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    tables = ("ticket", "message", "rating", "person", "grp", "organization")
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in tables
        }


def mixed_records() -> list[base.Record]:
    return [
        ticket(
            1,
            assignee_id="a1",
            group_id="g1",
            organization_id="o1",
            priority="high",
            first_reply_at=T0 + timedelta(hours=1, minutes=5),
            agent_replies=2,
        ),
        ticket(
            2,
            status="solved",
            solved_at=T0 + timedelta(hours=3),
            first_solved_at=T0 + timedelta(hours=3),
        ),
        base.Message("m1", "1", T0 + timedelta(hours=1), "customer", True, "u1"),
        base.Message("m2", "1", T0 + timedelta(hours=1, minutes=5), "agent", True, "a1"),
        base.Rating("r1", "csat", 5, 1, 5, T0 + timedelta(days=1), "2", "great", "a1"),
        base.Person("a1", "agent", "Ana", "ana@example.com"),
        base.Group("g1", "Tier 1"),
        base.Organization("o1", "Acme", T0),
    ]


def write(engine: Engine, records: list[base.Record], connector: str = "zd") -> Written:
    """As the sync engine stores a page."""
    return store_page(engine, connector, base.Page(records))


def test_upsert_twice_changes_nothing(engine: Engine) -> None:
    assert write(engine, mixed_records()) == Written(rows=8, changed=8)
    first = dump(engine)
    # Counted as sent but not as changed: a no-op sync says nothing changed (issue 23, 22).
    assert write(engine, mixed_records()) == Written(rows=8, changed=0)
    assert dump(engine) == first
    assert [len(first[t]) for t in first] == [2, 2, 1, 1, 1, 1]


def test_ids_are_prefixed_with_the_connector_name(engine: Engine) -> None:
    write(engine, mixed_records(), connector="acme-zendesk")
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, assignee_id, group_id, organization_id, requester_id FROM ticket "
                "WHERE external_id = '1'"
            )
        ).one()
        msg = conn.execute(
            text("SELECT ticket_id, author_id FROM message WHERE id='acme-zendesk:m2'")
        ).one()
        rating = conn.execute(text("SELECT ticket_id, agent_id, connector FROM rating")).one()
    assert tuple(row) == (
        "acme-zendesk:1",
        "acme-zendesk:a1",
        "acme-zendesk:g1",
        "acme-zendesk:o1",
        "acme-zendesk:u1",
    )
    assert tuple(msg) == ("acme-zendesk:1", "acme-zendesk:a1")
    assert tuple(rating) == ("acme-zendesk:2", "acme-zendesk:a1", "acme-zendesk")


def test_orm_reads_back_what_the_bulk_path_wrote(engine: Engine) -> None:
    records = mixed_records()
    write(engine, records)
    with Session(engine) as session:
        stored = session.exec(select(schema.Ticket).where(schema.Ticket.external_id == "1")).one()
    original = records[0]
    assert isinstance(original, base.Ticket)
    assert stored.created_at == original.created_at
    assert stored.created_at.tzinfo is UTC
    assert stored.first_reply_at == original.first_reply_at
    assert stored.tags == ["a", "b"]
    assert stored.deleted is False
    assert stored.agent_replies == 2


def _count_updates(engine: Engine, table: str) -> None:
    """Make every UPDATE of ``table``'s rows append the row's id to table ``updates``."""
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE updates (id VARCHAR NOT NULL)"))
        if engine.dialect.name == "sqlite":
            conn.execute(text(
                f"CREATE TRIGGER counted AFTER UPDATE ON {table} "
                "BEGIN INSERT INTO updates VALUES (new.id); END"
            ))  # fmt: skip
        else:
            conn.execute(text(
                "CREATE FUNCTION counted() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN INSERT INTO updates VALUES (NEW.id); RETURN NEW; END$$"
            ))  # fmt: skip
            conn.execute(text(
                f"CREATE TRIGGER counted AFTER UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION counted()"
            ))  # fmt: skip


def test_a_row_sent_again_unchanged_is_not_rewritten(engine: Engine) -> None:
    """A person comes with every ticket they raise: the upsert leaves an identical stored
    row alone (no new row version on PostgreSQL) and still applies every change."""
    people = [base.Person("u1", "end-user", "Una", None), base.Person("u2", "agent", "Bo", "b@x")]
    write(engine, [*people, base.Message("m1", "1", T0, "customer", True, "u1")])
    _count_updates(engine, "person")
    write(engine, people)
    write(engine, [base.Person("u1", "end-user", "Una", "una@x"), people[1]])
    write(engine, [base.Person("u2", "agent", "Bo", None)])
    with engine.connect() as conn:
        updated = conn.execute(text("SELECT id FROM updates")).scalars().all()
        stored = conn.execute(text("SELECT id, email FROM person ORDER BY id")).all()
    assert updated == ["zd:u1", "zd:u2"]
    assert [tuple(r) for r in stored] == [("zd:u1", "una@x"), ("zd:u2", None)]


def test_an_older_state_never_overwrites_a_newer_one(engine: Engine) -> None:
    write(engine, [ticket(1, status="solved", updated_at=T0 + timedelta(days=2))])
    write(engine, [ticket(1, status="open", updated_at=T0 + timedelta(days=1))])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM ticket")).scalar_one() == "solved"


def test_a_deleted_ticket_stays_deleted(engine: Engine) -> None:
    write(engine, [ticket(1, deleted=True, updated_at=T0 + timedelta(days=1))])
    write(engine, [ticket(1, deleted=False, updated_at=T0 + timedelta(days=2), status="pending")])
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT deleted, status FROM ticket")).one()) == (
            1,
            "pending",
        )


def test_sync_keeps_imported_account_data(engine: Engine) -> None:
    write(engine, [base.Organization("o1", "Acme")])
    with write_transaction(engine) as conn:
        conn.execute(text("UPDATE organization SET mrr = 990, churned_at = 100"))
    write(engine, [base.Organization("o1", "Acme Inc")])
    with engine.connect() as conn:
        assert tuple(
            conn.execute(text("SELECT name, mrr, churned_at FROM organization")).one()
        ) == ("Acme Inc", 990, 100)


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        write(engine, [ticket(1, created_at=datetime(2026, 1, 1))])
    assert dump(engine)["ticket"] == []


def test_a_page_that_repeats_a_ticket_is_stored_as_if_row_by_row(engine: Engine) -> None:
    """A page may hold one ticket twice (updated between two API pages): the newer wins,
    an older repeat is ignored, a deletion stays, whatever the dialect's bulk path."""
    page = [
        ticket(1, status="solved", deleted=True, updated_at=T0 + timedelta(days=2)),
        ticket(2, status="open"),
        ticket(1, status="open", updated_at=T0 + timedelta(days=1)),
        ticket(1, status="pending", updated_at=T0 + timedelta(days=2)),
        ticket(2, status="new"),
    ]
    assert write(engine, page) == Written(rows=5, changed=4)  # ticket 1 of day 1 is older
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status, deleted FROM ticket ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("zd:1", "pending", True), ("zd:2", "new", False)]
