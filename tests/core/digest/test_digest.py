"""Digest content on a small hand-made helpdesk whose every number is worked out by hand,
the comparison windows, the change arrows and their colour, and Block Kit limits with 200
agents (through a local webhook)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
from matplotlib.text import Text
from responses.registries import OrderedRegistry
from sqlalchemy import text

from cskpi.connectors.base import Person, Record, StatusChange, Ticket
from cskpi.connectors.registry import installed
from cskpi.core.config.file import KPI_KEYS, Config, ConfigError, DigestSettings, load_config
from cskpi.core.config.periods import period_window
from cskpi.core.digest.chart import chart_figure, sparkline
from cskpi.core.digest.content import Breached, Series, compare_window, delta, window_label
from cskpi.core.digest.render import MAX_BLOCKS, MAX_HEADER, MAX_SECTION, subject
from cskpi.core.digest.runs import preview, run_digest
from cskpi.core.store.engine import open_engine, write_transaction
from cskpi.core.store.sync_state import finish_stream
from cskpi.core.store.upserts import upsert_records
from tests.digest_servers import slack_server

AT = datetime(2026, 11, 20, 9, tzinfo=UTC)  # Friday 09:00: "yesterday" is Thu 19 Nov
CONFIG = """\
timezone = "UTC"
database = "sqlite:///kpi.db"

[connectors.hd]
type = "demo"

[sla]
first_response = { urgent = "1h", high = "4h", normal = "8h", low = "24h" }

[digests.daily]
schedule = "0 9 * * mon-fri"
kpis = ["tickets_created", "tickets_solved", "backlog", "first_response_time", "csat",
        "sla_first_response"]
by = "agent"
"""


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def ticket(n: int, created: datetime, **fields: Any) -> Ticket:
    fields.setdefault("subject", f"Ticket {n}")
    status = fields.pop("status", "open")
    return Ticket(f"t{n}", created, created + timedelta(hours=1), status, **fields)


# t1, t2, t3 created on the 19th; t4 created and solved on the 18th; t5 open since the 10th.
HELPDESK: list[Record] = [
    Person("a1", "agent", "Ana"),
    Person("a2", "agent", "Ben"),
    ticket(1, at(19, 8), status="solved", priority="high", assignee_id="a1",
           first_reply_at=at(19, 8, 30), first_solved_at=at(19, 10), solved_at=at(19, 10),
           agent_replies=1),
    ticket(2, at(19, 9), status="solved", priority="normal", assignee_id="a2",
           first_reply_at=at(19, 11), first_solved_at=at(19, 12), solved_at=at(19, 12),
           agent_replies=2),
    ticket(3, at(19, 10), priority="normal"),
    ticket(4, at(18, 10), status="solved", priority="low", assignee_id="a1",
           first_reply_at=at(18, 10, 10), first_solved_at=at(18, 12), solved_at=at(18, 12),
           agent_replies=1),
    ticket(5, at(10, 9)),
]  # fmt: skip


def helpdesk(tmp_path: Path, records: list[Record], config: str = CONFIG) -> Config:
    path = tmp_path / "cskpi.toml"
    path.write_text(config, encoding="utf-8")
    cfg = load_config(path, installed())
    engine = open_engine(cfg.database)
    try:
        with write_transaction(engine) as conn:
            upsert_records(conn, "hd", records)
            finish_stream(conn, "hd", "tickets", None)  # synced now: past every window here
    finally:
        engine.dispose()
    return cfg


EXPECTED_TEXT = """\
daily digest · Thu 19 Nov 2026  (vs Wed 18 Nov 2026)

Tickets created                   3  ▲ +2 (+200.0%)
Tickets solved                    2  ▲ +1 (+100.0%) (better)
Backlog                           2  ▲ +1 (+100.0%) (worse)
First response (median)      1h 15m  ▲ +1h 05m (+650.0%) (worse)
CSAT                              -  no csat rating in the window
SLA first response met        66.7%  ▼ -33.3 pts (worse)

SLA breaches: 1 first response
  Ticket  Priority  Missed          Subject
  hd:t3   normal    first response  Ticket 3
Waiting for a first reply: 2; oldest:
  Waiting  Priority  Ticket  Subject
  10d 00h  -         hd:t5   Ticket 5
  23h 00m  normal    hd:t3   Ticket 3  (SLA breached)

Agent  solved       FRT    CSAT
Ana         1    0h 30m       -
Ben         1    2h 00m       -

Last 14 days
  created  ▁▁▁▁▃▁▁▁▁▁▁▁▃█  0 → 3
  solved   ▁▁▁▁▁▁▁▁▁▁▁▁▅█  0 → 2
  backlog  ▁▁▁▁▅▅▅▅▅▅▅▅▅█  0 → 2
"""


def test_the_digest_text_on_a_hand_computed_helpdesk(tmp_path: Path) -> None:
    cfg = helpdesk(tmp_path, HELPDESK)
    rendered = preview(cfg, "daily", AT)
    assert rendered.text == EXPECTED_TEXT
    series = rendered.digest.series
    assert series.days[0] == date(2026, 11, 6)
    assert series.days[-1] == date(2026, 11, 19)
    assert series.created == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 3]
    assert series.solved == [0] * 12 + [1, 2]
    assert series.backlog == [0, 0, 0, 0] + [1] * 9 + [2]


# Solved on the 12th, reopened on the 15th, solved again on the morning the digest goes out.
REOPENED: list[Record] = [
    ticket(6, at(11, 9), status="solved", first_solved_at=at(12, 9), solved_at=at(20, 8),
           reopens=1),
    StatusChange("t6", at(11, 9), "new"),
    StatusChange("t6", at(12, 9), "solved"),
    StatusChange("t6", at(15, 9), "open"),
    StatusChange("t6", at(20, 8), "solved"),
]  # fmt: skip


def test_a_reopened_ticket_is_in_the_backlog_line_and_chart_from_its_reopen(
    tmp_path: Path,
) -> None:
    """Its status history puts t6 in the backlog at the end of the 11th and from its reopen
    on, in the line (19th: 3 against 2 on the 18th) and in the chart alike (issue 22); its
    first solve dropped it from every later day before."""
    rendered = preview(helpdesk(tmp_path, [*HELPDESK, *REOPENED]), "daily", AT)
    line = next(line for line in rendered.digest.lines if line.key == "backlog")
    assert line.value == "3"
    assert line.delta is not None
    assert (line.delta.arrow, line.delta.text) == ("▲", "+1 (+50.0%)")
    # HELPDESK's t5 from the 10th and t3 on the 19th, with t6 on the 11th and 15th to 19th
    assert rendered.digest.series.backlog == [0, 0, 0, 0, 1, 2, 1, 1, 1, 2, 2, 2, 2, 3]


def test_the_block_kit_message_carries_the_same_numbers(tmp_path: Path) -> None:
    message = preview(helpdesk(tmp_path, HELPDESK), "daily", AT).webhook_message
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert sections[0].splitlines() == [
        "*Tickets created*  `3`  :white_circle: ▲ +2 (+200.0%)",
        "*Tickets solved*  `2`  :large_green_circle: ▲ +1 (+100.0%)",
        "*Backlog*  `2`  :red_circle: ▲ +1 (+100.0%)",
        "*First response (median)*  `1h 15m`  :red_circle: ▲ +1h 05m (+650.0%)",
        "*CSAT*  `-`  _no csat rating in the window_",
        "*SLA first response met*  `66.7%`  :red_circle: ▼ -33.3 pts",
    ]
    assert sections[1].splitlines() == [
        "*SLA breaches: 1 first response*",
        "• `hd:t3`  Ticket 3 · normal · missed first response",
    ]
    assert message["text"] == (
        "[cskpi] daily digest · Thu 19 Nov 2026 · backlog 2, first response 1h 15m"
    )


def test_the_html_colours_each_change_by_the_kpis_direction(tmp_path: Path) -> None:
    html = preview(helpdesk(tmp_path, HELPDESK), "daily", AT).html("chart.png")
    assert 'color:#1a7f37;" class="delta">▲ +1 (+100.0%)</td>' in html  # more solved: good
    assert 'color:#cf222e;" class="delta">▲ +1h 05m (+650.0%)</td>' in html  # slower: bad
    assert 'color:#57606a;" class="delta">▲ +2 (+200.0%)</td>' in html  # volume: neutral
    assert "no csat rating in the window" in html
    assert 'src="chart.png"' in html


def test_subjects_and_names_are_escaped(tmp_path: Path) -> None:
    records: list[Record] = [
        Person("a1", "agent", "<b>Ana</b> & co"),
        ticket(1, at(19, 8), subject="<script>alert(1)</script>", assignee_id="a1"),
        ticket(2, at(19, 8), assignee_id="a1", status="solved", solved_at=at(19, 9)),
    ]
    rendered = preview(helpdesk(tmp_path, records), "daily", AT)
    html = rendered.html(None)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;Ana&lt;/b&gt; &amp; co" in html
    blocks = json.dumps(rendered.webhook_message, ensure_ascii=False)
    assert "&lt;script&gt;" in blocks
    assert "<script>" not in blocks


# --- comparison windows and changes -----------------------------------------------------


@pytest.mark.parametrize(
    ("period", "compare", "now", "start", "end"),
    [
        ("yesterday", "previous", "2026-11-20T09:00", "2026-11-18", "2026-11-19"),
        ("yesterday", "same-period-last-week", "2026-11-20T09:00", "2026-11-12", "2026-11-13"),
        ("last-7d", "previous", "2026-11-20T09:00", "2026-11-06", "2026-11-13"),
        ("last-week", "previous", "2026-11-20T09:00", "2026-11-02", "2026-11-09"),
        ("last-month", "previous", "2026-03-31T09:00", "2026-01-01", "2026-02-01"),
        ("this-month", "previous", "2026-03-31T09:00", "2026-02-01", "2026-02-28T09:00"),
        ("this-week", "previous", "2026-11-20T09:00", "2026-11-09", "2026-11-13T09:00"),
        ("today", "previous", "2026-11-20T09:00", "2026-11-19", "2026-11-19T09:00"),
    ],
)
def test_compare_window(period: str, compare: str, now: str, start: str, end: str) -> None:
    settings = DigestSettings.model_validate(
        {"schedule": "0 9 * * *", "period": period, "compare": compare}
    )
    tz = ZoneInfo("Europe/Berlin")
    moment = datetime.fromisoformat(now).replace(tzinfo=tz)
    window = compare_window(settings, tz, moment)
    assert window is not None
    local = (window.start.astimezone(tz), window.end.astimezone(tz))
    want = tuple(datetime.fromisoformat(x).replace(tzinfo=tz) for x in (start, end))
    assert local == want


def test_no_comparison_with_compare_none() -> None:
    settings = DigestSettings.model_validate({"schedule": "0 9 * * *", "compare": "none"})
    assert compare_window(settings, ZoneInfo("UTC"), AT) is None


@pytest.mark.parametrize(
    ("key", "now", "before", "arrow", "text", "tone"),
    [
        ("first_response_time", 3600.0, 5400.0, "▼", "-30m (-33.3%)", "good"),
        ("first_response_time", 6120.0, 5400.0, "▲", "+12m (+13.3%)", "bad"),
        ("backlog", 10, 10, "=", "±0", "neutral"),
        ("tickets_created", 12, 10, "▲", "+2 (+20.0%)", "neutral"),
        ("tickets_solved", 8, 10, "▼", "-2 (-20.0%)", "bad"),
        ("csat", 91.5, 88.0, "▲", "+3.5 pts", "good"),
        ("reopen_rate", 4.0, 2.5, "▲", "+1.5 pts", "bad"),
        ("nps", -5.0, 10.0, "▼", "-15.0 (-150.0%)", "bad"),
        ("tickets_solved", 3, 0, "▲", "+3", "good"),
    ],
)
def test_change_arrow_sign_and_tone(
    key: str, now: float, before: float, arrow: str, text: str, tone: str
) -> None:
    unit = {"first_response_time": "s", "csat": "%", "reopen_rate": "%", "nps": "score"}
    entry = {"unit": unit.get(key, "count")}
    change = delta(key, {**entry, "value": now}, {**entry, "value": before})
    assert change is not None
    assert (change.arrow, change.text, change.tone) == (arrow, text, tone)


def test_no_change_when_either_side_is_null() -> None:
    entry = {"unit": "s", "value": None, "reason": "no ticket solved in the window"}
    assert delta("resolution_time", entry, {"unit": "s", "value": 60.0}) is None


def test_window_labels_and_sparkline() -> None:
    settings = DigestSettings.model_validate({"schedule": "0 9 * * *", "period": "last-7d"})
    window = compare_window(settings, ZoneInfo("UTC"), AT)
    assert window is not None
    assert window_label(window) == "6 Nov to 12 Nov 2026"
    assert sparkline([0, 7, 3, 7]) == "▁█▄█"
    assert sparkline([5, 5]) == "▁▁"


# --- Block Kit limits with 200 agents ---------------------------------------------------


def many_agents(n: int) -> list[Record]:
    records: list[Record] = []
    for i in range(n):
        name = f"Agent {i:03d} " + "with a remarkably long display name " * 3
        subject = f"Ticket {i} " + "<subject> & a very long description of a problem " * 10
        records += [
            Person(f"a{i}", "agent", name.strip()),
            ticket(i, at(19, 8) + timedelta(minutes=i % 600), status="solved", priority="normal",
                   assignee_id=f"a{i}", first_reply_at=at(19, 8) + timedelta(minutes=i % 600 + 5),
                   first_solved_at=at(19, 18), solved_at=at(19, 18), agent_replies=1),
            ticket(1000 + i, at(19, 1) + timedelta(minutes=i), subject=subject),
        ]  # fmt: skip
    return records


def test_200_agents_stay_within_every_block_kit_limit(tmp_path: Path) -> None:
    config = CONFIG.replace(
        'kpis = ["tickets_created", "tickets_solved", "backlog", "first_response_time", "csat",\n'
        '        "sla_first_response"]',
        "kpis = " + json.dumps(list(KPI_KEYS)),
    )
    with slack_server() as slack:
        hook = f"{slack.base}/hooks/T/B/x"
        cfg = helpdesk(
            tmp_path, many_agents(200), config + f'slack = {{ webhook_url = "{hook}" }}\n'
        )
        result = run_digest(cfg, "daily", AT)
        assert [t.status for t in result.targets] == ["sent"]
        (call,) = slack.calls
    message = call.json()
    blocks = message["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(blocks[0]["text"]["text"]) <= MAX_HEADER
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    board = next(t for t in texts if t.startswith("*Leaderboard*"))
    assert "… and 190 more (cskpi kpis --by agent)" in board  # not (unassigned): nothing solved
    assert len(board.splitlines()) == 13  # title, fence+head, 10 agents, the "more" line
    kpi_text = "\n".join(texts)
    assert "*Tickets solved*  `200`" in kpi_text
    rendered = preview(cfg, "daily", AT)  # the email shows the top 25 in text and HTML
    assert "… and 175 more (cskpi kpis --by agent)" in rendered.text
    assert "… and 175 more (cskpi kpis --by agent)" in rendered.html(None)
    assert "*Tickets created*  `400`" in kpi_text


def test_a_header_too_long_is_clipped(tmp_path: Path) -> None:
    long_name = "d" + "x" * 200
    config = CONFIG.replace("[digests.daily]", f"[digests.{long_name}]")
    rendered = preview(helpdesk(tmp_path, HELPDESK, config), long_name, AT)
    header = rendered.api_message["blocks"][0]["text"]["text"]
    assert len(header) == MAX_HEADER
    assert header.endswith("…")


# --- webhook retries: only where a retry cannot post twice ------------------------------


@responses.activate(registry=OrderedRegistry)
def test_a_webhook_read_timeout_is_not_retried_but_a_refused_connection_is(
    no_real_sleep: None,
) -> None:
    from cskpi.core.clock import FakeClock
    from cskpi.core.config.file import SlackTarget
    from cskpi.core.digest.notify import DeliveryError, post_webhook

    hook = "https://hooks.slack.example/services/T1/B1/abcdefsecret"
    target = SlackTarget.model_validate({"webhook_url": hook})
    responses.post(hook, body=requests.ConnectionError("refused"))
    responses.post(hook, body="ok")
    clock = FakeClock()
    post_webhook("digest d, slack", target, {"text": "x"}, clock)
    assert len(responses.calls) == 2
    assert len(clock.sleeps) == 1

    responses.post(hook, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(DeliveryError, match="not retried: it may have been posted") as caught:
        post_webhook("digest d, slack", target, {"text": "x"}, clock)
    assert len(responses.calls) == 3
    assert "abcdefsecret" not in str(caught.value)


def test_same_digest_and_exactly_once_on_sqlite_and_postgresql(
    store_url: str, tmp_path: Path
) -> None:
    with slack_server() as slack:
        config = CONFIG.replace('"sqlite:///kpi.db"', json.dumps(store_url))
        hook = f'slack = {{ webhook_url = "{slack.base}/hooks/T/B/y" }}\n'
        cfg = helpdesk(tmp_path, HELPDESK, config + hook)
        assert preview(cfg, "daily", AT).text == EXPECTED_TEXT
        first = run_digest(cfg, "daily", AT)
        again = run_digest(cfg, "daily", AT + timedelta(hours=3))
        forced = run_digest(cfg, "daily", AT, force=True)
        assert [t.status for t in (*first.targets, *again.targets, *forced.targets)] == [
            "sent", "skipped", "sent"
        ]  # fmt: skip
        assert len(slack.calls) == 2


# --- hostile text: code fences, huge subjects (issue 23, item 15) -------------------------


def test_backticks_cannot_break_out_of_a_slack_code_block_and_long_text_is_cut(
    tmp_path: Path,
) -> None:
    huge = "```<!channel> " + "x" * 2_000_000  # a 2 MB subject, opening a code fence
    records: list[Record] = [
        Person("a1", "agent", "Ana ```*bold*``` " + "n" * 500),
        ticket(1, at(19, 8), subject=huge, assignee_id="a1"),
    ]
    rendered = preview(helpdesk(tmp_path, records), "daily", AT)
    for block in rendered.webhook_message["blocks"]:
        text = block.get("text", {}).get("text", "")
        assert text.count("```") in (0, 2), text[:300]  # each fence opened is the one closed
    blocks = json.dumps(rendered.webhook_message, ensure_ascii=False)
    assert "<!channel>" not in blocks
    (waiting,) = rendered.digest.unanswered
    assert len(waiting.subject) == 200
    assert waiting.subject.endswith("x…")
    assert rendered.digest.leaderboard is not None
    assert all(len(r.label) <= 200 for r in rendered.digest.leaderboard.rows)
    assert len(rendered.text) < 5000
    assert len(rendered.html(None)) < 50_000


# --- what a lead acts on: breached tickets, links, headers, the subject (issue 23, item 17) -


def test_breached_and_waiting_tickets_are_listed_with_headers_and_links(tmp_path: Path) -> None:
    zendesk = '[connectors.hd]\ntype = "zendesk"\nsubdomain = "acme"\naccess_token = "zd-tok-17"\n'
    cfg = helpdesk(tmp_path, HELPDESK, CONFIG.replace('[connectors.hd]\ntype = "demo"\n', zendesk))
    rendered = preview(cfg, "daily", AT)
    t3, t5 = (f"https://acme.zendesk.com/agent/tickets/t{n}" for n in (3, 5))
    assert rendered.digest.breached == [
        Breached("hd:t3", "Ticket 3", "normal", "first response", t3)
    ]
    assert [u.url for u in rendered.digest.unanswered] == [t5, t3]
    assert "  Waiting  Priority  Ticket  Subject" in rendered.text
    assert f"  10d 00h  -         hd:t5   Ticket 5  {t5}" in rendered.text
    assert "  Ticket  Priority  Missed          Subject" in rendered.text

    sections = [b["text"]["text"] for b in rendered.webhook_message["blocks"]
                if b["type"] == "section"]  # fmt: skip
    assert f"• <{t3}|hd:t3>  Ticket 3 · normal · missed first response" in sections[1]
    assert f"• `10d 00h`  <{t5}|hd:t5>  Ticket 5" in sections[2]

    html = rendered.html(None)
    assert f'<a href="{t3}" style="color:#0969da;">hd:t3</a>' in html
    for header in ("Waiting", "Priority", "Ticket", "Subject", "Missed"):
        assert f">{header}</td>" in html
    # t5 is unassigned and nobody's ticket was solved, replied or rated: no "(unassigned) 0"
    assert rendered.digest.leaderboard is not None
    assert [r.label for r in rendered.digest.leaderboard.rows] == ["Ana", "Ben"]
    assert subject(rendered.digest) == (
        "[cskpi] daily digest · Thu 19 Nov 2026 · backlog 2, first response 1h 15m"
    )


def test_the_chart_legend_covers_no_data_and_its_text_reads_on_a_phone() -> None:
    series = Series([date(2026, 11, 6) + timedelta(days=i) for i in range(14)],
                    [9] * 14, [9] * 14, [40] * 14)  # fmt: skip
    fig = chart_figure(series)
    fig.canvas.draw()  # type: ignore[no-untyped-call]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    plot, twin = fig.axes
    legend = twin.get_legend()
    assert legend is not None
    box = legend.get_window_extent(renderer)
    assert box.y0 >= plot.get_window_extent(renderer).y1 - 1  # above the plot, on nothing
    phone = 340 / (fig.get_figwidth() * fig.dpi)  # the 1080 px image shown 340 px wide
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert min(t.get_fontsize() * fig.dpi / 72 * phone for t in texts) >= 9


UNSYNCED = '[connectors.zd]\ntype = "demo"\n'


def test_a_store_not_synced_past_the_window_sends_nothing(tmp_path: Path) -> None:
    with slack_server() as slack:
        hook = f'slack = {{ webhook_url = "{slack.base}/hooks/T/B/z" }}\n'
        cfg = helpdesk(tmp_path, HELPDESK, CONFIG + hook + UNSYNCED)
        waiting = run_digest(cfg, "daily", AT)
        assert not waiting.ok
        assert waiting.targets == []
        assert waiting.summary() == (
            "digest daily (Thu 19 Nov 2026): not sent: not synced since the window ended "
            "(2026-11-20 00:00Z): zd (last success: never); run `cskpi sync` first (--force sends)"
        )
        assert slack.calls == []
        engine = open_engine(cfg.database)
        with write_transaction(engine) as conn:  # synced before the window's end: still stale
            finish_stream(conn, "zd", "tickets", None)
            conn.execute(text("UPDATE sync_state SET last_success_at = :t"),
                         {"t": int(at(19, 23).timestamp())})  # fmt: skip
        assert "zd (last success: 2026-11-19 23:00Z)" in str(run_digest(cfg, "daily", AT).unsynced)
        assert slack.calls == []
        with write_transaction(engine) as conn:
            conn.execute(text("UPDATE sync_state SET last_success_at = :t"),
                         {"t": int(at(20, 0).timestamp())})  # fmt: skip
        engine.dispose()
        assert [t.status for t in run_digest(cfg, "daily", AT).targets] == ["sent"]
        assert len(slack.calls) == 1


def test_force_sends_from_a_store_not_synced_past_the_window(tmp_path: Path) -> None:
    with slack_server() as slack:
        hook = f'slack = {{ webhook_url = "{slack.base}/hooks/T/B/f" }}\n'
        cfg = helpdesk(tmp_path, HELPDESK, CONFIG + hook + UNSYNCED)
        assert [t.status for t in run_digest(cfg, "daily", AT, force=True).targets] == ["sent"]
        assert len(slack.calls) == 1


WEEKDAYS = "0 9 * * mon-fri"


@pytest.mark.parametrize(
    ("now", "start", "end", "before"),
    [
        # Monday's digest covers the weekend; run by hand later that day, the same window
        ("2026-11-23T09:00", "2026-11-20T09:00", "2026-11-23T09:00", "2026-11-19T09:00"),
        ("2026-11-23T10:30", "2026-11-20T09:00", "2026-11-23T09:00", "2026-11-19T09:00"),
        ("2026-11-24T09:00", "2026-11-23T09:00", "2026-11-24T09:00", "2026-11-20T09:00"),
        ("2026-11-22T12:00", "2026-11-19T09:00", "2026-11-20T09:00", "2026-11-18T09:00"),
    ],
)
def test_since_last_runs_from_the_previous_scheduled_time(
    now: str, start: str, end: str, before: str
) -> None:
    tz = ZoneInfo("Europe/Berlin")
    settings = DigestSettings.model_validate({"schedule": WEEKDAYS, "period": "since-last"})
    moment = datetime.fromisoformat(now).replace(tzinfo=tz)
    window = period_window("since-last", tz, moment, settings.schedule)
    local = [w.astimezone(tz) for w in (window.start, window.end)]
    assert local == [datetime.fromisoformat(x).replace(tzinfo=tz) for x in (start, end)]
    compare = compare_window(settings, tz, moment)  # the run before this one
    assert compare is not None
    assert [compare.start.astimezone(tz), compare.end] == [
        datetime.fromisoformat(before).replace(tzinfo=tz), window.start
    ]  # fmt: skip


def test_since_last_is_a_digest_period_only() -> None:
    with pytest.raises(ValueError, match="since-last is a digest's period"):
        period_window("since-last", ZoneInfo("UTC"), AT)


def test_mondays_since_last_digest_counts_the_weekend(tmp_path: Path) -> None:
    weekend = [ticket(7, at(21, 14)), ticket(8, at(22, 20)), ticket(9, at(20, 8))]  # Sat, Sun, Fri
    config = CONFIG.replace('schedule = "0 9 * * mon-fri"', 'schedule = "0 9 * * mon-fri"\n'
                            'period = "since-last"')  # fmt: skip
    cfg = helpdesk(tmp_path, weekend, config)
    monday = preview(cfg, "daily", datetime(2026, 11, 23, 9, tzinfo=UTC)).digest
    created = next(line for line in monday.lines if line.key == "tickets_created")
    assert created.value == "2"  # Saturday's and Sunday's; Friday 08:00 was Friday's digest
    assert monday.title == "daily digest · 20 Nov to 23 Nov 2026"


TARGETS = """
[targets]
tickets_created = ">= 3"
backlog = "< 2"
first_response_time = "<= 1h15m"
csat = ">= 85%"
sla_first_response = ">= 70%"
"""


def test_each_kpi_line_shows_its_target_as_met_or_missed(tmp_path: Path) -> None:
    """The hand-computed day: 3 created (≥ 3 met), backlog 2 (< 2 missed), first response
    1h 15m (≤ 1h15m met, on the edge), no csat rating (no value), SLA 66.7 % (≥ 70 % missed)."""
    rendered = preview(helpdesk(tmp_path, HELPDESK, CONFIG + TARGETS), "daily", AT)
    verdicts = {line.key: (line.target, line.met) for line in rendered.digest.lines}
    assert verdicts == {
        "tickets_created": ("≥ 3", True),
        "tickets_solved": ("", None),
        "backlog": ("< 2", False),
        "first_response_time": ("≤ 1h15m", True),
        "csat": ("≥ 85%", None),
        "sla_first_response": ("≥ 70%", False),
    }
    lines = rendered.text.splitlines()
    assert lines[2].endswith("▲ +2 (+200.0%)  [target ≥ 3: met]")
    assert lines[3].endswith("(better)")  # no target, nothing added
    assert lines[4].endswith("(worse)  [target < 2: missed]")
    assert lines[6].endswith("no csat rating in the window  [target ≥ 85%: no value]")
    markdown = json.dumps(rendered.webhook_message, ensure_ascii=False)
    assert ":x: target &lt; 2: missed" in markdown  # mrkdwn escapes < as &lt;
    assert ":white_check_mark: target ≥ 3: met" in markdown
    html = rendered.html(None)
    assert "✗ target &lt; 2: missed" in html
    assert "✓ target ≥ 3: met" in html


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("csat", '"<= 2h"', 'percentage KPI: write the target like ">= 85%"'),
        ("first_response_time", '">= 85%"', 'duration KPI: write the target like "<= 2h"'),
        ("backlog_age", '"<= 3"', "a split of counts, with no single value"),
        ("tickets_created", "5", 'must be a string such as ">= 85%"'),
        ("backlog", '"about 5"', "must be a comparison and a number"),
        ("backlog", '"<= five"', "must end in a number"),
        ("nope", '">= 1"', "unknown key"),
    ],
)
def test_a_bad_target_is_a_config_error_naming_its_key(
    tmp_path: Path, key: str, value: str, error: str
) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG + f"\n[targets]\n{key} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, installed())
    assert str(caught.value) == f"{path}: [targets] {key}: " + str(caught.value).split(": ", 2)[2]
    assert error in str(caught.value)
