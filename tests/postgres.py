"""A throwaway PostgreSQL for the store's second dialect: one server per test session (per
worker under pytest-xdist).

The server comes from Debian's ``postgresql`` package (``scripts/test`` installs it when
missing): ``initdb`` into a temporary folder, ``pg_ctl start`` on 127.0.0.1 and a free port,
no system service. PostgreSQL refuses to run as root, so under uid 0 (CI) the server runs
as the package's ``postgres`` user, which then owns the folder. Durability is switched off
(``fsync``, ``synchronous_commit``): the data dies with the session anyway.

Each test gets a fresh database copied from a migrated template (``CREATE DATABASE …
TEMPLATE``), so no test sees another's rows. Where no server can be started, the PostgreSQL
half of every parametrised test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cskpi.core.store.engine import open_engine

# One template per pytest-xdist worker ("gw0", "gw1", ...): on a server given by
# CSKPI_TEST_POSTGRES the workers share one server, and each drops and re-creates its own.
# (The databases and roles the tests make are named after the process id already.)
TEMPLATE = "_".join(filter(None, ["cskpi_template", os.environ.get("PYTEST_XDIST_WORKER")]))
USER = "cskpi"
DIALECTS = ("sqlite", "postgresql")
PG_ENV = "CSKPI_TEST_POSTGRES"  # a URL of a server to use instead of starting one


def _bindir() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PgServer:
    """A running server; ``url(db)`` is a SQLAlchemy URL for one of its databases."""

    host: str
    port: int
    user: str = USER
    folder: Path | None = None
    owner: str | None = None  # the unprivileged user running it, when we are root
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def fresh(self) -> str:
        """A new database holding the migrated, empty store."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def empty(self) -> str:
        """A new database without even the migrations ledger."""
        name = f"e{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def clear(self, url: str) -> None:
        """Empty every table of the store at ``url`` but the migrations ledger: cheaper than
        a new database for a test that stores many small datasets."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname=url.rsplit("/", 1)[1]
        ) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> '_migrations'"
                )
            ]
            conn.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY")  # type: ignore[arg-type]

    def drop(self, url: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _run(argv: list[str], owner: str | None) -> None:
    if owner is not None:
        argv = ["runuser", "-u", owner, "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def start(folder: Path, durable: bool = False) -> PgServer:
    """initdb + pg_ctl start; raises RuntimeError with the reason when that is impossible.
    ``durable`` keeps PostgreSQL's default fsync settings (for benchmarks)."""
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("no initdb found: install Debian's postgresql package")
    owner = "postgres" if os.geteuid() == 0 else None
    if owner is not None:
        shutil.chown(folder, owner)
    data, port = folder / "data", _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
              "-E", "UTF8", "--locale=C", "--no-sync"], owner)  # fmt: skip
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o",
              options, "-w", "-t", "60", "start"], owner)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log = folder / "log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        detail = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(f"{exc}: {detail.decode(errors='replace')[-800:]} {tail}") from exc
    return PgServer("127.0.0.1", port, USER, folder, owner)


def stop(server: PgServer) -> None:
    bindir = _bindir()
    if server.folder is None or bindir is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        _run([str(bindir / "pg_ctl"), "-D", str(server.folder / "data"), "-m", "immediate",
              "-w", "stop"], server.owner)  # fmt: skip
    shutil.rmtree(server.folder, ignore_errors=True)


def _external(url: str) -> PgServer:
    """A server given by URL (``postgresql://user@host:port``) instead of a throwaway one;
    the user must be allowed to create databases and roles. Its password: ``PGPASSWORD``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return PgServer(parsed.host or "127.0.0.1", parsed.port or 5432, parsed.username or USER)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's server with a migrated template database; skips when none can start."""
    given = os.environ.get(PG_ENV)
    # Under /tmp, not pytest's tmp_path: the `postgres` user must reach the folder.
    folder = None if given else Path(tempfile.mkdtemp(prefix="cskpi-pg-"))
    try:
        server = _external(given) if given else start(folder)  # type: ignore[arg-type]
    except RuntimeError as exc:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    try:
        server.admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        server.admin(f"CREATE DATABASE {TEMPLATE}")
        open_engine(server.url(TEMPLATE)).dispose()
        yield server
    finally:
        stop(server)


@pytest.fixture(params=DIALECTS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store: a SQLite file, or a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return new_store(request, request.param, tmp_path)


def empty_store(request: pytest.FixtureRequest, dialect: str, folder: Path) -> str:
    """A database of ``dialect`` with nothing in it, not even the migrations."""
    if dialect == "sqlite":
        return new_store(request, dialect, folder)
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.empty()
    request.addfinalizer(lambda: server.drop(url))
    return url


def new_store(request: pytest.FixtureRequest, dialect: str, folder: Path) -> str:
    """One more empty store of ``dialect`` for this test (PostgreSQL's come migrated from
    the template; a SQLite file is migrated by ``open_engine``). Dropped after the test."""
    if dialect == "sqlite":
        return f"sqlite:///{tempfile.mkstemp(suffix='.db', dir=folder)[1]}"
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.fresh()
    request.addfinalizer(lambda: server.drop(url))
    return url


def store_maker(request: pytest.FixtureRequest, dialect: str, folder: Path) -> Callable[[], str]:
    """For a test that needs many empty stores in turn: on PostgreSQL one database,
    emptied each time (faster than a new database each)."""
    if dialect == "sqlite":
        return lambda: new_store(request, dialect, folder)
    server: PgServer = request.getfixturevalue("pg_server")
    url = new_store(request, dialect, folder)

    def emptied() -> str:
        server.clear(url)
        return url

    return emptied
