"""A third-party connector as a plugin author writes one, and the imitation its tests serve.

``acmedesk`` is a made-up helpdesk: ``GET /tickets`` lists tickets sorted by
(``updated_at``, ``id``), ``after`` resumes after a ticket, ``updated_since`` starts a
backfill. The connector uses only what cskpi offers a plugin (the connector boundary and the
shared HTTP client); tests/connectors/test_plugin_example.py runs the connector contract
against it from ``cskpi.testing.contract``, as the plugin's own test suite would.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from cskpi.connectors import base
from cskpi.connectors.base import ConnectorSettings, Page, PagesStream, Skipped, own_settings
from cskpi.core.clock import Clock
from cskpi.core.config.secrets import Secret
from cskpi.core.http.client import HttpClient
from tests.connectors.imitation import Answer, Fault, Faults, HttpImitation, Query, iso, one

# --- the plugin: what the cskpi-acmedesk package would ship -------------------------------


class AcmeDeskSettings(ConnectorSettings):
    type: str = "acmedesk"
    base_url: str
    api_key: Secret
    per_page: int = 25


class AcmeDeskConnector:
    """Tickets and their requesters, one stream, checkpointed every page."""

    type: ClassVar[str] = "acmedesk"
    Settings: ClassVar[builtins.type[ConnectorSettings]] = AcmeDeskSettings

    def __init__(self, name: str, settings: ConnectorSettings, *, clock: Clock | None = None):
        self.settings = own_settings(settings, AcmeDeskSettings)
        key = self.settings.api_key.get_secret_value()
        self.http = HttpClient(
            name, self.settings.base_url, headers={"Authorization": f"Bearer {key}"},
            clock=clock, secret_hint="api_key",
        )  # fmt: skip

    def check(self) -> None:
        self.http.get_json("me")

    def close(self) -> None:  # optional: the engine calls it when a sync or check is over
        self.http.close()

    def streams(self) -> Sequence[base.Stream]:
        return [PagesStream("tickets", self._tickets)]

    def _tickets(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        params: dict[str, Any] = {"per_page": self.settings.per_page}
        if since is not None:
            params["updated_since"] = int(since.timestamp())
        elif cursor:
            params["after"] = cursor
        more = True
        while more:
            body = self.http.get_json("tickets", params)
            if body["after"] is None:
                return  # a backfill from after the newest ticket
            records, skipped = _mapped(body["tickets"])
            when = datetime.fromtimestamp(int(body["after"].split(":")[0]), UTC)
            yield Page(records, body["after"], when, skipped)
            more, params = (
                body["more"],
                {"per_page": self.settings.per_page, "after": body["after"]},
            )


def _mapped(raws: list[dict[str, Any]]) -> tuple[list[base.Record], list[Skipped]]:
    records: list[base.Record] = []
    skipped: list[Skipped] = []
    for raw in raws:
        try:
            records += _records(raw)
        except (KeyError, ValueError) as exc:
            skipped.append(Skipped(str(raw.get("id")), str(exc)))
    return records, skipped


def _records(raw: dict[str, Any]) -> list[base.Record]:
    requester = str(raw["requester"]["id"])
    ticket = base.Ticket(
        str(raw["id"]), _when(raw["created_at"]), _when(raw["updated_at"]),
        "solved" if raw["status"] == "done" else "open", raw_status=raw["status"],
        subject=raw["subject"], requester_id=requester,
    )  # fmt: skip
    return [ticket, base.Person(requester, "customer", raw["requester"]["name"])]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- its imitation: what the plugin's tests serve on 127.0.0.1 ----------------------------

T0 = 1_767_225_600  # 2026-01-01


class AcmeDeskImitation(HttpImitation):
    """``tickets`` tickets, each updated a while after its creation; ``malformed`` ids are
    served with a created_at nobody can read; faults are scripted with :meth:`script`."""

    def __init__(self, tickets: int = 80, key: str = "acme-key") -> None:
        self.key = key
        self.malformed: set[int] = set()
        self.tickets = sorted((T0 + i * 3600 + i % 7 * 5400, i) for i in range(1, tickets + 1))
        self.statuses: list[int] = []
        self._faults = Faults()

    def script(self, path: str, *faults: Fault) -> None:
        self._faults.add(path, *faults)

    def respond(self, method: str, path: str, query: Query, body: Any, auth: str | None) -> Answer:
        answer = self._route(path, query, auth)
        self.statuses.append(answer.status)
        return answer

    def _route(self, path: str, query: Query, auth: str | None) -> Answer:
        fault = self._faults.take(path)
        if fault is not None:
            return Answer(0) if fault == "drop" else Answer(int(fault), {"error": "busy"})
        if auth != f"Bearer {self.key}":
            return Answer(401, {"error": "unauthorized"})
        if path == "/me":
            return Answer(200, {"id": 1})
        return self._list(query) if path == "/tickets" else Answer(404, {"error": "not found"})

    def _list(self, query: Query) -> Answer:
        after, since = one(query, "after"), int(one(query, "updated_since") or 0)
        if after:
            rest = [t for t in self.tickets if t > _key(after)]
        else:
            rest = [t for t in self.tickets if t[0] >= since]
        page = rest[: int(one(query, "per_page") or 25)]
        return Answer(200, {
            "tickets": [self.ticket(updated, i) for updated, i in page],
            "after": f"{page[-1][0]}:{page[-1][1]}" if page else after,
            "more": len(page) < len(rest),
        })  # fmt: skip

    def ticket(self, updated: int, i: int) -> dict[str, Any]:
        created = "yesterday" if i in self.malformed else iso(T0 + i * 3600)
        return {
            "id": i, "subject": f"Ticket {i}", "status": "done" if i % 3 else "waiting",
            "created_at": created, "updated_at": iso(updated),
            "requester": {"id": 500 + i % 13, "name": f"Customer {i % 13}"},
        }  # fmt: skip


def _key(cursor: str) -> tuple[int, int]:
    updated, _, ident = cursor.partition(":")
    return int(updated), int(ident)
