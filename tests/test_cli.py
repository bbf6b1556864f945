"""The command line, end to end through typer's CliRunner."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from cskpi.cli import app
from cskpi.connectors import registry
from cskpi.connectors.base import ConnectorSettings, Page, Stream
from cskpi.connectors.demo.connector import DemoConnector
from cskpi.core.config.secrets import Secret

runner = CliRunner()
TOKEN = "s3cr3t-token-value"

DEMO_CONFIG = """\
database = "sqlite:///data/kpi.db"
[connectors.shop]
type = "demo"
tickets = 300
days = 20
seed = 3
end = 2026-11-01T00:00:00Z
"""


class LeakySettings(ConnectorSettings):
    api_token: Secret


class LeakyConnector:
    """A connector whose failures quote its token, as careless HTTP errors do."""

    type: ClassVar[str] = "leaky"
    Settings: ClassVar[type[ConnectorSettings]] = LeakySettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        assert isinstance(settings, LeakySettings)
        self.token = settings.api_token.get_secret_value()

    def check(self) -> None:
        raise PermissionError(f"401 for Authorization: Bearer {self.token}")

    def streams(self) -> Sequence[Stream]:
        return [self]  # type: ignore[list-item]

    name = "tickets"

    def read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
        raise ConnectionError(f"GET https://x.example/api?token={self.token} refused")


@pytest.fixture
def types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry, "installed", lambda: {"demo": DemoConnector, "leaky": LeakyConnector}
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "check", "sync", "status", "demo", "connectors", "secrets"):
        assert command in result.output


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    first = runner.invoke(app, ["init"])
    assert first.exit_code == 0
    written = (tmp_path / "cskpi.toml").read_text()
    assert written == (Path(__file__).parents[1] / "config.example.toml").read_text()
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 2
    assert "already exists" in again.output


def test_sync_then_status_with_a_relative_database(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cskpi.toml", DEMO_CONFIG)
    (tmp_path / "data").mkdir()
    result = runner.invoke(app, ["sync", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(tmp_path / "data" / "kpi.db")
    assert db.execute("SELECT COUNT(*) FROM ticket").fetchone() == (300,)
    assert db.execute("SELECT status FROM sync_run").fetchall() == [("ok",)]
    status = runner.invoke(app, ["status"])  # ./cskpi.toml found by the lookup order
    assert status.exit_code == 0
    assert "shop" in status.output
    assert "tickets" in status.output


def test_config_found_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path / "elsewhere.toml", DEMO_CONFIG.replace("data/", ""))
    monkeypatch.setenv("CSKPI_CONFIG", str(cfg))
    assert runner.invoke(app, ["check"]).exit_code == 0


def test_an_invalid_config_exits_2_naming_file_table_and_key(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.toml", DEMO_CONFIG + "colour = 'blue'\n")
    result = runner.invoke(app, ["sync", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "bad.toml" in result.output
    assert "[connectors.shop] colour" in result.output
    assert not (tmp_path / "data").exists()


def test_an_unknown_connector_type_lists_the_installed_ones(tmp_path: Path, types: None) -> None:
    cfg = write(tmp_path / "c.toml", "[connectors.x]\ntype = 'zendsk'\n")
    result = runner.invoke(app, ["check", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "unknown connector type 'zendsk'; installed: demo, leaky" in result.output


def test_unknown_connector_name_on_the_command_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cskpi.toml", DEMO_CONFIG)
    result = runner.invoke(app, ["sync", "-c", str(cfg), "--connector", "nope"])
    assert result.exit_code == 2
    assert "no connector named 'nope'" in result.output


def test_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cskpi.toml", DEMO_CONFIG)
    result = runner.invoke(app, ["sync", "-c", str(cfg), "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "not a date" in result.output


def test_a_failing_connector_exits_1_and_never_leaks_its_secret(
    tmp_path: Path, types: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKY_TOKEN", TOKEN)
    cfg = write(
        tmp_path / "cskpi.toml",
        DEMO_CONFIG.replace("data/", "")
        + '[connectors.leak]\ntype = "leaky"\napi_token = "env:LEAKY_TOKEN"\n',
    )
    result = runner.invoke(app, ["sync", "-c", str(cfg), "-v"])
    assert result.exit_code == 1
    assert "ConnectionError" in result.output
    assert TOKEN not in result.output
    check = runner.invoke(app, ["check", "-c", str(cfg)])
    assert check.exit_code == 1
    assert "401" in check.output
    assert TOKEN not in check.output
    dump = "\n".join(sqlite3.connect(tmp_path / "kpi.db").iterdump())
    assert "ConnectionError" in dump
    assert TOKEN not in dump
    # the good connector was synced all the same
    assert 'INSERT INTO "ticket"' in dump


def test_connectors_list_shows_types_and_keys(types: None) -> None:
    result = runner.invoke(app, ["connectors", "list"])
    assert result.exit_code == 0
    assert "demo" in result.output
    assert "api_token" in result.output


def test_secrets_set_list_delete(isolated) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["secrets", "set", "zd"], input=f"{TOKEN}\n{TOKEN}\n")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    assert isolated.passwords[("cskpi", "zd")] == TOKEN
    listed = runner.invoke(app, ["secrets", "list"])
    assert listed.output.split() == ["zd"]
    assert runner.invoke(app, ["secrets", "delete", "zd"]).exit_code == 0
    assert runner.invoke(app, ["secrets", "list"]).output.strip() == "no secrets stored"
    assert runner.invoke(app, ["secrets", "delete", "zd"]).exit_code == 2


def test_demo_runs_the_pipeline_in_a_scratch_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scratch"
    result = runner.invoke(app, ["demo", "--dir", str(folder), "--tickets", "400", "--days", "30"])
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(folder / "cskpi.db")
    assert db.execute("SELECT COUNT(*) FROM ticket").fetchone() == (400,)
    assert "400" in result.output
    assert "by status" in result.output
    # a second run starts from scratch again, with the same data
    again = runner.invoke(app, ["demo", "--dir", str(folder), "--tickets", "400", "--days", "30"])
    assert again.exit_code == 0
    assert sqlite3.connect(folder / "cskpi.db").execute(
        "SELECT COUNT(*) FROM ticket"
    ).fetchone() == (400,)


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cskpi", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "sync" in done.stdout


def test_help_does_not_import_the_heavy_modules() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from cskpi.cli import app; "
        "heavy = ('sqlalchemy', 'sqlmodel', 'pydantic', 'keyring'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def synced(tmp_path: Path) -> Path:
    cfg = write(tmp_path / "cskpi.toml", DEMO_CONFIG.replace("data/", ""))
    assert runner.invoke(app, ["sync", "-c", str(cfg)]).exit_code == 0
    return cfg


def test_kpis_json_has_every_kpi_of_the_contract(tmp_path: Path) -> None:
    import json

    from cskpi.core.config.file import KPI_KEYS

    cfg = synced(tmp_path)
    args = ["kpis", "-c", str(cfg), "--from", "2026-10-01", "--to", "2026-11-01"]
    result = runner.invoke(app, [*args, "--now", "2026-11-01", "--format", "json", "--by", "agent"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["window"] == {
        "from": "2026-10-01T00:00:00+00:00",
        "to": "2026-11-01T00:00:00+00:00",
        "timezone": "UTC",
    }
    assert doc["connectors"] == ["shop"]
    assert tuple(doc["kpis"]) == KPI_KEYS
    created = doc["kpis"]["tickets_created"]["value"]
    db = sqlite3.connect(tmp_path / "kpi.db")
    lo, hi = 1790812800, 1793491200  # 2026-10-01 and 2026-11-01 UTC
    query = "SELECT COUNT(*) FROM ticket WHERE created_at >= ? AND created_at < ? AND deleted = 0"
    assert created == db.execute(query, (lo, hi)).fetchone()[0]
    groups = doc["by"]["groups"]
    assert doc["by"]["dimension"] == "agent"
    assert (
        sum(g["kpis"]["tickets_solved"]["value"] for g in groups)
        == doc["kpis"]["tickets_solved"]["value"]
    )
    names = dict(db.execute("SELECT id, name FROM person WHERE role = 'agent'").fetchall())
    assert all(g["label"] == names[g["key"]] for g in groups if g["key"] is not None)


def test_kpis_csv_is_one_row_per_group_and_kpi(tmp_path: Path) -> None:
    import csv
    import io

    cfg = synced(tmp_path)
    result = runner.invoke(app, ["kpis", "-c", str(cfg), "-p", "last-30d", "--now", "2026-11-01",
                                 "--by", "channel", "-f", "csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    channels = {r["key"] for r in rows if r["dimension"] == "channel"}
    # 23 single-figure KPIs (handle_time, csat_response_rate: issue 25), 4 backlog ages and
    # 7 x 24 hours (issue 23, item 19)
    assert len(rows) == (23 + 4 + 7 * 24) * (1 + len(channels))
    assert {r["kpi"] for r in rows} >= {"fcr_rate", "csat", "churn_rate"}


def test_kpis_rejects_a_bad_dimension_and_a_bad_period(tmp_path: Path) -> None:
    cfg = synced(tmp_path)
    bad_by = runner.invoke(app, ["kpis", "-c", str(cfg), "--by", "colour"])
    assert bad_by.exit_code == 2
    assert "--by 'colour'" in bad_by.output
    bad_period = runner.invoke(app, ["kpis", "-c", str(cfg), "-p", "fortnight"])
    assert bad_period.exit_code == 2
    assert "unknown period 'fortnight'" in bad_period.output


def test_import_ratings_then_nps_counts_them(tmp_path: Path) -> None:
    import json

    cfg = synced(tmp_path)
    answers = write(
        tmp_path / "nps.csv", "kind,score,rated_at\nnps,10,2026-10-05\nnps,3,2026-10-06\n"
    )
    done = runner.invoke(app, ["import", "ratings", str(answers), "-c", str(cfg)])
    assert done.exit_code == 0, done.output
    assert "2 ratings rows, 2 new" in done.output
    args = ["kpis", "-c", str(cfg), "--from", "2026-10-05", "--to", "2026-10-07", "-f", "json"]
    nps = json.loads(runner.invoke(app, args).output)["kpis"]["nps"]
    db = sqlite3.connect(tmp_path / "kpi.db")
    synced_nps = db.execute(
        "SELECT score FROM rating WHERE kind = 'nps' AND connector = 'shop' "
        "AND rated_at >= 1791158400 AND rated_at < 1791331200"
    ).fetchall()
    assert nps["n"] == len(synced_nps) + 2
    bad = write(tmp_path / "bad.csv", "kind,score,rated_at\nnps,10,2026-10-05\nnps,11,2026-10-06\n")
    failed = runner.invoke(app, ["import", "ratings", str(bad), "-c", str(cfg)])
    assert failed.exit_code == 1
    assert "bad.csv: line 3" in failed.output


def test_demo_kpis_and_digest_agree_on_the_backlog_of_one_instant(tmp_path: Path) -> None:
    """`cskpi demo` (its store's statuses and summary), `cskpi kpis` with and without
    `--now`, and the digest give one backlog for the instant the demo's data ends (issue
    22: 182 in the demo, 171 in `kpis` a moment later, reopened tickets dropped); an
    earlier instant is reconstructed from the status history, not today's open tickets."""
    import json
    import re
    from datetime import UTC, timedelta

    from cskpi.core import quickstart
    from cskpi.core.store.engine import open_engine

    folder = tmp_path / "scratch"
    args = ["--dir", str(folder), "--tickets", "3000", "--days", "30"]
    assert runner.invoke(app, ["demo", *args]).exit_code == 0
    cfg = str(folder / "cskpi.toml")
    end = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
    db = sqlite3.connect(folder / "cskpi.db")
    unsolved = "status IN ('new', 'open', 'pending', 'on_hold')"
    shown = db.execute(f"SELECT COUNT(*) FROM ticket WHERE {unsolved}").fetchone()[0]
    reopened = f"SELECT COUNT(*) FROM ticket WHERE {unsolved} AND first_solved_at IS NOT NULL"
    assert db.execute(reopened).fetchone()[0] > 0  # what dropped out before

    def backlog(*options: str) -> int:
        result = runner.invoke(app, ["kpis", "-c", cfg, "--format", "json", *options])
        assert result.exit_code == 0, result.output
        return int(json.loads(result.output)["kpis"]["backlog"]["value"])

    at = min(end + timedelta(hours=9), datetime.now(UTC))  # --date refuses the future
    digest = runner.invoke(
        app, ["digest", "-c", cfg, "--dry-run", "--date", f"{at:%Y-%m-%dT%H:%M}"]
    )
    assert digest.exit_code == 0, digest.output
    line = re.search(r"^Backlog +(\d+)", digest.output, re.MULTILINE)
    assert line is not None, digest.output
    engine = open_engine(f"sqlite:///{folder / 'cskpi.db'}")
    try:
        summary = quickstart.summarize(engine, end)
    finally:
        engine.dispose()
    agreed = {
        "demo's open tickets": shown,
        "demo summary": summary.backlog,
        "kpis --now end": backlog("--period", "last-7d", "--now", end.isoformat()),
        "kpis a moment later": backlog("--period", "last-7d"),
        "digest": int(line.group(1)),
    }
    assert set(agreed.values()) == {shown}, agreed
    # A week earlier: the history's answer, which is not today's open tickets.
    before = end - timedelta(days=7)
    at_before = backlog("--from", f"{before - timedelta(days=7):%Y-%m-%d}", "--to",
                        f"{before:%Y-%m-%d}", "--now", f"{before:%Y-%m-%d}")  # fmt: skip
    changes = (
        "SELECT COUNT(*) FROM ticket t WHERE t.created_at < :a AND (SELECT s.status FROM "
        "status_change s WHERE s.ticket_id = t.id AND s.at <= :a ORDER BY s.at DESC LIMIT 1) "
        "IN ('new', 'open', 'pending', 'on_hold')"
    )
    expected = db.execute(changes, {"a": int(before.timestamp())}).fetchone()[0]
    assert at_before == expected != shown


# --- issue 23 item 8: every config error at once; the future refused at load ------------

BAD_INPUT = [
    pytest.param(
        DEMO_CONFIG + "colour = 'blue'\n[kpis]\nescalation_tags = 'x'\n",
        ["check"],
        "error: c.toml: [kpis] escalation_tags: must be a list\n"
        "error: c.toml: [connectors.shop] colour: unknown key\n",
        2,
        id="two-config-errors-two-lines",
    ),
    pytest.param(
        'timezone = "UTC"\n',
        ["sync"],
        "error: c.toml: no connectors configured; add a [connectors.NAME] table "
        "(`cskpi connectors list` shows the types)\n",
        2,
        id="no-connectors",
    ),
    pytest.param(
        DEMO_CONFIG,
        ["sync", "--since", "2999-01-01"],
        "error: --since 2999-01-01: that is in the future; give a date up to now\n",
        2,
        id="since-in-the-future",
    ),
    pytest.param(
        DEMO_CONFIG + '[digests.daily]\nschedule = "0 9 * * *"\n',
        ["digest", "--dry-run", "--date", "2999-01-01T09:00"],
        "error: --date 2999-01-01T09:00: that is in the future; give a date up to now\n",
        2,
        id="date-in-the-future",
    ),
]


@pytest.mark.parametrize(("text", "args", "expected", "code"), BAD_INPUT)
def test_bad_input_is_one_error_line_each(
    tmp_path: Path, text: str, args: list[str], expected: str, code: int
) -> None:
    write(tmp_path / "c.toml", text)
    result = runner.invoke(app, [*args, "-c", "c.toml"])
    assert (result.output, result.exit_code) == (expected, code)


def test_a_config_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_bytes(b"\xef\xbb\xbf" + DEMO_CONFIG.encode())
    (tmp_path / "data").mkdir()
    result = runner.invoke(app, ["sync", "-c", "c.toml"])
    assert result.exit_code == 0, result.output


# --- issue 23 item 10: habits ------------------------------------------------------------


def test_config_before_or_after_the_command(tmp_path: Path) -> None:
    write(tmp_path / "one.toml", DEMO_CONFIG.replace("data/", ""))
    write(tmp_path / "two.toml", DEMO_CONFIG.replace("data/kpi.db", "two.db"))
    before = runner.invoke(app, ["-c", "one.toml", "sync"])
    assert before.exit_code == 0, before.output
    assert (tmp_path / "kpi.db").exists()
    after_wins = runner.invoke(app, ["-c", "one.toml", "sync", "-c", "two.toml"])
    assert after_wins.exit_code == 0, after_wins.output
    assert (tmp_path / "two.db").exists()
    answers = write(tmp_path / "nps.csv", "kind,score,rated_at\nnps,10,2026-10-05\n")
    nested = runner.invoke(app, ["--config", "one.toml", "import", "ratings", str(answers)])
    assert nested.exit_code == 0, nested.output
    missing = runner.invoke(app, ["-c", "nope.toml", "status"])
    assert missing.output == "error: nope.toml: no such config file (given with --config)\n"


def test_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert (result.output, result.exit_code) == (f"cskpi {version('cskpi')}\n", 0)


def test_shell_completion_is_offered() -> None:
    assert "--install-completion" in runner.invoke(app, ["--help"]).output
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="cskpi")
    assert script.exit_code == 0
    assert "_CSKPI_COMPLETE=complete_bash" in script.output


def every_command() -> list[str]:
    from tests.test_docs import command_paths

    return [path.removeprefix("cskpi ") for path in command_paths(app)]


@pytest.mark.parametrize("command", every_command())
def test_every_help_has_readable_placeholders_and_an_example(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0
    placeholders = re.findall(r"<(?:bool|str|int|float|path|list\[\w+\]|int range)>", result.output)
    assert placeholders == []
    assert f"Example: cskpi {command}" in result.output


USAGE_ERRORS = [
    (["sync", "--bogus"], "error: No such option: --bogus (Possible options: --verbose); "
                          "see `cskpi sync --help`"),
    (["nope"], "error: No such command 'nope'; see `cskpi --help`"),
    (["kpis", "--period"], "error: Option '--period' requires an argument"),
    (["demo", "--tickets", "many"], "error: Invalid value for '--tickets': Input should be a "
                                    "valid integer, unable to parse string as an integer; "
                                    "see `cskpi demo --help`"),
    (["secrets", "set"], "error: Missing argument 'NAME'; see `cskpi secrets set --help`"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), USAGE_ERRORS)
def test_usage_errors_are_one_error_line_with_exit_2(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args, prog_name="cskpi")
    assert (result.output, result.exit_code) == (expected + "\n", 2)


def test_secrets_set_without_a_keyring_says_so_before_prompting() -> None:
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    result = runner.invoke(app, ["secrets", "set", "zd"], input="typed-for-nothing\n")
    assert (result.output, result.exit_code) == (
        "error: no keyring backend is available on this machine; use env:VAR or file:PATH "
        "instead\n",
        2,
    )


class RejectedSettings(ConnectorSettings):
    api_token: Secret


class RejectedConnector:
    """Six streams behind a token the helpdesk refuses, as Zendesk's are (issue 23: 18 lines)."""

    type: ClassVar[str] = "rejected"
    Settings: ClassVar[type[ConnectorSettings]] = RejectedSettings
    reads: ClassVar[list[str]] = []

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name = name

    def check(self) -> None:
        raise self.refusal("users/me")

    def refusal(self, path: str) -> Exception:
        from cskpi.core.http.client import AuthError

        return AuthError(f"the token for connector {self.name} is rejected (401 on GET /{path})")

    def streams(self) -> Sequence[Stream]:
        return [self.stream(n) for n in ("groups", "people", "tickets", "messages", "ratings", "x")]

    def stream(self, name: str) -> Stream:
        connector = self

        class Refused:
            def read(self, cursor: str | None, since: datetime | None) -> Iterator[Page]:
                connector.reads.append(f"{connector.name}/{name}")
                raise connector.refusal(name)

        refused = Refused()
        refused.name = name  # type: ignore[attr-defined]
        return refused  # type: ignore[return-value]


@pytest.mark.parametrize("command", ["sync", "check"])
def test_a_rejected_token_is_one_error_line_per_connector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr(registry, "installed", lambda: {"rejected": RejectedConnector})
    monkeypatch.setattr(RejectedConnector, "reads", [])
    cfg = write(tmp_path / "c.toml", "".join(
        f'[connectors.{n}]\ntype = "rejected"\napi_token = "tok-{n}-123"\n' for n in ("a", "b")
    ))  # fmt: skip
    result = runner.invoke(app, [command, "-c", str(cfg)], terminal_width=80)
    assert result.exit_code == 1
    assert result.output.count("rejected (401") == 2, result.output  # not 12
    if command == "sync":  # and each is one line, whole
        lines = [line for line in result.output.splitlines() if "rejected (401" in line]
        assert [line.split(":")[0] for line in lines] == ["✗ a/groups", "✗ b/groups"]
        assert lines[0].endswith("(401 on GET /groups); its other streams were not read")
    assert RejectedConnector.reads == (["a/groups", "b/groups"] if command == "sync" else [])
