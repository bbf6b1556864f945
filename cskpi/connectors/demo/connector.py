"""The built-in ``demo`` connector: a seeded, deterministic synthetic helpdesk.

``cskpi demo`` and the benchmarks run on it with no account. The same settings always give
the same data: every value comes from ``random.Random`` streams seeded from ``seed`` and a
block of 1,000 tickets, so any page can be generated on its own and a resumed sync receives
exactly what a full one would have.

The shape the KPI engine's tests lean on: agents in groups; customers, some repeat, most in
organizations; weighted channels, priorities, types and tags; arrivals skewed to weekdays
08-18 UTC; log-normal reply times, faster for urgent tickets and live channels, with agents
answering in business hours (Mon-Fri 08-18 UTC); unanswered, unsolved, on-hold, reopened,
escalated and reassigned tickets; internal notes and bot messages; CSAT (1-5) and NPS (0-10)
ratings. Every event of a ticket lies within ``desk.LIFETIME`` of its creation and none
after ``end``: what would happen later has not happened yet.

This module is the connector: its settings, its streams and their cursors. The generator
behind it lives in ``desk`` (people, tickets, pages) and ``arrivals`` (arrival and answer
times), so each reads on its own and stays under the house limit of 400 lines.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field, field_validator

from cskpi.connectors import base
from cskpi.connectors.base import ConnectorSettings, Page
from cskpi.connectors.demo.desk import Helpdesk


class DemoSettings(ConnectorSettings):
    """Settings of a ``[connectors.NAME]`` table with ``type = "demo"``."""

    type: str = "demo"
    tickets: int = Field(default=5000, ge=1, description="Total number of tickets.")
    days: int = Field(default=90, ge=1, description="Days of ticket creation, ending at `end`.")
    seed: int = Field(default=1, description="The same seed and settings give the same data.")
    end: datetime | None = Field(
        default=None, description="End of the data, UTC (naive means UTC); default today 00:00."
    )
    page_size: int = Field(default=1000, ge=1, description="Tickets per page of `tickets`.")
    agents: int | None = Field(
        default=None, ge=1, description="Number of agents; default tickets/400 within 4..60."
    )
    groups: int | None = Field(
        default=None, ge=1, description="Agent groups (at most `agents`); default agents/4 in 2..8."
    )
    organizations: int | None = Field(
        default=None, ge=1, description="Customer organizations; default tickets/50 in 3..2000."
    )

    @field_validator("end")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(microsecond=0)


@dataclass(slots=True)
class _Stream:
    name: str
    pages: Callable[[str | None, datetime | None], Iterator[Page]]

    def read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        return self.pages(cursor, since)


class DemoConnector:
    """The built-in synthetic helpdesk (``type = "demo"``), deterministic for a given seed.

    Streams, in order: ``directory`` (agents, a bot, groups and organizations as records; one
    page, no cursor) and ``tickets`` (pages of ``page_size`` tickets in creation order, each
    with its tickets' messages, ratings and requesters; cursor = tickets delivered so far).
    """

    type: ClassVar[str] = "demo"
    Settings: ClassVar[builtins.type[ConnectorSettings]] = DemoSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name = name
        self.settings = DemoSettings.model_validate(settings.model_dump())
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.end = self.settings.end or midnight
        """Nothing in the data lies after this instant: the natural ``--now`` for its KPIs."""
        self._desk = Helpdesk(self.settings, self.end)

    def check(self) -> None:
        """Nothing to call: the data is generated locally."""

    def streams(self) -> Sequence[base.Stream]:
        """``directory`` then ``tickets``."""
        return [_Stream("directory", self._read_directory), _Stream("tickets", self._read_tickets)]

    def _read_directory(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """One page with every agent, the bot, groups and organizations: a full refresh."""
        yield Page(self._desk.directory())

    def _read_tickets(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        """Tickets in creation order with their messages, ratings and requesters.

        ``cursor`` is the number of tickets delivered so far; reading resumes right after it.
        ``since`` (a backfill; naive means UTC) wins over ``cursor`` and starts at the first
        page that can hold a ticket updated at or after it (see ``desk.LIFETIME``). A page's
        ``position`` is the creation time of its last ticket.
        """
        if since is not None:
            start = self._desk.first_ticket(since.replace(tzinfo=since.tzinfo or UTC))
        elif cursor:
            if not cursor.isdigit():
                raise ValueError(f"demo tickets cursor must be a count of tickets, got {cursor!r}")
            start = int(cursor)
        else:
            start = 0
        if start < self._desk.tickets:
            yield from self._desk.pages(start)
