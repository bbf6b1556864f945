"""`cskpi demo --dir` writes only into a folder it may rewrite (issue 23, item 9): a new or
empty one, one it made before, or cskpi's own $CSKPI_HOME/demo; never someone's project."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cskpi.cli import app

runner = CliRunner()
SMALL = ["--tickets", "100", "--days", "10"]


def project(folder: Path) -> None:
    folder.mkdir()
    (folder / "cskpi.toml").write_text('database = "sqlite:///cskpi.db"\n# my team\'s config\n')
    (folder / "cskpi.db").write_bytes(b"a year of tickets")


def notes(folder: Path) -> None:
    folder.mkdir()
    (folder / "notes.txt").write_text("anything at all\n")


def a_file(folder: Path) -> None:
    folder.write_text("not a folder\n")


REFUSED: list[tuple[str, Callable[[Path], None], str]] = [
    ("a project", project, "not a folder `cskpi demo` made, and not empty"),
    ("other files", notes, "not a folder `cskpi demo` made, and not empty"),
    ("a file", a_file, "is a file, not a folder"),
]


@pytest.mark.parametrize(("case", "make", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_demo_refuses_a_folder_it_did_not_make(
    tmp_path: Path, case: str, make: Callable[[Path], None], reason: str
) -> None:
    folder = tmp_path / "target"
    make(folder)
    before = {p: p.read_bytes() for p in [folder, *folder.glob("*")] if p.is_file()}
    result = runner.invoke(app, ["demo", "--dir", str(folder), *SMALL])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --dir {folder}: {reason}")
    assert result.output.count("\n") == 1
    assert {p: p.read_bytes() for p in [folder, *folder.glob("*")] if p.is_file()} == before


ACCEPTED: list[tuple[str, Callable[[Path], None]]] = [
    ("missing", lambda folder: None),
    ("empty", lambda folder: folder.mkdir()),
]


@pytest.mark.parametrize(("case", "make"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_demo_takes_a_new_or_empty_folder_and_then_reuses_it(
    tmp_path: Path, case: str, make: Callable[[Path], None]
) -> None:
    folder = tmp_path / "target"
    make(folder)
    assert runner.invoke(app, ["demo", "--dir", str(folder), *SMALL]).exit_code == 0
    assert (folder / ".cskpi-demo").is_file()
    again = runner.invoke(app, ["demo", "--dir", str(folder), *SMALL])  # its own: rewritten
    assert again.exit_code == 0, again.output


def test_the_default_folder_is_cskpi_s_own_even_without_a_marker() -> None:
    default = Path(os.environ["CSKPI_HOME"]) / "demo"
    default.mkdir()
    (default / "cskpi.toml").write_text("# written by an older cskpi demo\n")
    result = runner.invoke(app, ["demo", *SMALL])
    assert result.exit_code == 0, result.output
    assert (default / ".cskpi-demo").is_file()
