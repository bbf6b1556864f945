"""The README documents every command, and its first screen keeps the two set-up commands."""

from pathlib import Path

import typer.main

from cskpi.cli import app

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def command_paths(group: typer.Typer, prefix: str = "cskpi") -> list[str]:
    click_group = typer.main.get_command(group)
    found: list[str] = []

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        subs = getattr(cmd, "commands", None)
        if not subs:
            found.append(path)
            return
        for name, sub in subs.items():
            walk(sub, f"{path} {name}")

    walk(click_group, prefix)
    return found


def test_every_command_is_in_the_readme() -> None:
    paths = command_paths(app)
    assert "cskpi sync" in paths
    assert "cskpi secrets set" in paths
    missing = [p for p in paths if f"`{p}" not in README]
    assert missing == []


def test_first_screen_has_the_two_setup_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:40])
    assert "pip install . && cskpi demo" in first_screen
    assert "./scripts/test" in first_screen
