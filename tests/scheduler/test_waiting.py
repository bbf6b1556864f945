"""The one rule of the daemon's jobs that read the store: run once it is synced past the
window, else wait (saying so once) and try again after each sync, dropped with a log line
once the grace has passed. On an injected clock and a scripted sync state, no store."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cskpi.core.config.periods import Window
from cskpi.scheduler.waiting import Due, Waiting, Words

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
WINDOW = Window(AT - timedelta(days=1), AT, ZoneInfo("Europe/Berlin"), AT)
WORDS = Words(waits="{job} due {due} waits: {reason}", dropped="{job} due {due} dropped: {reason}")
DUE = Due("digest:morning", AT, WINDOW, timedelta(hours=6), WORDS)


@pytest.fixture(autouse=True)
def logs_reach_caplog(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A CLI test earlier in the session may have pointed the cskpi logger at its stderr."""
    root = logging.getLogger("cskpi")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "propagate", True)
    caplog.set_level("INFO", logger="cskpi.run")


class Store:
    """What ``unsynced`` says, and the windows it was asked about."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        self.asked: list[Window] = []

    def __call__(self, window: Window) -> str | None:
        self.asked.append(window)
        return self.reason


class Job:
    """A job that counts its runs and, like the daemon's, tries itself again through
    ``waiting.run``."""

    def __init__(self, waiting: Waiting, due: Due = DUE) -> None:
        self.waiting, self.due, self.runs = waiting, due, 0

    def action(self) -> bool:
        self.runs += 1
        return True

    def __call__(self) -> bool:
        return self.waiting.run(self.due, self.action, again=self)


def test_a_synced_store_runs_the_job_at_once_and_once(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(None)
    job = Job(Waiting(lambda: AT, store))
    assert job() is True
    job.waiting.retry()
    assert job.runs == 1
    assert store.asked == [WINDOW]
    assert caplog.text == ""


def test_an_unsynced_store_keeps_the_job_waiting_until_a_sync(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store("behind: zd")
    now = [AT + timedelta(minutes=5)]
    job = Job(Waiting(lambda: now[0], store))
    assert job() is False
    assert job.runs == 0
    assert [r.getMessage() for r in caplog.records] == [
        "digest:morning due 2026-11-23T08:00:00+00:00 waits: behind: zd"
    ]
    now[0] = AT + timedelta(hours=5, minutes=59)
    job.waiting.retry()  # a sync that did not help: still waiting, said once
    assert job.runs == 0
    assert len(caplog.records) == 1
    store.reason = None
    job.waiting.retry()  # the sync that brought the store past the window
    job.waiting.retry()
    assert job.runs == 1
    assert len(store.asked) == 3


def test_a_job_still_waiting_when_its_grace_passes_is_dropped_with_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store("behind: zd")
    now = [AT]
    job = Job(Waiting(lambda: now[0], store))
    job()
    now[0] = AT + timedelta(hours=6)  # grace is 6 h: dropped at its very end
    job.waiting.retry()
    dropped = caplog.records[-1]
    assert (dropped.levelname, dropped.getMessage()) == (
        "ERROR", "digest:morning due 2026-11-23T08:00:00+00:00 dropped: behind: zd",
    )  # fmt: skip
    store.reason = None
    job.waiting.retry()  # dropped for good: a later sync does not run it
    assert job.runs == 0
    assert len(store.asked) == 2


def test_a_job_due_past_its_grace_is_dropped_without_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = Job(Waiting(lambda: AT + timedelta(days=1), Store("behind: zd")))
    assert job() is False
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "digest:morning" in caplog.text


def test_jobs_wait_apart_and_a_forgotten_one_is_not_tried_again() -> None:
    store = Store("behind: zd")
    waiting = Waiting(lambda: AT, store)
    digest = Job(waiting)
    alert = Job(waiting, Due("alert:volume", AT, WINDOW, timedelta(hours=1), WORDS))
    later = Job(waiting, Due("digest:morning", AT + timedelta(days=1), WINDOW,
                             timedelta(hours=6), WORDS))  # fmt: skip
    digest(), alert(), later()
    waiting.forget("digest:morning", AT)
    store.reason = None
    waiting.retry()
    assert (digest.runs, alert.runs, later.runs) == (0, 1, 1)


def test_a_run_that_ran_meanwhile_is_not_run_again_by_the_retry() -> None:
    store = Store("behind: zd")
    waiting = Waiting(lambda: AT, store)
    second = Job(waiting, Due("alert:volume", AT, WINDOW, timedelta(hours=1), WORDS))

    class First(Job):
        def action(self) -> bool:
            second()  # as another sync's thread would, while this retry goes on
            return super().action()

    first = First(waiting)
    first(), second()
    store.reason = None
    waiting.retry()
    assert (first.runs, second.runs) == (1, 1)
