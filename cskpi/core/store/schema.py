"""The stored schema (SPEC §3) as SQLModel tables.

Timestamps are stored as integer Unix seconds (UTC). Every source we read has
one-second resolution, integers compare and subtract in SQL without parsing, and the
KPI engine loads them straight into numpy. Read them in the sqlite3 shell with
``datetime(created_at, 'unixepoch')``. Through the ORM they are aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, TypeDecorator, text
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def to_epoch(value: datetime | None) -> int | None:
    """The stored form of a datetime; naive values are refused, not guessed."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} reached the store")
    return int(value.timestamp())


def from_epoch(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetime stored as integer Unix seconds."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        return to_epoch(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return from_epoch(value)


DELETED = text("deleted = TRUE")

# Ids and the references joined to them compare byte by byte on PostgreSQL too, whatever
# the database's default collation: ids are never sorted for people, and a collation such
# as ICU's en-US makes every index probe and insert on them dearer (docs/performance.md).
# SQLite's default collation is byte order already.
# https://www.postgresql.org/docs/15/collation.html
ID = String().with_variant(String(collation="C"), "postgresql")


def _ts(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index)


class Ticket(SQLModel, table=True):
    __table_args__ = (
        Index("ix_ticket_status_created_at", "status", "created_at"),
        # The deleted tickets only: a report's ratings check against it (kpi_data._ratings).
        Index("ix_ticket_deleted", "id", sqlite_where=DELETED, postgresql_where=DELETED),
    )
    id: str = Field(primary_key=True, sa_type=ID)
    connector: str
    external_id: str
    subject: str | None = None
    status: str
    raw_status: str | None = None
    priority: str | None = None
    channel: str | None = None
    type: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    requester_id: str | None = None
    organization_id: str | None = None
    assignee_id: str | None = None
    group_id: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    first_reply_at: datetime | None = _ts()
    first_solved_at: datetime | None = _ts()
    solved_at: datetime | None = _ts(index=True)
    closed_at: datetime | None = _ts()
    agent_replies: int = 0
    reopens: int = 0
    group_changes: int = 0
    assignee_changes: int = 0
    deleted: bool = False


class Message(SQLModel, table=True):
    id: str = Field(primary_key=True, sa_type=ID)
    ticket_id: str = Field(index=True, sa_type=ID)
    author_id: str | None = None
    author_role: str
    public: bool = True
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)


class Rating(SQLModel, table=True):
    id: str = Field(primary_key=True, sa_type=ID)
    ticket_id: str | None = Field(default=None, sa_type=ID)
    connector: str
    kind: str
    score: float | None = None  # null: a survey offered and not answered (yet)
    scale_min: float
    scale_max: float
    comment: str | None = None
    agent_id: str | None = None
    rated_at: datetime = Field(sa_type=UTCDateTime, index=True)
    offered_at: datetime | None = _ts()  # when the vendor sent the survey, where it says


class StatusChange(SQLModel, table=True):
    """Every status change a source records; a ticket's status at a past instant is its
    latest change at or before it (SPEC §3, §4 backlog)."""

    __tablename__ = "status_change"
    # A ticket's changes side by side in one B-tree, and no other: a demo ticket has six
    # of them, so a second index (or SQLite's rowid table under the key) would double the
    # cost of storing them.
    __table_args__ = {"sqlite_with_rowid": False}
    ticket_id: str = Field(primary_key=True, sa_type=ID)
    at: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    status: str = Field(primary_key=True)
    connector: str


class VendorMetric(SQLModel, table=True):
    """A duration the ticket's vendor computes itself (SPEC §7), in seconds, under one of
    the names docs/kpis.md lists; a sync replaces a ticket's set with the vendor's latest."""

    __tablename__ = "vendor_metric"
    __table_args__ = {"sqlite_with_rowid": False}
    ticket_id: str = Field(primary_key=True, sa_type=ID)
    name: str = Field(primary_key=True)
    seconds: int = Field(sa_type=BigInteger)
    connector: str


class Person(SQLModel, table=True):
    id: str = Field(primary_key=True, sa_type=ID)
    connector: str
    external_id: str
    name: str | None = None
    email: str | None = None
    role: str


class Grp(SQLModel, table=True):
    __tablename__ = "grp"
    id: str = Field(primary_key=True, sa_type=ID)
    connector: str
    external_id: str
    name: str | None = None


class Organization(SQLModel, table=True):
    id: str = Field(primary_key=True, sa_type=ID)
    connector: str
    external_id: str
    name: str | None = None
    mrr: float | None = None
    created_at: datetime | None = _ts()
    churned_at: datetime | None = _ts()


class SyncState(SQLModel, table=True):
    __tablename__ = "sync_state"
    connector: str = Field(primary_key=True)
    stream: str = Field(primary_key=True)
    cursor: str | None = None
    position: datetime | None = _ts()
    last_success_at: datetime | None = _ts()
    last_error: str | None = None
    rows: int = Field(default=0, sa_type=BigInteger)


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"
    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    connector: str
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = _ts()
    status: str
    rows: int = 0
    skipped: int = 0
    error: str | None = None
    pid: int | None = None  # the process running it, to tell a dead run (sync_state)
    host: str | None = None


class DigestRun(SQLModel, table=True):
    __tablename__ = "digest_run"
    digest: str = Field(primary_key=True)
    window_from: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    window_to: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    target: str = Field(primary_key=True)
    sent_at: datetime | None = _ts()
    status: str
    error: str | None = None


class AlertRun(SQLModel, table=True):
    """One (alert, key, bucket, target) sent or being sent: an alert fires once (SPEC §8)."""

    __tablename__ = "alert_run"
    alert: str = Field(primary_key=True)
    key: str = Field(primary_key=True)  # the --by value; "" for the whole store
    bucket_from: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    target: str = Field(primary_key=True)
    bucket_to: datetime = Field(sa_type=UTCDateTime)
    value: float | None = None
    usual: float | None = None
    sent_at: datetime | None = _ts()
    status: str
    error: str | None = None


class Daemon(SQLModel, table=True):
    """The running `cskpi run`: one row per database, so a second daemon is refused and
    `cskpi status` can tell whether it is alive (heartbeat) and when each job runs next."""

    __tablename__ = "daemon"
    id: int = Field(default=1, sa_column=Column(Integer, primary_key=True))
    pid: int
    host: str
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime)
    jobs: str = "{}"  # JSON: job name -> next run time (ISO 8601), for `cskpi status`
