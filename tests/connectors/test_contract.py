"""Every built-in connector runs the connector contract (cskpi.testing.contract) against
its own imitation: the HTTP ones against tests/connectors/*_server.py, email against a
real Dovecot, the demo against itself (its generator is the source)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime

import pytest

from cskpi.connectors.base import Connector
from cskpi.connectors.demo.connector import DemoConnector, DemoSettings
from cskpi.testing.contract import ConnectorContract, ContractSource

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
    cannot = {
        "bad_record": "the generator makes no malformed record",
        "retries": "no network: the data is generated in the process",
    }

    @pytest.fixture
    def source(self) -> Iterator[ContractSource]:
        yield DemoSource()
