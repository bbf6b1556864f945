from __future__ import annotations

import builtins
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import keyring
import pytest
from keyring.backends import fail
from pydantic import BaseModel, field_validator, model_validator

from cskpi.connectors.base import ConnectorSettings
from cskpi.core.config.file import (
    KPI_KEYS,
    AlertSettings,
    BusinessHours,
    Config,
    ConfigError,
    Costs,
    DigestSettings,
    EmailTarget,
    KpiSettings,
    PriorityTargets,
    ReportSettings,
    Sla,
    SlackTarget,
    StaffingSettings,
    find_config_path,
    load_config,
)
from cskpi.core.config.secrets import SERVICE, Secret, redact
from cskpi.core.config.timespec import OpenHours
from tests.conftest import MemoryKeyring

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "zd-0123456789abcdef"


class FakeSettings(ConnectorSettings):
    api_token: Secret
    subdomain: str
    page_size: int = 100


class FakeConnector:
    type: ClassVar[str] = "fakedesk"
    # builtins.type: the ``type`` ClassVar above shadows the builtin inside this class
    Settings: ClassVar[builtins.type[ConnectorSettings]] = FakeSettings

    def __init__(self, name: str, settings: ConnectorSettings) -> None:
        self.name, self.settings = name, settings


class FakeDemoSettings(ConnectorSettings):
    tickets: int = 5000
    days: int = 90
    seed: int = 1
    end: datetime | None = None
    page_size: int = 1000
    agents: int | None = None
    groups: int | None = None
    organizations: int | None = None


class FakeDemo(FakeConnector):
    type: ClassVar[str] = "demo"
    Settings = FakeDemoSettings


TYPES: dict[str, Any] = {"fakedesk": FakeConnector, "demo": FakeDemo}

ACME = """
[connectors.acme]
type = "fakedesk"
subdomain = "acme"
api_token = "env:ZD_TOKEN"
"""


def _write(text: str) -> Path:
    # The working directory is the test's tmp_path (conftest), so messages start "cskpi.toml:".
    path = Path("cskpi.toml")
    path.write_text(text, encoding="utf-8")
    return path


DEMO = '[connectors.try-it]\ntype = "demo"\n'


def _with_a_connector(text: str) -> str:
    """``text``, and a demo connector when it has none (a config needs one)."""
    return text if "[connectors" in text else f"{text}\n{DEMO}"


def _load(text: str, types: dict[str, Any] = TYPES) -> Config:
    return load_config(_write(_with_a_connector(text)), types)


def _error(text: str, types: dict[str, Any] = TYPES) -> str:
    """Every error of ``text``, one per line."""
    with pytest.raises(ConfigError) as info:
        _load(text, types)
    assert all("\n" not in line for line in info.value.lines)
    assert str(info.value) == "\n".join(info.value.lines)
    return str(info.value)


HOOK = "https://hooks.slack.com/services/T000/B000/hook-secret"


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ZD_TOKEN", TOKEN)
    monkeypatch.setenv("SLACK_URL", HOOK)
    return TOKEN


# --- what a valid file gives ------------------------------------------------------------


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = _load("")
    assert config.path == tmp_path / "cskpi.toml"
    assert config.path.is_absolute()
    assert str(config.timezone) == "UTC"
    assert config.database == f"sqlite:///{tmp_path / 'cskpi.db'}"
    assert list(config.connectors) == ["try-it"]
    assert config.business_hours is None
    assert config.sla is None
    assert config.costs is None
    assert config.kpis.escalation_tags == ("escalated",)
    assert config.kpis.repeat_window == timedelta(days=7)
    assert config.digests == {}


FULL = """
timezone = "Europe/Berlin"
database = "sqlite:///data/kpis.db"

[connectors.acme]
type = "fakedesk"
schedule = "*/15 * * * MON-FRI"
subdomain = "acme"
api_token = "env:ZD_TOKEN"
start_date = 2026-01-01

[connectors.try-it]
type = "demo"
every = "1h30m"
tickets = 10

[business_hours]
mon = "09:00-12:00,13:00-17:00"
sat = "00:00-24:00"
holidays = ["2026-12-25", 2026-12-26]
country = "us"

[sla]
first_response = { urgent = "1h", high = "4h" }
resolution = { low = "168h" }
business_hours = true

[kpis]
escalation_tags = ["escalated", "tier2"]
repeat_window = "3d12h"

[costs]
monthly_support_cost = 42000
monthly_revenue = 900000.5

[digests.daily]
schedule = "0 9 * * mon-fri"
period = "14d"
compare = "same-period-last-week"
kpis = ["tickets_created", "csat"]
by = "agent"
grace = "2h"
slack = { token = "env:ZD_TOKEN", channel = "#support" }
email = { to = ["lead@acme.com"], smtp_url = "smtp://mail.acme.com:587", from = "kpi@acme.com" }

[digests.weekly]
schedule = "0 8 * * 1"
slack = { webhook_url = "env:SLACK_URL" }
"""


def test_full_file(tmp_path: Path, token: str) -> None:
    config = _load(FULL)
    assert str(config.timezone) == "Europe/Berlin"
    assert config.database == f"sqlite:///{tmp_path / 'data' / 'kpis.db'}"

    acme = config.connectors["acme"]
    assert isinstance(acme, FakeSettings)
    assert acme.api_token.get_secret_value() == token
    assert acme.subdomain == "acme"
    assert acme.schedule == "*/15 * * * mon-fri"
    assert acme.start_date == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # Berlin midnight
    demo = config.connectors["try-it"]
    assert isinstance(demo, FakeDemoSettings)
    assert (demo.every, demo.tickets, demo.schedule) == ("1h30m", 10, None)

    hours = config.business_hours
    assert hours is not None
    assert str(hours.timezone) == "Europe/Berlin"  # inherited from the top level
    hour = timedelta(hours=1)
    assert hours.week[0] == (OpenHours(9 * hour, 12 * hour), OpenHours(13 * hour, 17 * hour))
    assert hours.week[5] == (OpenHours(timedelta(0), 24 * hour),)
    assert hours.week[1] == hours.week[6] == ()
    assert hours.holidays == (date(2026, 12, 25), date(2026, 12, 26))
    assert hours.country == "US"

    sla = config.sla
    assert sla is not None
    assert sla.business_hours is True
    assert sla.first_response.target("urgent") == hour
    assert sla.first_response.target("high") == 4 * hour
    assert sla.first_response.target("low") is None
    assert sla.first_response.target(None) is None
    assert sla.resolution.target("low") == 168 * hour

    assert config.kpis.escalation_tags == ("escalated", "tier2")
    assert config.kpis.repeat_window == timedelta(days=3, hours=12)
    assert config.costs == Costs(monthly_support_cost=42000, monthly_revenue=900000.5)
    assert config.costs.currency == "USD"

    daily = config.digests["daily"]
    assert daily.schedule == "0 9 * * mon-fri"
    assert (daily.period, daily.compare, daily.by) == ("14d", "same-period-last-week", "agent")
    assert daily.kpis == ("tickets_created", "csat")
    assert daily.grace == 2 * hour
    assert daily.slack is not None
    assert daily.slack.token is not None
    assert daily.slack.token.get_secret_value() == token
    assert (daily.slack.channel, daily.slack.base_url) == ("#support", "https://slack.com/api/")
    assert daily.email is not None
    assert daily.email.to == ("lead@acme.com",)
    assert daily.email.from_ == "kpi@acme.com"
    assert daily.email.password is None

    weekly = config.digests["weekly"]
    assert weekly.period == "yesterday"
    assert weekly.compare == "previous"
    assert weekly.grace == 6 * hour
    assert weekly.kpis[0] == "tickets_created"
    assert weekly.slack is not None
    assert weekly.slack.webhook_url is not None
    assert weekly.email is None


def test_config_is_frozen() -> None:
    config = _load("")
    with pytest.raises(ValueError, match="frozen"):
        config.database = "sqlite://"  # type: ignore[misc]


def test_kpi_keys_are_the_spec_section_4_table_in_order() -> None:
    assert KPI_KEYS == (
        "tickets_created", "tickets_solved", "backlog", "backlog_change", "backlog_age",
        "first_response_time", "first_response_time_business", "response_time",
        "resolution_time", "resolution_time_business", "fcr_rate", "reopen_rate",
        "escalation_rate", "sla_first_response", "sla_resolution", "csat", "nps", "ces",
        "agent_replies_per_solved", "submissions_by_hour", "cost_per_ticket",
        "cost_revenue_ratio", "churn_rate",
        "first_resolution_time", "first_resolution_time_business", "resolution_stages",
        "time_in_status", "reassignment_rate", "touches", "first_response_distribution",
        "resolution_distribution", "esat", "public_replies", "internal_notes",
        "tickets_touched", "active_agents", "awaiting_reply", "unique_customers",
        "repeat_contact_rate", "backlog_time_to_clear",
        "handle_time", "csat_response_rate",  # SPEC §7, kept last
    )  # fmt: skip
    assert set(DigestSettings.model_fields["kpis"].default) <= set(KPI_KEYS)


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("sqlite:///cskpi.db", "sqlite:///{dir}/cskpi.db"),
        ("sqlite:///sub/x.db?mode=ro", "sqlite:///{dir}/sub/x.db?mode=ro"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///{dir}/x.db"),
        ("sqlite:////var/lib/cskpi.db", "sqlite:////var/lib/cskpi.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://u@db.local/cskpi", "postgresql://u@db.local/cskpi"),
    ],
)
def test_database_url(tmp_path: Path, database: str, expected: str) -> None:
    config = _load(f'database = "{database}"')
    assert config.database == expected.format(dir=tmp_path)


def test_relative_sqlite_path_follows_the_config_not_the_cwd(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "my.toml").write_text(_with_a_connector('database = "sqlite:///cskpi.db"\n'))
    config = load_config(Path("elsewhere/my.toml"), TYPES)
    assert config.database == f"sqlite:///{folder / 'cskpi.db'}"
    assert config.path == folder / "my.toml"


def test_database_password_is_registered_for_redaction() -> None:
    _load('database = "postgresql://kpi:pg-pass-123@db/cskpi"')
    assert redact("connect pg-pass-123 failed") == "connect *** failed"


def test_start_date_with_a_zone_is_kept(token: str) -> None:
    config = _load(ACME + "start_date = 2026-03-01T10:00:00+02:00\n")
    assert config.connectors["acme"].start_date == datetime(2026, 3, 1, 8, tzinfo=UTC)


def test_literal_secret_warns_with_the_key_but_not_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = ACME.replace('"env:ZD_TOKEN"', f'"{TOKEN}"')
    with caplog.at_level(logging.WARNING, logger="cskpi"):
        config = _load(text)
    assert config.connectors["acme"].api_token.get_secret_value() == TOKEN  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records] == [
        "api_token is written into the config as a literal secret; prefer env:VAR, keyring:NAME "
        "or file:PATH"
    ]


def test_file_secret_relative_to_the_config_and_its_error_names_key_and_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "zendesk").write_text(TOKEN + "\n")
    config = _load(ACME.replace("env:ZD_TOKEN", "file:secrets/zendesk"))
    assert config.connectors["acme"].api_token.get_secret_value() == TOKEN  # type: ignore[attr-defined]
    assert _error(ACME.replace("env:ZD_TOKEN", "file:secrets/nope")) == (
        "cskpi.toml: [connectors.acme] api_token: cannot read the secret file "
        f"{tmp_path}/secrets/nope: No such file or directory"
    )


def test_keyring_secret(isolated: MemoryKeyring) -> None:
    isolated.passwords[(SERVICE, "acme")] = TOKEN
    config = _load(ACME.replace("env:ZD_TOKEN", "keyring:acme"))
    assert config.connectors["acme"].api_token.get_secret_value() == TOKEN  # type: ignore[attr-defined]


# --- errors -----------------------------------------------------------------------------

DIGEST = '[digests.daily]\nschedule = "0 9 * * *"\n'

ERRORS = [
    pytest.param(
        'timezone = "UTC"\nthis is not toml\n',
        "cskpi.toml: line 2: invalid TOML: Expected '=' after a key in a key/value pair",
        id="bad-toml",
    ),
    pytest.param('timzone = "UTC"', "cskpi.toml: timzone: unknown key", id="unknown-top-key"),
    pytest.param("[foo]\nbar = 1", "cskpi.toml: [foo]: unknown table", id="unknown-table"),
    pytest.param('path = "x"', "cskpi.toml: path: unknown key", id="path-is-not-a-key"),
    pytest.param(
        ACME + 'subdomian = "acme"',
        "cskpi.toml: [connectors.acme] subdomian: unknown key",
        id="unknown-connector-key",
    ),
    pytest.param(
        DIGEST + 'perod = "yesterday"',
        "cskpi.toml: [digests.daily] perod: unknown key",
        id="unknown-digest-key",
    ),
    pytest.param(
        DIGEST + 'slack = { webhook_url = "env:SLACK_URL", chanel = "#x" }',
        "cskpi.toml: [digests.daily.slack] chanel: unknown key",
        id="unknown-slack-key",
    ),
    pytest.param(
        ACME.replace('subdomain = "acme"', "subdomain = 5"),
        "cskpi.toml: [connectors.acme] subdomain: Input should be a valid string",
        id="wrong-type-connector",
    ),
    pytest.param(
        '[costs]\nmonthly_support_cost = "lots"',
        "cskpi.toml: [costs] monthly_support_cost: "
        "Input should be a valid number, unable to parse string as a number",
        id="wrong-type-costs",
    ),
    pytest.param(
        ACME + 'schedule = "0 9 * *"',
        "cskpi.toml: [connectors.acme] schedule: not a cron expression: it needs 5 fields "
        "(minute hour day-of-month month day-of-week), e.g. '0 9 * * mon-fri'",
        id="bad-cron-connector",
    ),
    pytest.param(
        '[digests.daily]\nschedule = "0 25 * * *"',
        "cskpi.toml: [digests.daily] schedule: not a cron expression: hour must be 0-23",
        id="bad-cron-digest",
    ),
    pytest.param(
        ACME + 'every = "15x"',
        "cskpi.toml: [connectors.acme] every: not a duration; use e.g. 90s, 15m, 4h, 7d, 1h30m",
        id="bad-duration-connector",
    ),
    pytest.param(
        ACME + 'every = "0m"',
        "cskpi.toml: [connectors.acme] every: must be longer than zero",
        id="zero-every",
    ),
    pytest.param(
        '[sla]\nfirst_response = { urgent = "soon" }',
        "cskpi.toml: [sla.first_response] urgent: not a duration; use e.g. 90s, 15m, 4h, 7d, 1h30m",
        id="bad-duration-sla",
    ),
    pytest.param(
        '[sla]\nresolution = { critical = "1h" }',
        "cskpi.toml: [sla.resolution] critical: unknown key",
        id="unknown-priority",
    ),
    pytest.param(
        DIGEST + "grace = 6",
        "cskpi.toml: [digests.daily] grace: must be a duration string; "
        "use e.g. 90s, 15m, 4h, 7d, 1h30m",
        id="duration-not-a-string",
    ),
    pytest.param(
        ACME.replace("fakedesk", "zendsk"),
        "cskpi.toml: [connectors.acme] type: unknown connector type 'zendsk'; "
        "installed: demo, fakedesk",
        id="unknown-connector-type",
    ),
    pytest.param(
        '[connectors.acme]\nsubdomain = "acme"',
        "cskpi.toml: [connectors.acme] type: required key is missing; installed: demo, fakedesk",
        id="missing-type",
    ),
    pytest.param(
        ACME.replace('subdomain = "acme"\n', ""),
        "cskpi.toml: [connectors.acme] subdomain: required key is missing",
        id="missing-connector-key",
    ),
    pytest.param(
        '[digests.daily]\nperiod = "yesterday"',
        "cskpi.toml: [digests.daily] schedule: required key is missing",
        id="missing-digest-key",
    ),
    pytest.param(
        ACME.replace("ZD_TOKEN", "ZD_UNSET"),
        "cskpi.toml: [connectors.acme] api_token: environment variable ZD_UNSET is not set",
        id="unset-env-secret",
    ),
    pytest.param(
        ACME.replace("env:ZD_TOKEN", "keyring:acme"),
        "cskpi.toml: [connectors.acme] api_token: "
        "keyring has no secret acme; run `cskpi secrets set acme`",
        id="missing-keyring-secret",
    ),
    pytest.param(
        DIGEST + 'slack = { webhook_url = "env:SLACK_HOOK" }',
        "cskpi.toml: [digests.daily.slack] webhook_url: environment variable SLACK_HOOK is not set",
        id="unset-digest-secret",
    ),
    pytest.param(
        ACME + 'schedule = "*/5 * * * *"\nevery = "5m"',
        "cskpi.toml: [connectors.acme] every: give either schedule or every, not both",
        id="schedule-and-every",
    ),
    pytest.param(
        'timezone = "Europe/Berlln"',
        "cskpi.toml: timezone: unknown time zone; use an IANA name such as Europe/Berlin",
        id="bad-timezone",
    ),
    pytest.param(
        '[connectors."acme zendesk"]\ntype = "fakedesk"',
        'cskpi.toml: [connectors."acme zendesk"]: bad connector name: '
        "a name must start with a letter or digit and use only letters, digits, _ . -",
        id="bad-connector-name",
    ),
    pytest.param(
        "[connectors.acme]\ntype = 5",
        "cskpi.toml: [connectors.acme] type: must be a string naming a connector type; "
        "installed: demo, fakedesk",
        id="type-not-a-string",
    ),
    pytest.param(
        '[sla]\nfirst_response = "1h"',
        "cskpi.toml: [sla] first_response: must be a table",
        id="not-a-table",
    ),
    pytest.param(
        '[kpis]\nescalation_tags = "escalated"',
        "cskpi.toml: [kpis] escalation_tags: must be a list",
        id="not-a-list",
    ),
    pytest.param(
        '[kpis]\nrepeat_window = "soon"',
        "cskpi.toml: [kpis] repeat_window: not a duration; use e.g. 90s, 15m, 4h, 7d, 1h30m",
        id="repeat-window-not-a-duration",
    ),
    pytest.param(
        "[connectors]\nacme = 3",
        "cskpi.toml: [connectors] acme: must be a [connectors.NAME] table",
        id="connector-not-a-table",
    ),
    pytest.param(
        '[digests."-x"]\nschedule = "0 9 * * *"',
        "cskpi.toml: [digests.-x]: a name must start with a letter or digit "
        "and use only letters, digits, _ . -",
        id="bad-digest-name",
    ),
    pytest.param(
        DIGEST + 'kpis = ["tickets_created", "csat_score"]',
        f"cskpi.toml: [digests.daily] kpis[1]: unknown KPI; known: {', '.join(KPI_KEYS)}",
        id="unknown-kpi",
    ),
    pytest.param(
        DIGEST + "kpis = []",
        "cskpi.toml: [digests.daily] kpis: must not be empty",
        id="no-kpis",
    ),
    pytest.param(
        DIGEST + 'period = "last-fortnight"',
        "cskpi.toml: [digests.daily] period: must be one of today, yesterday, last-7d, "
        "last-30d, Nd (e.g. 14d), this-week, last-week, this-month, last-month, since-last",
        id="bad-period",
    ),
    pytest.param(
        DIGEST + 'by = "team"',
        "cskpi.toml: [digests.daily] by: Input should be 'agent', 'group', 'channel', 'type', "
        "'priority', 'tag', 'connector' or 'organization'",
        id="bad-dimension",
    ),
    pytest.param(
        DIGEST + 'compare = "last-year"',
        "cskpi.toml: [digests.daily] compare: "
        "Input should be 'previous', 'same-period-last-week' or 'none'",
        id="bad-compare",
    ),
    pytest.param(
        DIGEST + 'slack = { channel = "#x" }',
        "cskpi.toml: [digests.daily.slack]: give either webhook_url, or token and channel",
        id="slack-without-a-way-in",
    ),
    pytest.param(
        DIGEST + 'slack = { token = "env:ZD_TOKEN" }',
        'cskpi.toml: [digests.daily.slack]: token needs a channel, e.g. channel = "#support"',
        id="slack-token-without-channel",
    ),
    pytest.param(
        DIGEST + 'email = { to = [], smtp_url = "smtp://h", from = "a@b.c" }',
        "cskpi.toml: [digests.daily.email] to: must not be empty",
        id="email-without-recipients",
    ),
    pytest.param(
        DIGEST + 'email = { to = ["lead"], smtp_url = "smtp://h", from = "a@b.c" }',
        "cskpi.toml: [digests.daily.email] to[0]: must be an email address",
        id="bad-address",
    ),
    pytest.param(
        DIGEST + 'email = { to = ["a@b.c"], smtp_url = "smtp://h" }',
        "cskpi.toml: [digests.daily.email] from: required key is missing",
        id="email-without-from",
    ),
    pytest.param(
        DIGEST + 'email = { to = ["a@b.c"], smtp_url = "http://h", from = "a@b.c" }',
        "cskpi.toml: [digests.daily.email] smtp_url: "
        "must look like smtp://host:587 (STARTTLS) or smtps://host:465",
        id="bad-smtp-url",
    ),
    pytest.param(
        "[sla]\nbusiness_hours = true",
        "cskpi.toml: [sla] business_hours: true needs a [business_hours] table",
        id="sla-business-hours-without-hours",
    ),
    pytest.param(
        '[business_hours]\nholidays = ["2026-12-25"]',
        'cskpi.toml: [business_hours]: no day has opening hours; give e.g. mon = "09:00-17:00"',
        id="no-open-day",
    ),
    pytest.param(
        '[business_hours]\nmon = "9-17"',
        "cskpi.toml: [business_hours] mon: "
        "times must be HH:MM between 00:00 and 24:00, e.g. 09:00-17:00",
        id="bad-hours",
    ),
    pytest.param(
        '[business_hours]\nmon = "09:00-13:00,12:00-17:00"',
        "cskpi.toml: [business_hours] mon: intervals must be in order and must not overlap",
        id="overlapping-hours",
    ),
    pytest.param(
        '[business_hours]\nmon = "17:00-09:00"',
        "cskpi.toml: [business_hours] mon: each interval must end after it starts, "
        "e.g. 09:00-17:00",
        id="backwards-hours",
    ),
    pytest.param(
        '[business_hours]\nmon = "09:00-17:00"\ncountry = "USA"',
        "cskpi.toml: [business_hours] country: "
        "must be a two-letter ISO country code such as US or DE",
        id="bad-country",
    ),
    pytest.param(
        "[costs]\nmonthly_revenue = 5",
        "cskpi.toml: [costs] monthly_support_cost: required key is missing",
        id="costs-without-cost",
    ),
    pytest.param(
        'database = "cskpi.db"',
        'cskpi.toml: database: must be a SQLAlchemy URL: "sqlite:///" and a file path, '
        "or e.g. postgresql://host/db",
        id="database-not-a-url",
    ),
    # Issue 23 item 8: every error at once, one line each; more caught at load.
    pytest.param(
        'timzone = "UTC"\ndatabse = "x"',
        "cskpi.toml: timzone: unknown key\ncskpi.toml: databse: unknown key",
        id="several-errors",
    ),
    pytest.param(
        'timezone = "Mars/Olympus"\n[kpis]\nescalation_tags = "x"\n'
        + ACME.replace('subdomain = "acme"', "subdomain = 5")
        + '[connectors.other]\ntype = "zendsk"\n'
        + DIGEST
        + 'perod = "x"\nkpis = ["csat", "nope"]\n',
        "cskpi.toml: timezone: unknown time zone; use an IANA name such as Europe/Berlin\n"
        "cskpi.toml: [kpis] escalation_tags: must be a list\n"
        "cskpi.toml: [digests.daily] kpis[1]: unknown KPI; known: " + ", ".join(KPI_KEYS) + "\n"
        "cskpi.toml: [digests.daily] perod: unknown key\n"
        "cskpi.toml: [connectors.acme] subdomain: Input should be a valid string\n"
        "cskpi.toml: [connectors.other] type: unknown connector type 'zendsk'; "
        "installed: demo, fakedesk",
        id="errors-in-every-table",
    ),
    pytest.param(
        'timezone = "UTC"\n[connectors]\n',
        "cskpi.toml: no connectors configured; add a [connectors.NAME] table "
        "(`cskpi connectors list` shows the types)",
        id="empty-connectors-table",
    ),
    pytest.param(
        '[business_hours]\nmon = "09:00-17:00"\ncountry = "XX"',
        "cskpi.toml: [business_hours] country: the holidays package has no calendar for XX; "
        "use an ISO code such as US, DE or GB, or list the days in `holidays`",
        id="unknown-holiday-country",
    ),
    pytest.param(
        DIGEST + 'slack = { webhook_url = "env:ZD_TOKEN" }',
        "cskpi.toml: [digests.daily.slack] webhook_url: "
        "must be a URL such as https://hooks.slack.com/services/…",
        id="webhook-not-a-url",
    ),
    pytest.param(
        DIGEST + 'slack = { webhook_url = "hooks.slack.com/services/T0/B0/x" }',
        "cskpi.toml: [digests.daily.slack] webhook_url: "
        "must be a URL such as https://hooks.slack.com/services/…",
        id="webhook-without-scheme",
    ),
    pytest.param(
        DIGEST + 'slack = { webhook_url = "http://hooks.slack.com/services/T0/B0/x" }',
        "cskpi.toml: [digests.daily.slack] webhook_url: is plain http://; use https:// "
        "(http:// only to 127.0.0.1 or localhost)",
        id="webhook-in-plain-http",
    ),
    pytest.param(
        DIGEST
        + 'slack = { token = "xoxb-1234", channel = "#s", base_url = "http://slack.com/api/" }',
        "cskpi.toml: [digests.daily.slack] base_url: is plain http://; use https:// "
        "(http:// only to 127.0.0.1 or localhost)",
        id="slack-api-in-plain-http",
    ),
    pytest.param(
        DIGEST + 'email = { to = ["a@b.c"], smtp_url = "smtp://h",\n  from = "a@b.c" }',
        "cskpi.toml: line 3: invalid TOML: an inline table { … } must stay on one line; put it "
        "on one line or write it as a [table] of its own "
        "(Invalid initial character for a key part)",
        id="multi-line-inline-table",
    ),
    pytest.param(
        '[digests.daily]\nschedule = "0 9 * * *"\nslack = { channel = "#x", token = "env:T",\n}',
        "cskpi.toml: line 3: invalid TOML: an inline table { … } must stay on one line; put it "
        "on one line or write it as a [table] of its own "
        "(Invalid initial character for a key part)",
        id="inline-table-with-a-hash-in-a-string",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
@pytest.mark.usefixtures("token")
def test_errors(text: str, expected: str) -> None:
    assert _error(text) == expected


@pytest.mark.parametrize("text", ["", 'timezone = "UTC"\n', DIGEST])
def test_a_config_without_connectors_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(text), TYPES)
    assert info.value.lines == [
        "cskpi.toml: no connectors configured; add a [connectors.NAME] table "
        "(`cskpi connectors list` shows the types)"
    ]


def test_a_utf8_byte_order_mark_is_accepted(token: str) -> None:
    Path("cskpi.toml").write_bytes(b"\xef\xbb\xbf" + ACME.encode())
    config = load_config(Path("cskpi.toml"), TYPES)
    assert list(config.connectors) == ["acme"]


@pytest.mark.usefixtures("token")
def test_no_keyring_backend() -> None:
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]
    assert _error(ACME.replace("env:ZD_TOKEN", "keyring:acme")) == (
        "cskpi.toml: [connectors.acme] api_token: "
        "no keyring backend is available on this machine; use env:VAR or file:PATH instead"
    )


def test_no_connector_types_installed() -> None:
    assert _error(ACME, types={}) == (
        "cskpi.toml: [connectors.acme] type: unknown connector type 'fakedesk'; installed: none"
    )


def test_missing_file_names_it_and_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Path("nope.toml"), TYPES)
    assert str(info.value) == "nope.toml: no such config file; `cskpi init` writes one"


def test_error_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "my.toml"
    path.parent.mkdir()
    path.write_text(_with_a_connector("bogus = 1\n"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, TYPES)
    assert str(info.value) == f"{path}: bogus: unknown key"


# --- secrets never leak through an error ------------------------------------------------


class LeakySettings(ConnectorSettings):
    """A careless third-party connector whose validators quote what they reject."""

    api_token: Secret
    account: str = "main"
    retries: int = 3

    @field_validator("account")
    @classmethod
    def _quote(cls, value: str) -> str:
        raise ValueError(f"account {value} is not valid")

    @model_validator(mode="after")
    def _quote_token(self) -> LeakySettings:
        if self.account == "never":
            return self
        raise ValueError(f"token {self.api_token.get_secret_value()} is not accepted")


class Leaky(FakeConnector):
    type: ClassVar[str] = "leaky"
    Settings = LeakySettings


@pytest.mark.parametrize(
    "table",
    [
        # a validator quoting the rejected value: a password pasted into the wrong key
        'account = "pasted-password-9876"\napi_token = "env:ZD_TOKEN"',
        # a validator quoting the resolved secret from another field
        f'api_token = "{TOKEN}"',
        # a secret put where a number belongs
        f'api_token = "env:ZD_TOKEN"\nretries = "{TOKEN}"',
    ],
)
def test_secret_never_appears_in_a_config_error(table: str, token: str) -> None:
    message = _error(f'[connectors.acme]\ntype = "leaky"\n{table}\n', {"leaky": Leaky})
    assert message.startswith("cskpi.toml: [connectors.acme]")
    assert token not in message
    assert "pasted-password-9876" not in message


def test_smtp_password_in_url_is_refused_without_repeating_it() -> None:
    message = _error(
        DIGEST + 'email = { to = ["a@b.c"], smtp_url = "smtp://u:hunter22@h", from = "a@b.c" }'
    )
    assert message == (
        "cskpi.toml: [digests.daily.email] smtp_url: "
        "must not contain a password; put a reference in `password`"
    )


def test_pydantic_would_have_leaked_the_value() -> None:
    # Guards the test above: pydantic's own text does repeat the rejected input.
    class Model(BaseModel):
        n: int

    with pytest.raises(ValueError, match=TOKEN):
        Model.model_validate({"n": TOKEN})


# --- where the file is looked for -------------------------------------------------------


def test_find_explicit_path_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "given.toml").write_text("")
    (tmp_path / "env.toml").write_text("")
    (tmp_path / "cskpi.toml").write_text("")
    monkeypatch.setenv("CSKPI_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_path(tmp_path / "given.toml") == tmp_path / "given.toml"


def test_find_environment_before_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env.toml").write_text("")
    (tmp_path / "cskpi.toml").write_text("")
    monkeypatch.setenv("CSKPI_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_path(None) == tmp_path / "env.toml"


def test_find_working_directory_last(tmp_path: Path) -> None:
    (tmp_path / "cskpi.toml").write_text("")
    assert find_config_path(None).resolve() == tmp_path / "cskpi.toml"


def test_find_explicit_path_must_exist(tmp_path: Path) -> None:
    (tmp_path / "cskpi.toml").write_text("")
    with pytest.raises(ConfigError) as info:
        find_config_path(Path("missing.toml"))
    assert str(info.value) == "missing.toml: no such config file (given with --config)"


def test_find_environment_path_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cskpi.toml").write_text("")
    monkeypatch.setenv("CSKPI_CONFIG", "missing.toml")
    with pytest.raises(ConfigError) as info:
        find_config_path(None)
    assert str(info.value) == "missing.toml: no such config file (named by $CSKPI_CONFIG)"


def test_find_nothing_says_what_was_tried() -> None:
    with pytest.raises(ConfigError) as info:
        find_config_path(None)
    assert str(info.value) == (
        "no config file: no --config given, $CSKPI_CONFIG is not set and there is no "
        "./cskpi.toml; `cskpi init` writes one"
    )


# --- the shipped example ----------------------------------------------------------------


def test_example_config_loads() -> None:
    from cskpi.connectors.demo.connector import DemoConnector, DemoSettings

    config = load_config(ROOT / "config.example.toml", {"demo": DemoConnector})
    assert list(config.connectors) == ["try-it"]
    demo = config.connectors["try-it"]
    assert isinstance(demo, DemoSettings)
    assert (demo.type, demo.tickets, demo.days, demo.seed) == ("demo", 5000, 90, 1)
    assert config.database == f"sqlite:///{ROOT / 'cskpi.db'}"
    assert config.business_hours is not None
    assert config.sla is not None
    assert list(config.digests) == ["daily"]


@pytest.mark.parametrize(
    "model",
    [
        Config,
        BusinessHours,
        Sla,
        PriorityTargets,
        KpiSettings,
        Costs,
        DigestSettings,
        SlackTarget,
        EmailTarget,
        ReportSettings,
        StaffingSettings,
        AlertSettings,
    ],
)
def test_example_config_documents_every_key(model: type[BaseModel]) -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    for name, field in model.model_fields.items():
        if name in ("path", "connectors", "digests", "reports", "alerts"):
            continue
        key = field.alias or name
        documented = f"{key} =" in text or f"[{key}]" in text
        assert documented, f"config.example.toml does not mention {model.__name__}.{key}"
