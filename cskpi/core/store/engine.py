"""Opening a store (migrated to the current schema) and its write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from cskpi.core.store.dialect import make_engine
from cskpi.core.store.migrations import migrate


def open_engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(cskpi_write=True) as conn, conn.begin():
        yield conn
