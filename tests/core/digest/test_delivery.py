"""The exactly-once claims digests and alerts share (core/digest/delivery.py), row by row on
a fake clock: a fresh claim blocks a second, a stale one is taken over, sent rows stay sent
(unless forced), failed ones are claimed again; a send's failure is stored redacted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cskpi.core.clock import FakeClock
from cskpi.core.config.secrets import forget_secrets, register_secret
from cskpi.core.digest.delivery import STALE_CLAIM, Claims
from cskpi.core.digest.errors import DeliveryError
from cskpi.core.store.engine import open_engine

DIGEST = {"digest": "daily", "window_from": 1_000, "window_to": 2_000, "target": "slack"}
ALERT = {"alert": "spike", "key": "zd:a1", "bucket_from": 1_000, "target": "email"}
WHERE = "digest daily, slack"
LOG = logging.getLogger("test.delivery")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(f"sqlite:///{tmp_path / 'kpi.db'}")
    yield engine
    engine.dispose()


def digests(engine: Engine, clock: FakeClock) -> Claims:
    return Claims(engine, "digest_run", ("digest", "window_from", "window_to", "target"), clock)


def rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    columns = "status, sent_at, error" + (
        ", bucket_to, value, usual" if table == "alert_run" else ""
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT {columns} FROM {table}"))]


def test_a_claim_blocks_a_second_until_it_is_stale(engine: Engine) -> None:
    clock = FakeClock(wall_start=10_000)
    claims = digests(engine, clock)
    assert claims.claim(DIGEST)
    assert rows(engine, "digest_run") == [("sending", 10_000, None)]
    clock.advance(STALE_CLAIM.total_seconds())  # exactly STALE_CLAIM old: not yet stale
    assert not claims.claim(DIGEST)
    clock.advance(1)
    assert claims.claim(DIGEST)  # the process that claimed it died mid-send
    assert rows(engine, "digest_run") == [("sending", 10_901, None)]


def test_sent_stays_sent_unless_forced_and_failed_is_claimed_again(engine: Engine) -> None:
    clock = FakeClock(wall_start=10_000)
    claims = digests(engine, clock)
    assert claims.claim(DIGEST)
    clock.advance(5)
    claims.finish(DIGEST, "sent", None)
    assert rows(engine, "digest_run") == [("sent", 10_005, None)]
    clock.advance(STALE_CLAIM.total_seconds() * 10)
    assert not claims.claim(DIGEST)
    assert claims.claim(DIGEST, force=True)
    claims.finish(DIGEST, "failed", "boom")
    assert rows(engine, "digest_run") == [("failed", None, "boom")]
    assert claims.claim(DIGEST)
    assert rows(engine, "digest_run") == [("sending", 19_005, None)]


def test_an_alert_row_keeps_the_values_of_its_first_claim(engine: Engine) -> None:
    clock = FakeClock(wall_start=10_000)
    claims = Claims(engine, "alert_run", ("alert", "key", "bucket_from", "target"), clock)
    assert claims.claim(ALERT, {"bucket_to": 4_600, "value": 12.5, "usual": 3.0})
    claims.finish(ALERT, "failed", "smtp down")
    assert claims.claim(ALERT, {"bucket_to": 4_600, "value": 99.0, "usual": 1.0})
    assert rows(engine, "alert_run") == [("sending", 10_000, None, 4_600, 12.5, 3.0)]
    other = {**ALERT, "target": "slack"}  # another target of the same finding: its own row
    assert claims.claim(other, {"bucket_to": 4_600, "value": 12.5, "usual": 3.0})


def test_a_failed_send_is_stored_redacted_without_where(engine: Engine) -> None:
    clock = FakeClock(wall_start=10_000)
    claims = digests(engine, clock)
    register_secret("xoxb-secret-123")
    try:

        def refused() -> str | None:
            raise DeliveryError(f"{WHERE}: Slack refused token xoxb-secret-123 (invalid_auth)")

        assert claims.claim(DIGEST)
        assert claims.deliver(DIGEST, WHERE, refused, LOG) == (
            "failed", "Slack refused token *** (invalid_auth)"
        )  # fmt: skip
        assert rows(engine, "digest_run") == [
            ("failed", None, "Slack refused token *** (invalid_auth)")
        ]

        def crashed() -> str | None:
            raise KeyError("xoxb-secret-123")

        assert claims.claim(DIGEST)
        assert claims.deliver(DIGEST, WHERE, crashed, LOG) == ("failed", "KeyError: '***'")
    finally:
        forget_secrets()


def test_a_sent_row_keeps_the_warning_of_its_send(engine: Engine) -> None:
    clock = FakeClock(wall_start=10_000)
    claims = digests(engine, clock)
    assert claims.claim(DIGEST)
    clock.advance(3)
    status = claims.deliver(DIGEST, WHERE, lambda: "the chart upload failed", LOG)
    assert status == ("sent", "the chart upload failed")
    assert rows(engine, "digest_run") == [("sent", 10_003, "the chart upload failed")]
