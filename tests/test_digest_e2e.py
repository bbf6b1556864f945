"""Digests end to end: a synced demo helpdesk, a real SMTP server (STARTTLS/TLS + login) and
a local HTTP server playing Slack; exactly-once across runs and after a failed target."""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cskpi.cli import app
from cskpi.connectors.registry import installed
from cskpi.core import app as core
from cskpi.core.clock import FakeClock
from cskpi.core.config.file import Config, load_config
from cskpi.core.config.periods import period_window
from cskpi.core.digest.runs import run_digest
from cskpi.core.kpis.output import value_text
from cskpi.core.kpis.report import KpiContext, compute
from cskpi.core.store.engine import open_engine
from tests.digest_servers import (
    SLACK_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    Mailbox,
    SlackServer,
    slack_server,
    smtp_server,
)

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday: "yesterday" is Thu 19 Nov
HOOK_SECRET = "B0HOOK/s3cretHookPathValue"
runner = CliRunner()

BASE = """\
timezone = "UTC"
database = "sqlite:///kpi.db"

[connectors.shop]
type = "demo"
tickets = 900
days = 30
seed = 3
end = 2026-11-21T00:00:00Z

[sla]
first_response = {{ urgent = "1h", high = "4h", normal = "8h", low = "24h" }}
resolution = {{ urgent = "8h", high = "24h", normal = "72h", low = "168h" }}

[digests.daily]
schedule = "0 9 * * mon-fri"
period = "yesterday"
by = "agent"
{targets}
"""


@pytest.fixture(scope="module")
def synced_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synced demo database; each test works on its own copy."""
    folder = tmp_path_factory.mktemp("synced")
    path = folder / "cskpi.toml"
    path.write_text(BASE.format(targets=""), encoding="utf-8")
    report = core.sync(load_config(path, installed()), installed())
    assert report.ok
    return folder / "kpi.db"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Mailbox, int, SlackServer]]:
    with smtp_server(tmp_path) as (box, port), slack_server() as slack:
        yield box, port, slack


def configure(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, targets: str
) -> Config:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))  # trust the test server
    monkeypatch.setenv("SMTP_PW", SMTP_PASSWORD)
    monkeypatch.setenv("SLACK_TOKEN", SLACK_TOKEN)
    (tmp_path / "kpi.db").write_bytes(synced_db.read_bytes())
    path = tmp_path / "cskpi.toml"
    path.write_text(BASE.format(targets=targets), encoding="utf-8")
    return load_config(path, installed())


def webhook_and_email(slack: SlackServer, port: int, scheme: str = "smtp") -> str:
    return (
        f'slack = {{ webhook_url = "{slack.base}/hooks/T0/{HOOK_SECRET}" }}\n'
        f'email = {{ to = ["lead@acme.test", "ops@acme.test"], '
        f'smtp_url = "{scheme}://127.0.0.1:{port}", '
        f'from = "{SMTP_USER}", password = "env:SMTP_PW" }}\n'
    )


def expected(cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """The KPI engine's own answers for the digest window and the day before."""
    engine = open_engine(cfg.database)
    try:
        ctx = KpiContext.from_config(cfg)
        now = compute(engine, period_window("yesterday", cfg.timezone, AT), ctx).kpis
        before = compute(
            engine,
            period_window("yesterday", cfg.timezone, datetime(2026, 11, 19, 9, tzinfo=UTC)),
            ctx,
        ).kpis
    finally:
        engine.dispose()
    return now, before


def count_change(a: int, b: int) -> str:
    arrow = "▲" if a > b else "▼" if a < b else "="
    return f"{arrow} {a - b:+,} ({100 * (a - b) / b:+.1f}%)"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- email ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_email_arrives_with_values_deltas_and_inline_chart(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    with smtp_server(tmp_path, implicit_tls=scheme == "smtps") as (box, port):
        targets = (
            f'email = {{ to = ["lead@acme.test"], smtp_url = "{scheme}://127.0.0.1:{port}", '
            f'from = "{SMTP_USER}", password = "env:SMTP_PW" }}\n'
        )
        cfg = configure(tmp_path, synced_db, monkeypatch, targets)
        result = run_digest(cfg, "daily", AT)
    assert [(t.target, t.status, t.error) for t in result.targets] == [("email", "sent", None)]
    assert box.logins == [SMTP_USER]
    assert box.recipients == [["lead@acme.test"]]
    (msg,) = box.messages
    assert msg["Subject"] == (
        "[cskpi] daily digest · Thu 19 Nov 2026 · backlog 67, first response 3h 20m"
    )
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()  # type: ignore[misc]
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    cid = image["Content-ID"].strip("<>")
    html = html_part.get_content()
    assert f'src="cid:{cid}"' in html
    assert png_size(image.get_content()) == (1080, 600)

    now, before = expected(cfg)
    text = plain.get_content()
    created, solved = now["tickets_created"]["value"], now["tickets_solved"]["value"]
    was_created, was_solved = before["tickets_created"]["value"], before["tickets_solved"]["value"]
    assert (created, was_created, solved, was_solved) == (42, 36, 41, 36)  # pinned demo data
    assert "Tickets created                   42  ▲ +6 (+16.7%)" in text
    assert "Tickets solved                    41  ▲ +5 (+13.9%) (better)" in text
    assert count_change(solved, was_solved) in html
    frt = value_text("first_response_time", now["first_response_time"])
    assert frt == "3h 20m"
    assert f"{'First response (median)':<24}  {frt:>10}" in text
    fcr_change = now["fcr_rate"]["value"] - before["fcr_rate"]["value"]
    assert f"{fcr_change:+.1f} pts" in text
    # a rising solved count is good (green), whatever the arrow
    assert 'color:#1a7f37;" class="delta">▲ +5 (+13.9%)' in html
    assert ">42</td>" in html
    assert ">41</td>" in html
    breaches = now["sla_first_response"]["denominator"] - now["sla_first_response"]["numerator"]
    assert f"SLA breaches: {breaches:,} first response" in text


def test_email_refused_login_fails_and_names_the_key_not_the_password(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server(tmp_path) as (box, port):
        targets = (
            f'email = {{ to = ["lead@acme.test"], smtp_url = "smtp://127.0.0.1:{port}", '
            f'from = "{SMTP_USER}", password = "env:SMTP_PW" }}\n'
        )
        cfg = configure(tmp_path, synced_db, monkeypatch, targets)
        monkeypatch.setenv("SMTP_PW", "wrong-password-here")
        cfg = load_config(cfg.path, installed())
        result = run_digest(cfg, "daily", AT)
    (target,) = result.targets
    assert target.status == "failed"
    assert target.error is not None
    assert "refused the login (535); check username and password" in target.error
    assert "wrong-password-here" not in target.error
    assert box.messages == []


# --- Slack webhook ----------------------------------------------------------------------


def block_kit_limits(message: dict[str, Any]) -> None:
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
            assert block["text"]["type"] == "plain_text"
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
    assert len(message["text"]) <= 40000


def test_webhook_receives_block_kit_with_values_and_the_sparkline(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, servers: Any
) -> None:
    _box, port, slack = servers
    cfg = configure(tmp_path, synced_db, monkeypatch, webhook_and_email(slack, port))
    result = run_digest(cfg, "daily", AT)
    assert [(t.target, t.status) for t in result.targets] == [("slack", "sent"), ("email", "sent")]
    (call,) = slack.calls
    assert call.path == f"/hooks/T0/{HOOK_SECRET}"
    message = call.json()
    block_kit_limits(message)
    texts = "\n".join(json.dumps(b, ensure_ascii=False) for b in message["blocks"])
    assert "*Tickets created*  `42`  :white_circle: ▲ +6 (+16.7%)" in texts
    assert "*Tickets solved*  `41`  :large_green_circle: ▲ +5 (+13.9%)" in texts
    assert "*Last 14 days*" in texts  # a webhook cannot upload: the chart comes as text
    assert message["blocks"][0] == {
        "type": "header", "text": {"type": "plain_text", "text": "daily digest · Thu 19 Nov 2026"}
    }  # fmt: skip


def test_webhook_429_waits_retry_after_on_the_clock(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, no_real_sleep: None
) -> None:
    with slack_server() as slack:
        hook = f"/hooks/T0/{HOOK_SECRET}"
        slack.script[hook] = [(429, {"Retry-After": "7"}, "rate_limited")]
        targets = f'slack = {{ webhook_url = "{slack.base}{hook}" }}\n'
        cfg = configure(tmp_path, synced_db, monkeypatch, targets)
        clock = FakeClock()
        result = run_digest(cfg, "daily", AT, clock=clock)
    assert [t.status for t in result.targets] == ["sent"]
    assert clock.sleeps == [7.0]
    assert slack.paths() == [hook, hook]


def test_webhook_5xx_is_not_retried_and_the_hook_path_is_never_shown(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, no_real_sleep: None
) -> None:
    with slack_server() as slack:
        hook = f"/hooks/T0/{HOOK_SECRET}"
        slack.script[hook] = [(500, {}, "rollup_error")]
        cfg = configure(
            tmp_path, synced_db, monkeypatch, f'slack = {{ webhook_url = "{slack.base}{hook}" }}\n'
        )
        result = run_digest(cfg, "daily", AT, clock=FakeClock())
    (target,) = result.targets
    assert target.status == "failed"
    assert target.error is not None
    assert "500" in target.error
    assert "rollup_error" in target.error
    assert "s3cretHookPathValue" not in target.error
    assert slack.paths() == [hook]  # a 5xx may follow a post: retrying could post twice


# --- Slack Web API through slack_sdk ----------------------------------------------------


def test_token_posts_blocks_then_uploads_the_chart_after_a_429(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, no_real_sleep: None
) -> None:
    with slack_server() as slack:
        slack.script["/api/chat.postMessage"] = [
            (
                429,
                {"Retry-After": "3", "Content-Type": "application/json"},
                '{"ok":false,"error":"ratelimited"}',
            )
        ]
        targets = (
            'slack = { token = "env:SLACK_TOKEN", channel = "#support", '
            f'base_url = "{slack.base}/api/" }}\n'
        )
        cfg = configure(tmp_path, synced_db, monkeypatch, targets)
        clock = FakeClock()
        result = run_digest(cfg, "daily", AT, clock=clock)
    assert [(t.status, t.error) for t in result.targets] == [("sent", None)]
    assert clock.sleeps == [3.0]
    assert slack.paths() == [
        "/api/chat.postMessage", "/api/chat.postMessage", "/api/files.getUploadURLExternal",
        "/upload/F1", "/api/files.completeUploadExternal",
    ]  # fmt: skip
    post = slack.calls[1]
    assert post.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    args = post.payload()
    assert args["channel"] == "#support"
    blocks = args["blocks"] if isinstance(args["blocks"], list) else json.loads(args["blocks"])
    block_kit_limits({"blocks": blocks, "text": args["text"]})
    assert not any("Last 14 days" in json.dumps(b) for b in blocks)  # the image replaces it
    assert png_size(slack.calls[3].body) == (1080, 600)
    complete = slack.calls[4].form()
    assert complete["channel_id"] == "C0SUPPORT"  # the ID the post answered, not "#support"


def test_check_calls_auth_test_smtp_login_and_probes_the_webhook(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, servers: Any
) -> None:
    box, port, slack = servers
    hook = f"/hooks/T0/{HOOK_SECRET}"
    slack.script[hook] = [(400, {}, "no_text")]
    cfg = configure(tmp_path, synced_db, monkeypatch, webhook_and_email(slack, port))
    results = [r for r in core.check(cfg, installed()) if r.connector.startswith("digest")]
    assert [(r.connector, r.ok) for r in results] == [
        ("digest daily: slack", True), ("digest daily: email", True)
    ]  # fmt: skip
    assert slack.calls[0].json() == {}  # an empty payload posts nothing
    assert box.logins == [SMTP_USER]
    assert box.messages == []


# --- exactly once -----------------------------------------------------------------------


def runs(cfg: Config) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(cfg.path.parent / "kpi.db") as conn:
        return conn.execute(
            "SELECT target, status, error FROM digest_run ORDER BY target"
        ).fetchall()


def test_a_second_run_sends_nothing_and_force_sends_again(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, servers: Any
) -> None:
    box, port, slack = servers
    cfg = configure(tmp_path, synced_db, monkeypatch, webhook_and_email(slack, port))
    first = run_digest(cfg, "daily", AT)
    second = run_digest(cfg, "daily", datetime(2026, 11, 20, 17, 30, tzinfo=UTC))  # same window
    assert [t.status for t in first.targets] == ["sent", "sent"]
    assert [t.status for t in second.targets] == ["skipped", "skipped"]
    assert (len(slack.calls), len(box.messages)) == (1, 1)
    assert runs(cfg) == [("email", "sent", None), ("slack", "sent", None)]
    forced = run_digest(cfg, "daily", AT, force=True)
    assert [t.status for t in forced.targets] == ["sent", "sent"]
    assert (len(slack.calls), len(box.messages)) == (2, 2)
    next_day = run_digest(cfg, "daily", datetime(2026, 11, 21, 9, tzinfo=UTC))
    assert [t.status for t in next_day.targets] == ["sent", "sent"]


def test_one_failing_target_does_not_stop_the_other_and_is_retried_alone(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, servers: Any
) -> None:
    box, port, slack = servers
    slack.script[f"/hooks/T0/{HOOK_SECRET}"] = [(404, {}, "no_service")]
    cfg = configure(tmp_path, synced_db, monkeypatch, webhook_and_email(slack, port))
    done = runner.invoke(
        app, ["digest", "daily", "-c", str(cfg.path), "--date", "2026-11-20T09:00"]
    )
    assert done.exit_code == 1, done.output
    assert "digest daily (Thu 19 Nov 2026): email sent" in done.output
    assert "slack failed: 404 Not Found on POST ***: no_service" in done.output
    assert len(box.messages) == 1
    (slack_row,) = [r for r in runs(cfg) if r[0] == "slack"]
    assert slack_row[1] == "failed"
    assert "no_service" in (slack_row[2] or "")
    assert HOOK_SECRET not in done.output
    assert HOOK_SECRET not in (slack_row[2] or "")

    again = runner.invoke(app, ["digest", "-c", str(cfg.path), "--date", "2026-11-20T09:00"])
    assert again.exit_code == 0, again.output
    assert "slack sent" in again.output
    assert "email skipped" in again.output
    assert len(box.messages) == 1
    assert len(slack.calls) == 2
    assert runs(cfg) == [("email", "sent", None), ("slack", "sent", None)]


def test_dry_run_prints_the_text_and_sends_nothing(
    tmp_path: Path, synced_db: Path, monkeypatch: pytest.MonkeyPatch, servers: Any
) -> None:
    box, port, slack = servers
    cfg = configure(tmp_path, synced_db, monkeypatch, webhook_and_email(slack, port))
    out = tmp_path / "inspect"
    done = runner.invoke(
        app,
        [
            "digest",
            "-c",
            str(cfg.path),
            "--date",
            "2026-11-20T09:00",
            "--dry-run",
            "--out",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "daily digest · Thu 19 Nov 2026  (vs Wed 18 Nov 2026)" in done.output
    assert "Tickets created                   42  ▲ +6 (+16.7%)" in done.output
    assert SMTP_PASSWORD not in done.output
    assert HOOK_SECRET not in done.output
    assert (slack.calls, box.messages, runs(cfg)) == ([], [], [])
    assert sorted(p.name for p in out.iterdir()) == [
        "digest-daily.html", "digest-daily.png", "digest-daily.slack.json",
        "digest-daily.txt", "digest-daily.webhook.json",
    ]  # fmt: skip
    block_kit_limits(json.loads((out / "digest-daily.slack.json").read_text()))
