"""Every built-in connector runs the connector contract (cskpi.testing.contract) against
its own imitation: the HTTP ones against tests/connectors/*_server.py, email against a
real Dovecot, the demo against itself (its generator is the source)."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol

import pytest

from cskpi.connectors.base import Connector
from cskpi.connectors.demo.connector import DemoConnector, DemoSettings
from cskpi.connectors.email.connector import EmailConnector, EmailSettings
from cskpi.connectors.email.parse import key
from cskpi.connectors.freshdesk import FreshdeskConnector, FreshdeskSettings
from cskpi.connectors.intercom import IntercomConnector, IntercomSettings
from cskpi.connectors.zendesk import ZendeskConnector, ZendeskSettings
from cskpi.core.clock import FakeClock
from cskpi.testing.contract import ConnectorContract, ContractSource
from tests.connectors import freshdesk_desk as fd
from tests.connectors import intercom_desk as ic
from tests.connectors.email import test_email as mail
from tests.connectors.email.dovecot import Dovecot, available
from tests.connectors.freshdesk_server import FreshdeskImitation
from tests.connectors.intercom_server import IntercomImitation
from tests.connectors.zendesk_desk import FIRST_GROUP, FIRST_ORG, GROUPS
from tests.connectors.zendesk_server import ZendeskImitation
from tests.postgres import new_store

Ids = Mapping[str, Collection[str]]


class Answered(Protocol):
    @property
    def status(self) -> int: ...  # 0: the connection was dropped


class LoggingImitation(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def log(self) -> Sequence[Answered]: ...  # every request, as it was answered


class HttpSource(ContractSource):
    """An HTTP imitation on a fake clock; faults are scripted on it and read from its log."""

    def __init__(self, server: LoggingImitation, clock: FakeClock) -> None:
        self.server, self.clock = server, clock

    def faults_served(self) -> Collection[int]:
        return [entry.status for entry in self.server.log]


# --- demo ---------------------------------------------------------------------------------


class DemoSource(ContractSource):
    """The demo generates its helpdesk: the ids its settings promise are the source."""

    settings = DemoSettings(
        tickets=450, days=30, end=datetime(2026, 3, 2, tzinfo=UTC), page_size=100,
        agents=6, groups=2, organizations=5,
    )  # fmt: skip

    def connector(self) -> Connector:
        return DemoConnector(self.name, self.settings)

    def held(self) -> Mapping[str, Collection[str]]:
        return {
            "ticket": [f"t{1_000_001 + i}" for i in range(450)],
            "grp": ["g1", "g2"],
            "organization": [f"o{o + 1}" for o in range(5)],
        }


class TestDemoContract(ConnectorContract):
    cannot: ClassVar[Mapping[str, str]] = {
        "bad_record": "the generator makes no malformed record",
        "retries": "no network: the data is generated in the process",
    }

    @pytest.fixture
    def source(self) -> ContractSource:
        return DemoSource()


class TestDemoContractOnPostgres(TestDemoContract):
    """The same cases on the store's other dialect (skipped where no server can start)."""

    @pytest.fixture
    def store_url_for(self, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
        return lambda name: new_store(request, "postgresql", tmp_path)


# --- zendesk ------------------------------------------------------------------------------


class ZendeskSource(HttpSource):
    server: ZendeskImitation

    def connector(self) -> Connector:
        settings = ZendeskSettings(
            type="zendesk", email="ops@acme.test", api_token="env:ZD_CONTRACT_TOKEN",
            base_url=self.server.url, per_page=100,
        )  # fmt: skip
        return ZendeskConnector(self.name, settings, clock=self.clock)

    def held(self) -> Ids:
        desk = self.server.desk
        answered = [r for r in desk.ratings if r.score in ("good", "bad", "offered")]
        return {
            "ticket": [str(t) for t in desk.tickets],
            "message": [str(c.id) for t in desk.tickets.values() for c in t.comments],
            "rating": [str(r.id) for r in answered],
            "person": [str(u) for u in desk.users],
            "grp": [str(FIRST_GROUP + g) for g in range(GROUPS)],
            "organization": [str(FIRST_ORG + o) for o in range(desk.orgs)],
        }

    def serve_bad_record(self) -> Ids:
        self.server.desk.bad_created.add(17)  # a created_at that cannot be parsed
        return {"ticket": ["17"]}  # its comments come from the ticket events

    def script_faults(self) -> None:
        self.server.script("/api/v2/incremental/tickets/cursor.json", "ok", 429, "drop")
        self.server.script("/api/v2/incremental/ticket_events.json", "ok", 503)


class TestZendeskContract(ConnectorContract):
    @pytest.fixture
    def source(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractSource]:
        monkeypatch.setenv("ZD_CONTRACT_TOKEN", "zd-test-token-1234")
        clock = FakeClock()
        with ZendeskImitation(300, seed=3, clock=clock, bad_created=()) as server:
            yield ZendeskSource(server, clock)


# --- freshdesk ----------------------------------------------------------------------------


class FreshdeskSource(HttpSource):
    server: FreshdeskImitation

    def connector(self) -> Connector:
        settings = FreshdeskSettings(
            type="freshdesk", domain="acme", api_key="env:FD_CONTRACT_KEY",
            base_url=self.server.url, status_map={6: "on_hold"},
        )  # fmt: skip
        return FreshdeskConnector(self.name, settings, clock=self.clock)

    def held(self) -> Ids:
        desk = self.server.desk
        listed = desk.listed()  # deleted and spam tickets come without their messages
        return {
            "ticket": [str(t) for t in desk.tickets],
            "message": [m for t in listed for m in (f"{t.id}-description",
                        *(str(c.id) for c in t.conversations))],
            "rating": [str(r.id) for r in desk.ratings],
            "person": [str(fd.FIRST_AGENT + a) for a in range(fd.AGENTS)]
            + [str(r) for r in {t.requester for t in listed}],
            "grp": [str(fd.FIRST_GROUP + g) for g in range(fd.GROUPS)],
            "organization": [str(fd.FIRST_COMPANY + c) for c in range(desk.companies)],
        }  # fmt: skip

    def serve_bad_record(self) -> Ids:
        self.server.desk.malformed.add(fd.MALFORMED_RATING_TICKET)  # the docs' own bad shape
        return {"rating": [str(fd.MALFORMED_RATING_TICKET * 10)]}

    def script_faults(self) -> None:
        self.server.script(fd.TICKET_LIST, "ok", 429, "drop", "ok", 503)


class TestFreshdeskContract(ConnectorContract):
    @pytest.fixture
    def source(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractSource]:
        monkeypatch.setenv("FD_CONTRACT_KEY", "fd-test-key-1234")
        clock = FakeClock()
        with FreshdeskImitation(250, seed=3, clock=clock) as server:
            server.desk.malformed.clear()
            yield FreshdeskSource(server, clock)


# --- intercom -----------------------------------------------------------------------------


class IntercomSource(HttpSource):
    server: IntercomImitation

    def connector(self) -> Connector:
        settings = IntercomSettings(
            type="intercom", access_token="env:IC_CONTRACT_TOKEN", base_url=self.server.url
        )
        return IntercomConnector(self.name, settings, clock=self.clock)

    def held(self) -> Ids:
        return self._held(list(self.server.ws.convs.values()))

    def serve_bad_record(self) -> Ids:
        """Conversation 77, with its messages, rating and a contact only it has."""
        self.server.ws.convs[77].malformed = True
        rest = self._held([c for c in self.server.ws.convs.values() if c.id != 77])
        return {t: set(ids) - set(rest[t]) for t, ids in self.held().items()}

    def _held(self, convs: list[ic.Conv]) -> Ids:
        shown = {c.id: c.parts[-ic.PARTS_SHOWN :] for c in convs}
        return {
            "ticket": [str(c.id) for c in convs],
            "message": [m for c, parts in shown.items() for m in (f"{c}-source",
                        *(str(p.id) for p in parts if p.kind in ("comment", "note")))],
            "rating": [str(c.id) for c in convs if c.rating],
            "person": [str(ic.FIRST_ADMIN + a) for a in range(ic.ADMINS)]
            + [str(ic.BOT), *{c.contact for c in convs}],
            "grp": [str(ic.FIRST_TEAM + t) for t in range(ic.TEAMS)],
            "organization": [f"co{k}" for k in range(ic.COMPANIES)],
        }  # fmt: skip

    def script_faults(self) -> None:
        self.server.script("/conversations/search", "ok", 429, "drop")
        self.server.script("/conversations/7", 503)


class TestIntercomContract(ConnectorContract):
    crash_stream = "tickets"  # companies scroll in as many pages, but only as a whole

    @pytest.fixture
    def source(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractSource]:
        monkeypatch.setenv("IC_CONTRACT_TOKEN", ic.TOKEN)
        clock = FakeClock()  # wall time 1.7e9: the imitation's data lies before it
        with IntercomImitation(320, seed=3, clock=clock) as server:
            yield IntercomSource(server, clock)


# --- email --------------------------------------------------------------------------------


class EmailSource(ContractSource):
    """The mailbox of tests/connectors/email/test_email.py on a real Dovecot."""

    def __init__(self, box: Dovecot) -> None:
        self.box = box

    def connector(self) -> Connector:
        settings = EmailSettings(
            type="email", host="127.0.0.1", port=self.box.port, tls="none",
            username=self.box.user, password="env:MAILBOX_PASSWORD",
            agent_addresses=["support@acme.test", "*@acme.test"], resolved_folders=["Resolved"],
            rating_pattern=r"Rating: (\d)/5", page_size=4,
        )  # fmt: skip
        return EmailConnector(self.name, settings, clock=FakeClock(wall_start=mail.NOW.timestamp()))

    def held(self) -> Ids:
        every = [*mail.INBOX, *mail.SENT, *mail.RESOLVED]
        ids = [re.search(rb"Message-ID: <([^>]+)>", m) for m in every]
        found = [key(i.group(1).decode()) for i in ids if i and i.group(1) != b"o1@acme.test"]
        return {
            "ticket": list(mail.EXPECTED_TICKETS),
            "message": [*found, mail.GRACE],  # every mail but the unanswered outbound one
            "rating": [key("i2@wayne.test")],
        }


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    running = Dovecot()
    running.start()
    yield running
    running.stop()


@pytest.mark.skipif(not available(), reason="Dovecot is not installed (apt dovecot-imapd)")
class TestEmailContract(ConnectorContract):
    cannot: ClassVar[Mapping[str, str]] = {
        "bad_record": "every mail maps, best-effort (a missing Date, a broken MIME part)",
        "retries": "IMAP has no 429 or 5xx; a dropped connection ends the sync and the "
        "next one resumes from the last stored page (the crash case)",
    }

    @pytest.fixture
    def source(self, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> ContractSource:
        monkeypatch.setenv("MAILBOX_PASSWORD", dovecot.password)
        box = dovecot.mailbox()
        box.append("INBOX", mail.INBOX[:7])
        box.append("INBOX", [mail.INBOX[7]], when=mail.NO_DATE_RECEIVED)
        box.append("INBOX", mail.INBOX[8:])
        box.append("Sent", mail.SENT)
        box.append("Resolved", mail.RESOLVED)
        return EmailSource(box)
