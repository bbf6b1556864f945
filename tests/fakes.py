"""A scripted in-memory source for engine tests: tickets ordered by updated_at."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from cskpi.connectors.base import ConnectorSettings, Page, Skipped, Stream, Ticket

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ticket(i: int, **overrides: object) -> Ticket:
    fields: dict[str, object] = {
        "external_id": str(i),
        "created_at": T0 + timedelta(hours=i),
        "updated_at": T0 + timedelta(hours=i, minutes=30),
        "status": "open",
        "tags": ["a", "b"] if i % 2 else [],
        "requester_id": f"u{i}",
    }
    fields.update(overrides)
    return Ticket(**fields)  # type: ignore[arg-type]


class BoomError(RuntimeError):
    pass


@dataclass
class FakeStream:
    """Pages of `page_size` tickets; cursor = index of the last ticket delivered."""

    tickets: list[Ticket]
    name: str = "tickets"
    page_size: int = 2
    fail_after_pages: int | None = None
    bad_ids: Sequence[str] = ()
    calls: list[tuple[str | None, datetime | None]] = field(default_factory=list)

    def read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        self.calls.append((cursor, since))
        start = int(cursor) if cursor else 0
        if cursor is None and since is not None:
            start = next(
                (i for i, t in enumerate(self.tickets) if t.updated_at >= since), len(self.tickets)
            )
        for n, lo in enumerate(range(start, len(self.tickets), self.page_size)):
            if self.fail_after_pages is not None and n >= self.fail_after_pages:
                raise BoomError(f"server went away after {n} pages")
            chunk = self.tickets[lo : lo + self.page_size]
            good = [t for t in chunk if t.external_id not in self.bad_ids]
            bad = [
                Skipped(t.external_id, "no created_at")
                for t in chunk
                if t.external_id in self.bad_ids
            ]
            yield Page(good, str(lo + len(chunk)), chunk[-1].updated_at, bad)


class FakeConnector:
    type: ClassVar[str] = "fake"
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings

    def __init__(self, *streams: FakeStream) -> None:
        self._streams = list(streams)

    def check(self) -> None:
        pass

    def streams(self) -> Sequence[Stream]:
        return self._streams
