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


def test_csv_names_the_window_on_every_row_and_gives_matrix_kpis_as_rows() -> None:
    """Item 19: from, to, timezone on each row; backlog_age and submissions_by_hour one row
    per bucket, not JSON in a cell."""
    hours = [[0] * 24 for _ in range(7)]
    hours[0][9] = 5  # Monday 09:00
    out = rows(csv_text(report(
        backlog_age={"value": {"<1d": 1, "1-3d": 0, "3-7d": 2, ">7d": 4}, "unit": "count"},
        submissions_by_hour={"value": hours, "unit": "count"},
        first_response_time={"value": 60.0, "median": 60.0, "p90": 90.0, "mean": 70.0, "n": 3,
                             "unit": "s"},
    )))  # fmt: skip
    assert {(r["from"], r["to"], r["timezone"]) for r in out} == {
        ("2026-11-01T01:00:00+01:00", "2026-11-08T01:00:00+01:00", "Europe/Berlin")
    }
    ages = [(r["bucket"], r["value"]) for r in out if r["kpi"] == "backlog_age"]
    assert ages == [("<1d", "1"), ("1-3d", "0"), ("3-7d", "2"), (">7d", "4")]
    by_hour = [r for r in out if r["kpi"] == "submissions_by_hour"]
    assert len(by_hour) == 7 * 24
    assert (by_hour[9]["bucket"], by_hour[9]["value"]) == ("Mon 09:00", "5")
    assert by_hour[-1]["bucket"] == "Sun 23:00"
    (frt,) = [r for r in out if r["kpi"] == "first_response_time"]
    assert (frt["bucket"], frt["value"], frt["p90"], frt["n"]) == ("", "60.0", "90.0", "3")
