"""The README documents every command, and its first screen keeps the two set-up commands."""

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from cskpi.cli import app
from cskpi.connectors.registry import installed
from cskpi.core import quickstart
from cskpi.core.config.file import Config, load_config
from tests.conftest import MemoryKeyring

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


# --- every TOML example the project shows is a valid config (issue 23 item 8) -------------

ROOT = Path(__file__).parents[1]
SNIPPET = re.compile(r"```toml\n(.*?)```", re.DOTALL)
HOOK = "https://hooks.slack.com/services/T000/B000/docs-example"


def toml_snippets() -> list[Any]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for match in SNIPPET.finditer(text):
            if "[project." in match[1]:  # a plugin's pyproject.toml, not a cskpi config
                continue
            line = text.count("\n", 0, match.start()) + 2
            found.append(pytest.param(match[1], id=f"{doc.relative_to(ROOT)}:{line}"))
    return found


def load_example(text: str, keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> Config:
    """``text`` as a config file, its secrets resolvable, a demo connector added if it has none."""
    for name in re.findall(r'"keyring:([^"]+)"', text):
        keyring.passwords[("cskpi", name)] = HOOK
    for var in re.findall(r'"env:([^"]+)"', text):
        monkeypatch.setenv(var, HOOK)
    if "[connectors." not in text:
        text += '\n[connectors.try-it]\ntype = "demo"\n'
    path = Path("cskpi.toml")
    path.write_text(text, encoding="utf-8")
    return load_config(path, installed())


@pytest.mark.parametrize("text", toml_snippets())
def test_every_toml_snippet_in_the_docs_is_a_valid_config(
    text: str, isolated: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_example(text, isolated, monkeypatch)


def test_the_snippets_cover_the_digest_doc() -> None:
    assert any("docs/digest.md" in p.id for p in toml_snippets())


@pytest.mark.parametrize("path", ["config.example.toml", "demo"])
def test_the_shipped_configs_are_valid(
    path: str, tmp_path: Path, isolated: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "demo":
        config, _ = quickstart.prepare(tmp_path / "demo", tickets=10, days=2, seed=1)
        text = config.read_text(encoding="utf-8")
    else:
        text = (ROOT / path).read_text(encoding="utf-8")
    assert load_example(text, isolated, monkeypatch).connectors
