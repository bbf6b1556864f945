"""Isolation for every test: no real home folder, config, OS keyring or leftover secrets."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest

from cskpi.core.config import secrets

# The throwaway PostgreSQL server and the `store_url` fixture (SQLite and PostgreSQL).
pytest_plugins = ["tests.postgres"]

# The consoles of `cskpi.commands.console` take their width from COLUMNS once, when first
# imported, and the tests expect the width of piped output. An inherited terminal size would
# wrap and cut their tables: pytest-xdist's workers inherit COLUMNS=80 and LINES=24, which
# readline (which pytest imports early) writes into the controller's C environment.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend holding passwords in a dict, so no test touches the OS keyring."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    """``CSKPI_HOME`` and the working directory in ``tmp_path``; an empty in-memory keyring.

    The working directory moves so that no ``./cskpi.toml`` of the checkout is picked up:
    find test data from ``Path(__file__)``, not from a relative path.
    """
    home = tmp_path / "cskpi-home"
    home.mkdir()
    monkeypatch.setenv("CSKPI_HOME", str(home))
    monkeypatch.delenv("CSKPI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    previous = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    secrets.forget_secrets()
    # A CLI command sets up the "cskpi" logger (its own handler on the runner's stderr, no
    # propagation): later tests would log to a closed stream, and caplog would see nothing.
    # Reset before and after each test, since a module-scoped fixture may run a command too.
    plain_logging()
    yield memory
    plain_logging()
    keyring.set_keyring(previous)
    secrets.forget_secrets()


def plain_logging() -> None:
    """The loggers a CLI command configures, back as Python starts them: no handler of
    their own, every level, records propagated to the root (where caplog listens)."""
    from cskpi.commands.console import LIBRARY_LOGGERS

    for name in ("cskpi", *LIBRARY_LOGGERS):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


@pytest.fixture
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of code that waits: it must wait on an injected clock, never in real time."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"a test slept {seconds} s in real time")

    monkeypatch.setattr("time.sleep", refuse)
