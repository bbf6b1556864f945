"""A plugin's own tests: the connector contract, imported from cskpi, against its imitation."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

import pytest

from cskpi.connectors.base import Connector
from cskpi.core.clock import FakeClock
from cskpi.testing.contract import ConnectorContract, ContractSource
from tests.connectors.plugin_example import AcmeDeskConnector, AcmeDeskImitation, AcmeDeskSettings


class AcmeDeskSource(ContractSource):
    def __init__(self, server: AcmeDeskImitation) -> None:
        self.server, self.clock = server, FakeClock()

    def connector(self) -> Connector:
        settings = AcmeDeskSettings(base_url=self.server.url, api_key="env:ACME_KEY", per_page=20)
        return AcmeDeskConnector(self.name, settings, clock=self.clock)

    def held(self) -> Mapping[str, Collection[str]]:
        return {
            "ticket": [str(i) for _, i in self.server.tickets],
            "person": [str(500 + n) for n in range(13)],
        }

    def serve_bad_record(self) -> Mapping[str, Collection[str]]:
        self.server.malformed.add(30)
        return {"ticket": ["30"]}

    def script_faults(self) -> None:
        self.server.script("/tickets", "ok", 429, "drop", 503)

    def faults_served(self) -> Collection[int]:
        return self.server.statuses


class TestAcmeDeskContract(ConnectorContract):
    @pytest.fixture
    def source(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractSource]:
        monkeypatch.setenv("ACME_KEY", "acme-key")
        with AcmeDeskImitation(tickets=80) as server:
            yield AcmeDeskSource(server)
