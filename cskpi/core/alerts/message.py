"""What an alert says: the value, the usual value, the change and the five newest tickets of
the bucket as links into the helpdesk; as plain text, Slack blocks and a small HTML email."""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from cskpi.core.alerts.evaluate import WHOLE, Bucket, Finding, alert_where, keys_of
from cskpi.core.config.file import Config
from cskpi.core.digest.alarm_text import change, figure, span_label
from cskpi.core.digest.alarm_text import label_of as label_of
from cskpi.core.digest.content import LABELS, ticket_url
from cskpi.core.kpis.output import clipped
from cskpi.core.kpis.populations import TICKET_KEY
from cskpi.core.store.dialect import sql_for

NEWEST = 5
_SOLVED_KPIS = {"tickets_solved", "resolution_time", "resolution_time_business", "fcr_rate",
                "reopen_rate", "escalation_rate"}  # fmt: skip
_SCAN_LIMIT = 5000  # rows of the bucket looked through for a key's newest tickets


@dataclass(frozen=True)
class Linked:
    ticket_id: str
    subject: str
    url: str | None


@dataclass(frozen=True)
class Alarm:
    finding: Finding
    tickets: list[Linked]

    @property
    def title(self) -> str:
        f = self.finding
        where = "" if f.key == WHOLE else f" ({f.dimension} {f.label or f.key})"
        return f"{LABELS.get(f.kpi, f.kpi)}{where} unusual {bucket_label(f.bucket)}"

    @property
    def summary(self) -> str:
        f = self.finding
        return (f"{figure(f.kpi, f.value)}, usually {figure(f.kpi, f.usual)} "
                f"({change(f.kpi, f.value, f.usual)}; robust z {f.z:+.1f})")  # fmt: skip


def bucket_label(b: Bucket) -> str:
    return span_label(b.start, b.end)


def newest_tickets(engine: Engine, config: Config, finding: Finding) -> list[Linked]:
    """The five newest tickets of the bucket with the finding's key: created in it, solved
    in it for the KPIs over solved tickets, rated in it for csat."""
    column = "t.solved_at" if finding.kpi in _SOLVED_KPIS else "t.created_at"
    source = "ticket t"
    if finding.kpi == "csat":
        source, column = "ticket t JOIN rating r ON r.ticket_id = t.id", "r.rated_at"
    key = TICKET_KEY[finding.dimension] if finding.dimension else "NULL"
    where = alert_where(engine, config, finding.alert)
    only = where.sql("r" if finding.kpi == "csat" else "t", sql_for(engine))
    sql = (f"SELECT t.id, t.subject, t.connector, t.external_id, {key} FROM {source} "  # noqa: S608
           f"WHERE t.deleted = FALSE AND {column} >= :s AND {column} < :e{only} "
           f"ORDER BY {column} DESC, t.id DESC LIMIT :n")  # fmt: skip
    limit = NEWEST if finding.key == WHOLE else _SCAN_LIMIT
    params = {"s": int(finding.bucket.start.timestamp()),
              "e": int(finding.bucket.end.timestamp()), "n": limit, **where.params()}  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    picked = [r for r in rows if finding.key in keys_of(r[4], finding.dimension)][:NEWEST]
    return [Linked(clipped(i), clipped(s or "(no subject)"), ticket_url(config, c, x))
            for i, s, c, x, _ in picked]  # fmt: skip


# --- rendering --------------------------------------------------------------------------


def plain(alarm: Alarm, name: str) -> str:
    lines = [f"alert {name}: {alarm.title}", alarm.summary]
    if alarm.tickets:
        lines.append("Newest tickets:")
        lines += [f"  {t.ticket_id}  {t.subject}" + (f"  {t.url}" if t.url else "")
                  for t in alarm.tickets]  # fmt: skip
    return "\n".join(lines) + "\n"


def _mrkdwn(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(t: Linked) -> str:
    # https://docs.slack.dev/messaging/formatting-message-text#linking-urls
    return f"<{_mrkdwn(t.url)}|{_mrkdwn(t.ticket_id)}>" if t.url else f"`{_mrkdwn(t.ticket_id)}`"


def slack_message(alarm: Alarm, name: str) -> dict[str, Any]:
    head = f":rotating_light: *{_mrkdwn(name)}*: {_mrkdwn(alarm.title)}\n{_mrkdwn(alarm.summary)}"
    items = [f"• {_link(t)}  {_mrkdwn(t.subject)}" for t in alarm.tickets]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    if items:
        listing = "*Newest tickets*\n" + "\n".join(items)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": listing}})
    return {"text": f"{name}: {alarm.title}: {alarm.summary}", "blocks": blocks}


def html(alarm: Alarm, name: str) -> str:
    e = html_lib.escape
    rows = "".join(
        f'<li><a href="{e(t.url)}">{e(t.ticket_id)}</a> {e(t.subject)}</li>' if t.url
        else f"<li>{e(t.ticket_id)} {e(t.subject)}</li>" for t in alarm.tickets
    )  # fmt: skip
    listing = f"<p>Newest tickets:</p><ul>{rows}</ul>" if rows else ""
    return (f"<html><body><h2>{e(name)}: {e(alarm.title)}</h2><p>{e(alarm.summary)}</p>"
            f"{listing}</body></html>")  # fmt: skip
