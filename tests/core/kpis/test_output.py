"""The report as CSV, JSON and display text (``core/kpis/output.py``), on hand-made reports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cskpi.core.config.periods import Window
from cskpi.core.kpis.output import csv_text, duration_column
from cskpi.core.kpis.report import Entry, Group, Grouping, Report, arrange

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


# --- --by rows: order, the one "no agent" label, one duration format per column (item 18) --


def group(key: str | None, label: str, created: int, solved: int, frt: float | None) -> Group:
    kpis: dict[str, Entry] = {
        "tickets_created": {"value": created, "unit": "count"},
        "tickets_solved": {"value": solved, "unit": "count"},
        "backlog": {"value": 0, "unit": "count"},
        "first_response_time": {"value": frt, "unit": "s"},
        "resolution_time": {"value": None, "reason": "none solved", "unit": "s"},
        "fcr_rate": {"value": None, "reason": "none solved", "unit": "%"},
        "csat": {"value": None, "reason": "no rating", "unit": "%"},
    }
    return Group(key, label, kpis)


# as compute gives them: by key as text, the null key last
BY_KEY = [
    group("hd:a1", "Ana", 1, 1, 45.0), group("hd:a10", "Jo", 9, 9, 2700.0),
    group("hd:a2", "ben", 3, 0, 94000.0), group(None, "(unassigned)", 4, 0, None),
]  # fmt: skip


def test_groups_come_by_volume_then_as_asked() -> None:
    by = report(Grouping("agent", BY_KEY))
    assert [g.label for g in arrange(by).by.groups] == ["Jo", "(unassigned)", "ben", "Ana"]
    assert [g.label for g in arrange(by, "solved", 2).by.groups] == ["Jo", "Ana"]
    assert [g.label for g in arrange(by, "name").by.groups] == ["(unassigned)", "Ana", "ben", "Jo"]


def test_a_duration_column_has_one_format() -> None:
    assert duration_column([45.0, 2700.0, None]) == ["0m 45s", "45m 00s", "-"]
    assert duration_column([45.0, 94000.0]) == ["0h 00m", "26h 06m"]
    assert duration_column([45.0, 200000.0]) == ["0d 00h", "2d 07h"]
    assert duration_column([59.0, -3.0]) == ["59s", "-3s"]


def test_the_by_table_shows_each_duration_column_in_one_format() -> None:
    from rich.console import Console

    from cskpi.commands.console import kpi_tables

    shown = io.StringIO()
    groups = [g for g in BY_KEY if g.key != "hd:a2"]  # 45 s, 45 min, none: minutes
    for table in kpi_tables(report(Grouping("agent", groups))):
        Console(file=shown, width=200, color_system=None).print(table)
    lines = shown.getvalue().splitlines()
    assert any("Ana" in line and "0m 45s" in line for line in lines)
    assert any("Jo" in line and "45m 00s" in line for line in lines)
