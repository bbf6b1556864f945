"""Opening a store (checked, then migrated to the current schema) and its write transactions.

A database that cannot be used stops a command with a :class:`StoreError`: one line naming
the config's ``database`` key or the SQLite file, never a driver's traceback. What can be
told before connecting is checked first (the kind of database, its driver, the SQLite
file's folder and permissions); what the driver reports later (unreachable, damaged, read
only) is translated as it happens, for every statement on the engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import Connection, Engine, event, inspect
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

from cskpi.core.config.secrets import redact
from cskpi.core.files import create_private
from cskpi.core.store.dialect import make_engine, normalise_url
from cskpi.core.store.errors import StoreError
from cskpi.core.store.migrations import migrate

__all__ = ["StoreError", "check_store", "open_engine", "write_transaction"]

KINDS = "use sqlite:///PATH or postgresql://USER@HOST/DB"


def open_engine(url: str, *, create: bool = True) -> Engine:
    """The store at ``url``, migrated. With ``create`` False (the read commands) a store not
    made yet is a :class:`StoreError` naming `cskpi sync`, and nothing is created."""
    target = _target(url)
    if target.file is not None:
        # Readers write too: SQLite's -shm file, and `status` ends runs of dead processes.
        _check_file(target.file, create=create, write=True)
        if create:
            create_private(target.file)  # before SQLite makes it 0644
    engine = _engine(url, target)
    try:
        if not create:
            _require_store(engine, target)
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def check_store(url: str) -> str:
    """`cskpi check`'s test of the database: its kind and driver, the SQLite file's folder and
    permissions, a connection, and SQLite's ``PRAGMA quick_check`` of every page. Creates
    nothing; a :class:`StoreError` on any problem, else what was found."""
    target = _target(url)
    if target.file is not None:
        _check_file(target.file, create=True, write=True)
        if not target.file.exists():
            return f"{target.file}: not there yet; the first `cskpi sync` makes it"
    engine = _engine(url, target)
    try:
        with engine.connect() as conn:
            if target.url.get_backend_name() != "sqlite":
                conn.exec_driver_sql("SELECT 1")
                return f"{target.shown}: connected"
            problems = list(conn.exec_driver_sql("PRAGMA quick_check").scalars())
    finally:
        engine.dispose()
    if problems != ["ok"]:
        raise StoreError(f"database {target.shown}: damaged ({problems[0]}); {_RESTORE}", 1)
    return f"{target.shown}: integrity ok"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(cskpi_write=True) as conn, conn.begin():
        yield conn


# --- what can be told before connecting --------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: URL
    file: Path | None  # the SQLite file; None for a server or an in-memory database

    @property
    def shown(self) -> str:
        """The database as an error names it: the file, or the URL without its password."""
        return str(self.file) if self.file else self.url.render_as_string(hide_password=True)


def _target(url: str) -> _Target:
    """The parsed URL; a :class:`StoreError` for a kind of database or driver cskpi cannot use."""
    scheme = url.partition("://")[0]
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError:
        raise StoreError(f"database: {scheme}://… is not a database URL; {KINDS}", 2) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"database: unknown kind of database {scheme!r}; {KINDS}", 2)
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise StoreError(f"database: unknown driver in {scheme!r}; {KINDS}", 2) from None
    except ImportError as exc:
        driver = parsed.get_driver_name()
        hint = "; postgresql://… uses psycopg 3" if driver != "psycopg" else ""
        reason = (
            f"the {driver} driver is not installed ({exc}){hint}: pip install 'cskpi[postgres]'"
        )
        raise StoreError(f"database: {reason}", 2) from None
    database = parsed.database or ""
    memory = backend != "sqlite" or database in ("", ":memory:") or database.startswith("file:")
    return _Target(parsed, None if memory else Path(database))


def _check_file(path: Path, *, create: bool, write: bool) -> None:
    """The SQLite file's folder exists; the file exists unless it may be ``create``d; with
    ``write``, the folder (SQLite's -wal and -shm files go there) and file are writable."""
    folder = path.parent
    if path.is_dir():
        raise StoreError(f"database {path}: is a folder, not a SQLite file; fix `database`", 2)
    if not folder.is_dir():
        missing = "is not a folder" if folder.exists() else "does not exist"
        raise StoreError(
            f"database {path}: the folder {folder} {missing}; create it or fix `database`", 2
        )
    if not create and not path.exists():
        raise StoreError(
            f"database {path}: no such file; nothing has been synced into it yet: "
            "run `cskpi sync` first (or fix `database`)",
            1,
        )
    if write and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"database {path}: cannot write in the folder {folder} (permission "
            "denied); SQLite keeps its -wal and -shm files beside the database",
            2,
        )
    if write and path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"database {path}: cannot read and write the file (permission denied)", 2)


# --- what the driver reports -------------------------------------------------------------

_RESTORE = "restore it from a backup, or move it away and run `cskpi sync` to start anew"
# The driver's words for a problem the config (a password, a name, a path) must fix.
_CONFIG_FAULTS = (
    "readonly database",
    "authentication failed",
    "does not exist",
    "no password supplied",
    "permission denied",
)
_DAMAGE = ("not a database", "malformed", "disk image")


def _engine(url: str, target: _Target) -> Engine:
    engine = make_engine(url)
    event.listen(engine, "handle_error", partial(_translate, target))
    return engine


def _translate(target: _Target, context: ExceptionContext) -> BaseException | None:
    """The driver's error about the database itself (not a statement's) as a StoreError; the
    engine raises what this returns (``handle_error``, SQLAlchemy's documented way)."""
    error = context.sqlalchemy_exception
    if not isinstance(error, OperationalError) and type(error) is not DatabaseError:
        return None
    return _database_error(target, context.original_exception)


def _database_error(target: _Target, original: BaseException) -> StoreError:
    lines = str(original).strip().splitlines() or [type(original).__name__]
    reason = redact(lines[0].removeprefix("connection failed: "))
    if any(words in reason for words in _DAMAGE):
        return StoreError(f"database {target.shown}: {reason}; {_RESTORE}", 1)
    code = 2 if any(words in reason.lower() for words in _CONFIG_FAULTS) else 1
    return StoreError(f"database {target.shown}: {reason}", code)


def _require_store(engine: Engine, target: _Target) -> None:
    with engine.connect() as conn:
        made = inspect(conn).has_table("_migrations")
    if not made:
        raise StoreError(
            f"database {target.shown}: holds no cskpi store yet; run `cskpi sync` first", 1
        )
