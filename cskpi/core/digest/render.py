"""A digest as plain text (``--dry-run``, the email's text part), as a Slack Block Kit
message, and as the email's HTML (``templates/digest.html.j2``).

Block Kit limits, https://docs.slack.dev/reference/block-kit/blocks : at most 50 blocks per
message, a section's text at most 3000 characters, a header's at most 150. The leaderboard
is cut to its top rows and every text is clipped, so no number of agents breaks a limit.
"""

from __future__ import annotations

from typing import Any

from cskpi.core.digest.chart import sparklines
from cskpi.core.digest.content import Delta, Digest, KpiLine, goal_text

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
LEADERBOARD_ROWS = 10
EMAIL_LEADERBOARD_ROWS = 25
_TONE_WORD = {"good": "better", "bad": "worse", "neutral": ""}
_TONE_EMOJI = {"good": ":large_green_circle:", "bad": ":red_circle:", "neutral": ":white_circle:"}
TONE_COLOUR = {"good": "#1a7f37", "bad": "#cf222e", "neutral": "#57606a"}

Block = dict[str, Any]


def subject(d: Digest) -> str:
    """With the headline figures, so the inbox line alone says how the day went."""
    return f"[cskpi] {d.title}" + (f" · {d.headline}" if d.headline else "")


def delta_text(delta: Delta | None) -> str:
    if delta is None:
        return ""
    word = _TONE_WORD[delta.tone]
    return f"{delta.arrow} {delta.text}" + (f" ({word})" if word else "")


# --- plain text -------------------------------------------------------------------------


def text(d: Digest) -> str:
    """The whole digest as plain text: the dry run and the email's text/plain part."""
    out = [d.title + (f"  ({d.compare_label})" if d.compare_label else ""), ""]
    width = max(len(line.label) for line in d.lines)
    for line in d.lines:
        tail = line.detail if line.null else delta_text(line.delta)
        tail = f"{tail}  (unusual)".lstrip() if line.unusual else tail
        goal = f"  [{goal_text(line)}]" if line.target else ""
        out.append(f"{line.label:<{width}}  {line.value:>10}  {tail}{goal}".rstrip())
    out += ["", sla_text(d), *breached_lines(d), *unanswered_lines(d)]
    if d.unhappy is not None:
        out += ["", *unhappy_lines(d)]
    if d.at_risk is not None:
        out += ["", *at_risk_lines(d)]
    if d.understaffed:
        out += ["", understaffed_text(d)]
    if d.leaderboard is not None:
        out += ["", *leaderboard_lines(d, EMAIL_LEADERBOARD_ROWS)]
    out += ["", "Last 14 days"]
    out += [f"  {label:<8} {spark}  {ends}" for label, spark, ends in sparklines(d.series)]
    return "\n".join(out) + "\n"


def understaffed_text(d: Digest) -> str:
    return "Most understaffed hours (last 4 weeks): " + "; ".join(d.understaffed)


def sla_text(d: Digest) -> str:
    b = d.breaches
    if b.first_response is None and b.resolution is None:
        return f"SLA breaches: none to report ({b.reason})"
    parts = [
        f"{n:,} {what}"
        for n, what in ((b.first_response, "first response"), (b.resolution, "resolution"))
        if n is not None
    ]
    return "SLA breaches: " + ", ".join(parts)


def _columns(rows: list[list[str]]) -> list[str]:
    """Rows of cells as aligned text lines, each column as wide as its widest cell (the
    last one unpadded), indented two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        (
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
        ).rstrip()
        for row in rows
    ]


def breached_lines(d: Digest) -> list[str]:
    """The tickets behind the breach counts, oldest first, with their links."""
    if not d.breached:
        return []
    rows = [["Ticket", "Priority", "Missed", "Subject"]] + [
        [b.ticket_id, b.priority or "-", b.missed, b.subject + (f"  {b.url}" if b.url else "")]
        for b in d.breached
    ]
    return _columns(rows)


def unanswered_lines(d: Digest) -> list[str]:
    if d.unanswered_total == 0:
        return ["No ticket is waiting for a first reply."]
    head = f"Waiting for a first reply: {d.unanswered_total:,}; oldest:"
    rows = [["Waiting", "Priority", "Ticket", "Subject"]] + [
        [u.age, u.priority or "-", u.ticket_id,
         u.subject + ("  (SLA breached)" if u.overdue else "") + (f"  {u.url}" if u.url else "")]
        for u in d.unanswered
    ]  # fmt: skip
    return [head, *_columns(rows)]


def unhappy_head(d: Digest) -> str:
    if not d.unhappy:
        return "No unhappy customer in the window."
    return "Unhappy customers (highest mrr first):"


def unhappy_lines(d: Digest) -> list[str]:
    rows = [["Rating", "Organization", "MRR", "Agent", "Ticket", "Comment"]] + [
        [u.rating, u.organization, u.mrr, u.agent, u.ticket_id,
         (u.comment or "-") + (f"  {u.url}" if u.url else "")]
        for u in d.unhappy or []
    ]  # fmt: skip
    return [unhappy_head(d), *(_columns(rows) if d.unhappy else [])]


def at_risk_head(d: Digest) -> str:
    if not d.at_risk:
        return "No account at risk."
    return f"Accounts at risk: {d.at_risk_total:,} (highest mrr first)"


def at_risk_lines(d: Digest) -> list[str]:
    if not d.at_risk:
        return [at_risk_head(d)]
    rows = [["Organization", "MRR", "Reasons"]] + [
        [a.organization, a.mrr, a.reasons] for a in d.at_risk
    ]
    return [at_risk_head(d), *_columns(rows), *_more_at_risk(d)]


def _more_at_risk(d: Digest) -> list[str]:
    more = d.at_risk_total - len(d.at_risk or [])
    return [f"… and {more:,} more (cskpi kpis --by organization)"] if more > 0 else []


def leaderboard_lines(d: Digest, limit: int) -> list[str]:
    board = d.leaderboard
    assert board is not None
    shown = board.rows[:limit]
    width = min(max([len(r.label) for r in shown] + [len(board.dimension)]), 28)
    lines = [f"{board.dimension.capitalize():<{width}}  {'solved':>6}  {'FRT':>8}  {'CSAT':>6}"]
    lines += [
        f"{_clip(r.label, width):<{width}}  {r.solved:>6}  {r.frt:>8}  {r.csat:>6}" for r in shown
    ]
    if len(board.rows) > limit:
        lines.append(f"… and {len(board.rows) - limit:,} more (cskpi kpis --by {board.dimension})")
    return lines


def _clip(value: str, size: int) -> str:
    return value if len(value) <= size else value[: size - 1] + "…"


# --- Slack Block Kit --------------------------------------------------------------------


def _escape(value: str) -> str:
    # https://docs.slack.dev/messaging/formatting-message-text#escaping
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(value: str) -> str:
    """Text for inside a ``` block: escaped, and with its backticks swapped for a look-alike
    (U+02CB), since mrkdwn has no escape for them and three would close the block."""
    return _escape(value).replace("`", "\u02cb")


def _section(markdown: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(markdown, MAX_SECTION)}}


def _context(markdown: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(markdown, 3000)}]}


_GOAL_EMOJI = {True: ":white_check_mark:", False: ":x:", None: ":white_circle:"}


def _kpi_markdown(line: KpiLine) -> str:
    head = f"*{line.label}*  `{line.value}`" + ("  :warning: _unusual_" if line.unusual else "")
    goal = f"  {_GOAL_EMOJI[line.met]} {_escape(goal_text(line))}" if line.target else ""
    if line.null:
        return f"{head}  _{_escape(line.detail)}_{goal}"
    if line.delta is None:
        return head + goal
    return f"{head}  {_TONE_EMOJI[line.delta.tone]} {line.delta.arrow} {line.delta.text}{goal}"


def _packed(lines: list[str]) -> list[Block]:
    """Lines packed into as few sections as the 3000-character limit allows."""
    blocks, current = [], ""
    for line in lines:
        if current and len(current) + 1 + len(line) > MAX_SECTION:
            blocks.append(_section(current))
            current = ""
        current = f"{current}\n{line}" if current else line
    return [*blocks, _section(current)] if current else blocks


def blocks(d: Digest, *, sparkline: bool) -> list[Block]:
    """The Block Kit message; ``sparkline`` puts the chart in as text (webhooks)."""
    out: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(d.title, MAX_HEADER)}},
    ]
    if d.compare_label:
        out.append(_context(f"Changes {_escape(d.compare_label)}"))
    out += _packed([_kpi_markdown(line) for line in d.lines])
    out += [{"type": "divider"}, _breached_block(d), _unanswered_block(d)]
    if d.unhappy is not None:
        out.append(_unhappy_block(d))
    if d.at_risk is not None:
        out.append(_at_risk_block(d))
    if d.understaffed:
        out.append(_context(_escape(understaffed_text(d))))
    if d.leaderboard is not None:
        rows = "\n".join(leaderboard_lines(d, LEADERBOARD_ROWS))
        out.append(_section(f"*Leaderboard*\n```{_code(rows)}```"))
    if sparkline:
        spark = "\n".join(f"{lbl:<8} {s}  {ends}" for lbl, s, ends in sparklines(d.series))
        out.append(_section(f"*Last 14 days*\n```{spark}```"))
    return out[:MAX_BLOCKS]


def _text(value: str) -> str:
    """Helpdesk text in mrkdwn: escaped, and no backtick to open a code block with."""
    return _code(value)


def _ticket(ticket_id: str, url: str | None) -> str:
    # https://docs.slack.dev/messaging/formatting-message-text#linking-urls
    return f"<{_escape(url)}|{_text(ticket_id)}>" if url else f"`{_text(ticket_id)}`"


def _priority(priority: str | None) -> str:
    return f" · {_text(priority)}" if priority else ""


def _breached_block(d: Digest) -> Block:
    head = f"*{_escape(sla_text(d))}*"
    items = [
        f"• {_ticket(b.ticket_id, b.url)}  {_text(b.subject)}{_priority(b.priority)}"
        f" · missed {b.missed}"
        for b in d.breached
    ]
    return _section("\n".join([head, *items]))


def _unanswered_block(d: Digest) -> Block:
    """Each ticket a line with its link (a link in a code block would not be one)."""
    head = unanswered_lines(d)[0]
    if not d.unanswered:
        return _section(_escape(head))
    items = [
        f"• `{u.age}`  {_ticket(u.ticket_id, u.url)}  {_text(u.subject)}{_priority(u.priority)}"
        + (" · :red_circle: SLA breached" if u.overdue else "")
        for u in d.unanswered
    ]
    return _section("\n".join([f"*{_escape(head)}*", *items]))


def _unhappy_block(d: Digest) -> Block:
    items = [
        f"• {_ticket(u.ticket_id, u.url)}  {_text(u.rating)} · {_account(u.organization, u.mrr)}"
        f" · {_text(u.agent)}" + (f" · “{_text(u.comment)}”" if u.comment else "")
        for u in d.unhappy or []
    ]
    head = unhappy_head(d)
    return _section("\n".join([f"*{_escape(head)}*" if items else _escape(head), *items]))


def _account(organization: str, mrr: str) -> str:
    """A rating's organization with its mrr; "-" (content.py's mark for none) in words, as
    "· - (mrr -) ·" read like a glitch in a Slack line."""
    return "no organization" if organization == "-" else f"{_text(organization)} (mrr {mrr})"


def _at_risk_block(d: Digest) -> Block:
    items = [
        f"• {_text(a.organization)} (mrr {a.mrr}) · {_text(a.reasons)}" for a in d.at_risk or []
    ]
    head = at_risk_head(d)
    lines = [f"*{_escape(head)}*" if items else _escape(head), *items, *_more_at_risk(d)]
    return _section("\n".join(lines))


def slack_message(d: Digest, *, sparkline: bool) -> dict[str, Any]:
    """``text`` is the notification and screen-reader fallback for the blocks."""
    return {"text": _clip(subject(d), 3000), "blocks": blocks(d, sparkline=sparkline)}


# --- HTML -------------------------------------------------------------------------------


def html(d: Digest, image_src: str | None) -> str:
    """The email's HTML; ``image_src`` is ``cid:…`` in a mail, a file name when inspected."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cskpi.core.digest", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template("digest.html.j2")
    return template.render(
        d=d,
        goal_text=goal_text,
        sla=sla_text(d),
        unanswered_head=unanswered_lines(d)[0],
        unhappy_head=unhappy_head(d),
        at_risk_head=at_risk_head(d),
        more_at_risk=_more_at_risk(d),
        understaffed=understaffed_text(d) if d.understaffed else "",
        colour=TONE_COLOUR,
        image_src=image_src,
        leaderboard=d.leaderboard.rows if d.leaderboard else [],
        spark=sparklines(d.series),
        leaderboard_rows=EMAIL_LEADERBOARD_ROWS,
    )
