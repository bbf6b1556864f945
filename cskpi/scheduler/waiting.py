"""The rule every daemon job that reads the store keeps (a digest, a report owed from while
the daemon was down, an alert): it runs once the store has synced past its window, since a
store behind it would report zeros; until then it waits, tried again after each sync, and
once its grace has passed it is dropped with a log line. Sending once is not this rule's
work: ``digest_run``, ``alert_run`` and a report's kept file see to that, across restarts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cskpi.core.config.periods import Window

log = logging.getLogger("cskpi.run")


@dataclass(frozen=True)
class Words:
    """A job's two log lines, as ``str.format`` templates of ``job``, ``due`` (its time, in
    ISO form) and ``reason`` (what the store lacks)."""

    waits: str
    dropped: str


@dataclass(frozen=True)
class Due:
    """One run of a job, due ``at``: ``job`` and ``at`` are what it waits under."""

    job: str  # "digest:morning"
    at: datetime
    needs: Window  # the store must have synced past this window
    grace: timedelta  # dropped once ``at + grace`` has passed
    words: Words


class Waiting:
    """The runs waiting for a sync. ``unsynced`` says why the store cannot serve a window yet
    (``None`` once it can); ``clock`` judges the grace."""

    def __init__(
        self, clock: Callable[[], datetime], unsynced: Callable[[Window], str | None]
    ) -> None:
        self.clock = clock
        self.unsynced = unsynced
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, datetime], Callable[[], object]] = {}

    def run(self, due: Due, action: Callable[[], bool], again: Callable[[], object]) -> bool:
        """``action()`` if the store is synced past ``due.needs``; else wait (saying so once),
        to be tried again as ``again()``, or be dropped once the grace has passed. ``again``
        looks the job up afresh, so a reload that changed or removed it is heeded."""
        reason = self.unsynced(due.needs)
        key = (due.job, due.at)
        with self._lock:
            was_waiting = self._runs.pop(key, None) is not None
        if reason is None:
            return action()
        said = {"job": due.job, "due": due.at.isoformat(), "reason": reason}
        if self.clock() >= due.at + due.grace:
            log.error(due.words.dropped.format(**said))
            return False
        with self._lock:
            self._runs[key] = again
        if not was_waiting:
            log.info(due.words.waits.format(**said))
        return False

    def forget(self, job: str, at: datetime) -> None:
        """The job is gone (a reload removed it): it waits no more."""
        with self._lock:
            self._runs.pop((job, at), None)

    def retry(self) -> None:
        """Try every waiting run again, in the order they began to wait; one another thread
        ran or dropped meanwhile is left alone."""
        with self._lock:
            waiting = list(self._runs)
        for key in waiting:
            with self._lock:
                again = self._runs.get(key)
            if again is not None:
                again()
