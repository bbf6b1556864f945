"""The digest's optional sections (SPEC §6, issue 24 item 6): the unhappy customers and the
accounts at risk, on the hand-made helpdesk of test_digest.py plus two organizations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from cskpi.connectors.base import Organization, Rating, Record
from cskpi.connectors.registry import installed
from cskpi.core.config.file import Config, ConfigError, load_config
from cskpi.core.digest.runs import preview
from cskpi.core.store.engine import open_engine, write_transaction
from tests.core.digest.test_digest import AT, CONFIG, EXPECTED_TEXT, HELPDESK, at, helpdesk, ticket

ZENDESK = '[connectors.hd]\ntype = "zendesk"\nsubdomain = "acme"\naccess_token = "zd-tok-24"\n'
SECTIONS = CONFIG.replace('[connectors.hd]\ntype = "demo"\n', ZENDESK) + (
    "unhappy = true\nat_risk = true\n"
)
# Acme (mrr 1,200) has t7, rated 2 on 1-5 on the 19th, and t9, open since the 10th: more
# than 7 days at the window's end, so `stale_ticket`. Bolt (mrr 300.5) rated t8 5 of 5.
RECORDS: list[Record] = [
    *HELPDESK,
    Organization("o1", "Acme"),
    Organization("o2", "Bolt"),
    ticket(7, at(19, 8), organization_id="o1", assignee_id="a1", status="solved",
           first_reply_at=at(19, 9), first_solved_at=at(19, 9), solved_at=at(19, 9)),
    ticket(8, at(19, 8), organization_id="o2", assignee_id="a2", status="solved",
           first_reply_at=at(19, 9), first_solved_at=at(19, 9), solved_at=at(19, 9)),
    ticket(9, at(10, 9), organization_id="o1"),
    Rating("r1", "csat", 2, 1, 5, at(19, 12), ticket_id="t7", agent_id="a1",
           comment="Slow\n  answer, <b>twice</b>"),
    Rating("r2", "csat", 5, 1, 5, at(19, 12), ticket_id="t8", agent_id="a2", comment="Great"),
]  # fmt: skip
T7 = "https://acme.zendesk.com/agent/tickets/t7"


def store(tmp_path: Path, config: str = SECTIONS) -> Config:
    cfg = helpdesk(tmp_path, RECORDS, config)
    engine = open_engine(cfg.database)
    try:
        with write_transaction(engine) as conn:
            conn.execute(text("UPDATE organization SET mrr = 1200 WHERE external_id = 'o1'"))
            conn.execute(text("UPDATE organization SET mrr = 300.5 WHERE external_id = 'o2'"))
    finally:
        engine.dispose()
    return cfg


def test_the_unhappy_customers_and_accounts_at_risk_in_text_slack_and_html(
    tmp_path: Path,
) -> None:
    rendered = preview(store(tmp_path), "daily", AT)
    lines = rendered.text.splitlines()
    start = lines.index("Unhappy customers (highest mrr first):")
    assert lines[start : start + 8] == [
        "Unhappy customers (highest mrr first):",
        "  Rating        Organization  MRR    Agent  Ticket  Comment",
        f"  csat 2 (1-5)  Acme          1,200  Ana    hd:t7   Slow answer, <b>twice</b>  {T7}",
        "",
        "Accounts at risk: 1 (highest mrr first)",
        "  Organization  MRR    Reasons",
        "  Acme          1,200  ticket open over 7 days",
        "",
    ]
    sections = [b["text"]["text"] for b in rendered.webhook_message["blocks"]
                if b["type"] == "section"]  # fmt: skip
    assert sections[3].splitlines() == [
        "*Unhappy customers (highest mrr first):*",
        f"• <{T7}|hd:t7>  csat 2 (1-5) · Acme (mrr 1,200) · Ana"
        " · “Slow answer, &lt;b&gt;twice&lt;/b&gt;”",
    ]
    assert sections[4].splitlines() == [
        "*Accounts at risk: 1 (highest mrr first)*",
        "• Acme (mrr 1,200) · ticket open over 7 days",
    ]
    assert sections[5].startswith("*Leaderboard*")  # both come before the leaderboard
    html = rendered.html(None)
    for header in ("Rating", "Organization", "MRR", "Agent", "Comment", "Reasons"):
        assert f">{header}</td>" in html
    assert f'<a href="{T7}" style="color:#0969da;">hd:t7</a>' in html
    assert "Slow answer, &lt;b&gt;twice&lt;/b&gt;" in html
    assert '<td align="right" style="padding:3px 8px;white-space:nowrap;">1,200</td>' in html
    assert '<td style="padding:3px 0 3px 8px;">ticket open over 7 days</td>' in html
    assert "Bolt" not in html.split('id="unhappy"')[1].split("</table>")[0]  # 5 of 5: happy


def test_an_unhappy_rating_without_an_organization_says_so_in_slack(tmp_path: Path) -> None:
    """A ticket of no organization: its Slack line says so rather than "· - (mrr -) ·", and
    it comes after the accounts with an mrr."""
    records = [
        *RECORDS,
        ticket(
            10,
            at(19, 8),
            assignee_id="a1",
            status="solved",
            first_reply_at=at(19, 9),
            solved_at=at(19, 9),
        ),
        Rating("r3", "csat", 1, 1, 5, at(19, 13), ticket_id="t10", agent_id="a1"),
    ]
    cfg = helpdesk(tmp_path, records, SECTIONS)
    engine = open_engine(cfg.database)
    try:
        with write_transaction(engine) as conn:
            conn.execute(text("UPDATE organization SET mrr = 1200 WHERE external_id = 'o1'"))
    finally:
        engine.dispose()
    rendered = preview(cfg, "daily", AT)
    sections = [b["text"]["text"] for b in rendered.webhook_message["blocks"]
                if b["type"] == "section"]  # fmt: skip
    assert sections[3].splitlines()[1:] == [
        f"• <{T7}|hd:t7>  csat 2 (1-5) · Acme (mrr 1,200) · Ana"
        " · “Slow answer, &lt;b&gt;twice&lt;/b&gt;”",
        "• <https://acme.zendesk.com/agent/tickets/t10|hd:t10>  csat 1 (1-5) · no organization"
        " · Ana",
    ]


def test_the_sections_follow_the_digests_where(tmp_path: Path) -> None:
    """Only Bolt's tickets: its rating is happy and it is not at risk."""
    cfg = store(tmp_path, SECTIONS + 'where = { organization = "Bolt" }\n')
    rendered = preview(cfg, "daily", AT)
    assert rendered.digest.unhappy == []
    assert rendered.digest.at_risk == []
    assert "No unhappy customer in the window.\n\nNo account at risk.\n" in rendered.text
    blocks = json.dumps(rendered.webhook_message, ensure_ascii=False)
    assert '"text": "No unhappy customer in the window."' in blocks
    assert '"text": "No account at risk."' in blocks
    html = rendered.html(None)
    assert "No unhappy customer in the window." in html
    assert 'id="unhappy"' not in html


def test_a_digest_without_the_keys_has_no_such_sections(tmp_path: Path) -> None:
    rendered = preview(helpdesk(tmp_path, HELPDESK), "daily", AT)
    assert rendered.text == EXPECTED_TEXT
    assert (rendered.digest.unhappy, rendered.digest.at_risk) == (None, None)
    assert "nhappy" not in rendered.html(None) + json.dumps(rendered.webhook_message)


@pytest.mark.parametrize("key", ["unhappy", "at_risk"])
def test_a_section_key_must_be_true_or_false(tmp_path: Path, key: str) -> None:
    path = tmp_path / "cskpi.toml"
    path.write_text(CONFIG + f'{key} = "yes"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, installed())
    message = str(caught.value)
    assert message.startswith(f"{path}: [digests.daily] {key}: ")
    assert "\n" not in message
