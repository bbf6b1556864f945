"""The report as CSV, JSON and display text (``core/kpis/output.py``), on hand-made reports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cskpi.core.config.periods import Window
from cskpi.core.kpis.output import csv_text
from cskpi.core.kpis.report import Entry, Group, Grouping, Report

WINDOW = Window(
    datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC),
    ZoneInfo("Europe/Berlin"), datetime(2026, 11, 8, tzinfo=UTC),
)  # fmt: skip


def report(by: Grouping | None = None, **kpis: Entry) -> Report:
    return Report(WINDOW, ["acme"], kpis or {"tickets_created": {"value": 3, "unit": "count"}}, by)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_cells_from_helpdesk_data_cannot_start_a_formula() -> None:
    """OWASP's CSV injection advice: a leading ' for = + - @ tab CR (issue 23, item 11)."""
    names = ['=HYPERLINK("http://evil","x")', "+1", "-cmd", "@SUM(A1)", "\tx", "\rx", "Ana"]
    entries: dict[str, Entry] = {"backlog_change": {"value": -4, "unit": "count"}}
    groups = [Group(name, name, entries) for name in names]
    out = rows(csv_text(report(Grouping("tag", groups), **entries)))
    tagged = [r for r in out if r["dimension"] == "tag"]
    assert [r["key"] for r in tagged] == ["'" + n for n in names[:-1]] + ["Ana"]
    assert [r["label"] for r in tagged] == [r["key"] for r in tagged]
    assert {r["value"] for r in out} == {"-4"}  # a number the report computed stays a number
