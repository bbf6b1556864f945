"""Storing a page: its records and its stream's progress, in one transaction.

One write transaction per page, in the syncing process: one bulk upsert per table
(``upserts.py``), then the stream's row count and, when the page carries one, its cursor
(``sync_state.py``). A crash between pages loses nothing and doubles nothing: a page is
stored whole with its cursor, or not at all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from cskpi.connectors.base import Page
from cskpi.core.store import sync_state
from cskpi.core.store.engine import write_transaction
from cskpi.core.store.upserts import Written, upsert_records

Checkpoint = tuple[str, datetime | None]  # a cursor, and the source time it stands at


def store_page(
    engine: Engine,
    connector: str,
    page: Page,
    stream: str | None = None,
    checkpoint: Checkpoint | None = None,
) -> Written:
    """Store ``page``'s records; with ``stream``, count them there and move its cursor to
    ``checkpoint`` (when given) in the same transaction. Returns the rows sent and changed."""
    with write_transaction(engine) as conn:
        written = upsert_records(conn, connector, page.records)
        if stream is not None:
            sync_state.save_progress(conn, connector, stream, written.rows, checkpoint)
    return written
