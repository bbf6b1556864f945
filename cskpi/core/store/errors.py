"""The error of a database that cannot be used, apart from the engine so that the command
line can catch it without importing SQLAlchemy (`cskpi --help` stays instant)."""

from __future__ import annotations


class StoreError(Exception):
    """A database that cannot be used. ``str()`` is one line naming the config's ``database``
    key or the SQLite file; ``code`` is the exit status (SPEC §1): 2 when the config or the
    installation must change, 1 when the database failed (unreachable, damaged, not synced)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
