"""The daemon under load does not leak: 200 sync runs (LEAK_RUNS=1000 by hand) of three
connectors (the Zendesk, Freshdesk and Intercom imitations on 127.0.0.1) leave open files,
threads and memory where they were. Each run builds its connectors afresh, as the daemon
does, and must close their HTTP sessions with the run (issue 23: 45 fds grew to 296 in
five minutes)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from cskpi.connectors.base import ConnectorSettings
from cskpi.connectors.freshdesk import FreshdeskConnector
from cskpi.connectors.intercom import IntercomConnector
from cskpi.connectors.zendesk import ZendeskConnector
from cskpi.core.clock import FakeClock
from cskpi.core.config.file import load_config
from cskpi.scheduler.service import Daemon
from tests.connectors.freshdesk_server import FreshdeskImitation
from tests.connectors.intercom_server import IntercomImitation
from tests.connectors.zendesk_server import ZendeskImitation

RUNS = int(os.environ.get("LEAK_RUNS", "200"))  # LEAK_RUNS=1000 by hand: the full check
CONNECTORS = ("zd", "fd", "ic")

pytestmark = pytest.mark.usefixtures("no_real_sleep")


class OnFakeClock:
    """A connector type whose instances pace on one fake clock: the vendors' budgets (Zendesk:
    10 export requests a minute) would otherwise make 1,000 runs take hours."""

    def __init__(self, cls: Any, clock: FakeClock) -> None:
        self.cls, self.clock = cls, clock
        self.type: str = cls.type
        self.Settings: type[ConnectorSettings] = cls.Settings

    def __call__(self, name: str, settings: ConnectorSettings) -> Any:
        return self.cls(name, settings, clock=self.clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def servers(clock: FakeClock) -> Iterator[tuple[str, str, str]]:
    with ExitStack() as stack:  # their quota headers speak the connectors' (fake) time
        zd = stack.enter_context(ZendeskImitation(20, seed=2, bad_created=(), clock=clock))
        fd = stack.enter_context(FreshdeskImitation(20, seed=2, clock=clock))
        ic = stack.enter_context(IntercomImitation(10, seed=2, clock=clock))
        yield zd.url, fd.url, ic.url


def config_text(zd: str, fd: str, ic: str) -> str:
    return f"""\
database = "sqlite:///cskpi.db"
[connectors.zd]
type = "zendesk"
base_url = "{zd}"
email = "ops@acme.test"
api_token = "env:LEAK_ZD"
[connectors.fd]
type = "freshdesk"
base_url = "{fd}"
api_key = "env:LEAK_FD"
[connectors.ic]
type = "intercom"
base_url = "{ic}"
access_token = "env:LEAK_IC"
"""


def usage() -> tuple[int, int, int]:
    """Open file descriptors, threads, and resident memory in kB."""
    status = Path("/proc/self/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return len(os.listdir("/proc/self/fd")), threading.active_count(), rss


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts fds through /proc")
def test_a_thousand_sync_runs_leak_no_fds_threads_or_memory(
    tmp_path: Path,
    clock: FakeClock,
    servers: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LEAK_ZD", "zd-test-token-1234")
    monkeypatch.setenv("LEAK_FD", "fd-test-key-1234")
    monkeypatch.setenv("LEAK_IC", "ic-test-token-1234")
    path = tmp_path / "cskpi.toml"
    path.write_text(config_text(*servers))
    kinds = (ZendeskConnector, FreshdeskConnector, IntercomConnector)
    types = {k.type: OnFakeClock(k, clock) for k in kinds}
    d = Daemon(load_config(path, types), types)  # type: ignore[arg-type]
    try:
        for name in CONNECTORS * 3:  # first syncs, and whatever warms up once
            assert d.run_job(f"sync:{name}"), name
        before = usage()
        for n in range(RUNS):
            clock.sleep(60)  # a minute between runs, for the vendors' budgets
            assert d.run_job(f"sync:{CONNECTORS[n % len(CONNECTORS)]}")
        after = usage()
    finally:
        d.engine.dispose()
    with capsys.disabled():
        print(f"\n{RUNS} sync runs: fds {before[0]} -> {after[0]}, threads {before[1]} -> "
              f"{after[1]}, RSS {before[2] / 1024:.1f} -> {after[2] / 1024:.1f} MB")  # fmt: skip
    assert after[0] - before[0] <= 2
    assert after[1] - before[1] <= 1
    assert after[2] - before[2] < 20 * 1024
