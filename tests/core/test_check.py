"""`cskpi check` probes every connector at once, gives up on one that does not answer in
time, closes what it opened, and every connector takes a `longest_wait`."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from cskpi.connectors.base import ConnectorSettings, Stream
from cskpi.connectors.freshdesk import FreshdeskConnector
from cskpi.connectors.intercom import IntercomConnector
from cskpi.connectors.zendesk import ZendeskConnector
from cskpi.core import app
from cskpi.core.config.file import ConfigError, load_config


class SlowSettings(ConnectorSettings):
    type: str = "slow"
    behaviour: str = "meet"


class SlowConnector:
    """``meet``: answers once all three probes are running together; ``hang``: never answers."""

    type: ClassVar[str] = "slow"
    Settings: ClassVar[type[ConnectorSettings]] = SlowSettings
    meeting: ClassVar[threading.Barrier]
    hung: ClassVar[threading.Event]
    closed: ClassVar[list[str]] = []

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name, self.behaviour = name, getattr(settings, "behaviour", "meet")

    def check(self) -> None:
        if self.behaviour == "hang":
            SlowConnector.hung.wait()
        else:
            SlowConnector.meeting.wait()  # a sequential check would break the barrier

    def streams(self) -> Sequence[Stream]:
        return []

    def close(self) -> None:
        SlowConnector.closed.append(self.name)


def config(tmp_path: Path, *behaviours: str, extra: str = "") -> Any:
    tables = "".join(
        f'[connectors.c{i}]\ntype = "slow"\nbehaviour = "{b}"\n{extra}'
        for i, b in enumerate(behaviours)
    )
    path = tmp_path / "cskpi.toml"
    path.write_text(f'database = "sqlite:///cskpi.db"\n{tables}')
    return load_config(path, {"slow": SlowConnector})  # type: ignore[dict-item]


@pytest.fixture(autouse=True)
def fresh() -> None:
    SlowConnector.meeting = threading.Barrier(3, timeout=5)
    SlowConnector.hung = threading.Event()
    SlowConnector.closed = []


def test_connectors_are_probed_at_once(tmp_path: Path) -> None:
    cfg = config(tmp_path, "meet", "meet", "meet")
    results = app.check(cfg, {"slow": SlowConnector})  # type: ignore[dict-item]
    assert [(r.connector, r.ok) for r in results][1:] == [("c0", True), ("c1", True), ("c2", True)]
    assert results[0].connector == "database"  # checked first (issue 23 item 7)
    assert sorted(SlowConnector.closed) == ["c0", "c1", "c2"]  # each session closed with it


def test_a_probe_without_an_answer_fails_after_the_timeout(tmp_path: Path) -> None:
    SlowConnector.meeting = threading.Barrier(1)
    cfg = config(tmp_path, "hang", "meet")
    started = time.monotonic()
    try:
        results = app.check(cfg, {"slow": SlowConnector}, timeout=0.3)  # type: ignore[dict-item]
    finally:
        SlowConnector.hung.set()
    assert time.monotonic() - started < 3
    assert [(r.connector, r.ok, r.detail) for r in results][1:] == [
        ("c0", False, "no answer within 0.3 s (is the host reachable?)"),
        ("c1", True, "ok"),
    ]


def test_every_connector_takes_a_longest_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T", "secret-token-1")
    path = tmp_path / "cskpi.toml"
    path.write_text(
        'database = "sqlite:///cskpi.db"\n'
        '[connectors.zd]\ntype = "zendesk"\nsubdomain = "acme"\naccess_token = "env:T"\n'
        'longest_wait = "2m"\n'
        '[connectors.fd]\ntype = "freshdesk"\ndomain = "acme"\napi_key = "env:T"\n'
        'longest_wait = "90s"\n'
        '[connectors.ic]\ntype = "intercom"\naccess_token = "env:T"\nlongest_wait = "1h"\n'
        '[connectors.demo]\ntype = "demo"\nlongest_wait = "15m"\n'
    )
    types: Any = {c.type: c for c in (ZendeskConnector, FreshdeskConnector, IntercomConnector)}
    from cskpi.connectors.demo.connector import DemoConnector

    types["demo"] = DemoConnector
    cfg = load_config(path, types)
    made = {s.name: s.connector for s in app.build_sources(cfg, types)}
    assert made["zd"].http.longest_wait == 120  # type: ignore[attr-defined]
    assert made["fd"].http.longest_wait == 90  # type: ignore[attr-defined]
    assert made["ic"].http.longest_wait == 3600  # type: ignore[attr-defined]
    assert made["ic"].scroll_once.longest_wait == 3600  # type: ignore[attr-defined]
    path.write_text(path.read_text().replace('"15m"', '"soon"'))
    with pytest.raises(ConfigError, match=r"\[connectors.demo\] longest_wait"):
        load_config(path, types)
