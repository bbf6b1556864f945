"""Exactly-once delivery, one code path for digests (``digest_run``) and alerts (``alert_run``).

A row per thing to send and target is claimed (status ``sending``, ``sent_at`` = the claim
time) in one write transaction before the send, and marked ``sent`` or ``failed`` after it.
So a second run, a restarted daemon or a manual command beside the daemon finds the claim
and sends nothing; a failed row is claimed again by the next run; one target failing does
not stop the other. A claim left ``sending`` by a process that died mid-send is taken over
after :data:`STALE_CLAIM` (the thing may then be sent twice rather than never: the crash may
have come before the post).

It lives with the digest, not the store, because a failure is told by the digest's
:class:`~cskpi.core.digest.errors.DeliveryError`; alerts sit above digests and import it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import Engine, text

from cskpi.core.clock import Clock
from cskpi.core.config.file import Config, EmailTarget, SlackTarget
from cskpi.core.config.secrets import redact
from cskpi.core.digest.errors import DeliveryError
from cskpi.core.store.engine import open_engine, write_transaction

STALE_CLAIM = timedelta(minutes=15)
Status = Literal["sent", "skipped", "failed"]
Row = Mapping[str, str | int | None]  # a run table's primary key: column -> value
Values = Mapping[str, str | int | float | None]
Target = SlackTarget | EmailTarget


class Targeted(Protocol):
    """A ``[digests.NAME]`` or ``[alerts.NAME]`` table: where it goes."""

    @property
    def slack(self) -> SlackTarget | None: ...
    @property
    def email(self) -> EmailTarget | None: ...


def targets_of(settings: Targeted) -> list[tuple[str, Target]]:
    """The configured targets, by name ("slack", "email"), in the order they are sent to."""
    pairs: list[tuple[str, Target | None]] = [("slack", settings.slack), ("email", settings.email)]
    return [(name, target) for name, target in pairs if target is not None]


class Claims:
    """The rows of one run table (``digest_run``, ``alert_run``): each named by its primary
    key columns ``key`` (the target among them), all of them given to :meth:`claim` and
    :meth:`finish`. Table and column names come from code, never from input."""

    def __init__(self, engine: Engine, table: str, key: tuple[str, ...], clock: Clock | None):
        self.engine, self.table, self.key, self.clock = engine, table, key, clock

    def _now(self) -> int:
        return int(self.clock.wall() if self.clock else datetime.now(UTC).timestamp())

    def _where(self) -> str:
        return " AND ".join(f"{c} = :c_{c}" for c in self.key)

    def claim(self, row: Row, values: Values | None = None, *, force: bool = False) -> bool:
        """Take ``row`` (stored with ``values``); False when it is sent, or being sent right
        now. ``force`` takes a sent row too."""
        now, values = self._now(), values or {}
        columns = [*self.key, *values]
        sql = (
            f"INSERT INTO {self.table} ({', '.join(columns)}, sent_at, status, error) "  # noqa: S608
            f"VALUES ({', '.join(f':c_{c}' for c in columns)}, :now, 'sending', NULL) "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET status = 'sending', "
            f"sent_at = :now, error = NULL WHERE :force OR {self.table}.status = 'failed' OR "
            f"({self.table}.status = 'sending' AND {self.table}.sent_at < :stale)"
        )
        params = {**_bound(row), **_bound(values), "now": now, "force": force,
                  "stale": now - int(STALE_CLAIM.total_seconds())}  # fmt: skip
        with write_transaction(self.engine) as conn:
            return conn.execute(text(sql), params).rowcount == 1

    def finish(self, row: Row, status: Status, error: str | None) -> None:
        """Mark a claimed row ``sent`` (at now) or ``failed``, with the redacted error or the
        warning of a send that went out."""
        sql = (f"UPDATE {self.table} SET status = :status, sent_at = :at, error = :error "  # noqa: S608
               f"WHERE {self._where()}")  # fmt: skip
        at = self._now() if status == "sent" else None
        params = {**_bound(row), "status": status, "at": at, "error": error}
        with write_transaction(self.engine) as conn:
            conn.execute(text(sql), params)

    def deliver(
        self, row: Row, where: str, send: Callable[[], str | None], log: logging.Logger
    ) -> tuple[Status, str | None]:
        """Send a claimed row and finish it: ``("sent", warning)``, or ``("failed", error)``
        with the error redacted, logged and stored without the ``where`` that the row and
        result already carry."""
        try:
            warning = send()
        except Exception as exc:  # one target failing must not stop the other
            shown = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            error = redact(shown.removeprefix(f"{where}: "))
            log.error("%s: %s", where, error)
            self.finish(row, "failed", error)
            return "failed", error
        self.finish(row, "sent", warning)
        return "sent", warning


def _bound(values: Mapping[str, object]) -> dict[str, object]:
    """Parameters named apart from the fixed ones (now, force, status …)."""
    return {f"c_{c}": v for c, v in values.items()}


@contextmanager
def engine_of(config: Config, engine: Engine | None) -> Iterator[Engine]:
    """``engine`` when given (the scheduler's); else ``config.database``'s, disposed of after."""
    if engine is not None:
        yield engine
        return
    own = open_engine(config.database)
    try:
        yield own
    finally:
        own.dispose()
