"""The config file: TOML read with tomllib, validated into frozen pydantic models.

Each ``[connectors.NAME]`` table is validated by its connector type's own ``Settings``, so an
error names the file, the table and the key. Error messages are built from where the error
is and what is wrong, never from the offending value, so a secret cannot leak through one.

This module is the loader and the top-level :class:`Config`; the models of the other tables
live in ``tables.py`` and are re-exported here, so ``cskpi.core.config.file`` stays the
one import for the whole config.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from cskpi.connectors.base import ConnectorFactory, ConnectorSettings
from cskpi.core.config.secrets import redact, register_secret
from cskpi.core.config.tables import (
    ALERT_COUNTS,
    ALERT_MEASURES,
    DEFAULT_DIGEST_KPIS,
    DIMENSIONS,
    KPI_KEYS,
    PERIODS,
    AlertSettings,
    BusinessHours,
    Compare,
    Costs,
    DigestSettings,
    Dimension,
    EmailTarget,
    KpiSettings,
    PriorityTargets,
    ReportSettings,
    ServiceTarget,
    Sla,
    SlackTarget,
    StaffingSettings,
    Targets,
)
from cskpi.core.config.timespec import TimespecError, parse_duration, validate_cron

__all__ = [
    "ALERT_COUNTS",
    "ALERT_MEASURES",
    "DEFAULT_DATABASE",
    "DEFAULT_DIGEST_KPIS",
    "DIMENSIONS",
    "KPI_KEYS",
    "PERIODS",
    "AlertSettings",
    "BusinessHours",
    "Compare",
    "Config",
    "ConfigError",
    "Costs",
    "DigestSettings",
    "Dimension",
    "EmailTarget",
    "KpiSettings",
    "PriorityTargets",
    "ReportSettings",
    "ServiceTarget",
    "Sla",
    "SlackTarget",
    "StaffingSettings",
    "absolute_database_url",
    "find_config_path",
    "load_config",
]

DEFAULT_DATABASE = "sqlite:///cskpi.db"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = "a name must start with a letter or digit and use only letters, digits, _ . -"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"(.*) \(at line (\d+), column \d+\)", re.DOTALL)
NO_CONNECTORS = (
    "no connectors configured; add a [connectors.NAME] table (`cskpi connectors list` "
    "shows the types)"
)
_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


class ConfigError(Exception):
    """An invalid or missing config: ``lines`` holds every problem found, each one line naming
    file, table, key and reason; ``str()`` joins them with newlines."""

    def __init__(self, lines: str | list[str]) -> None:
        self.lines = [lines] if isinstance(lines, str) else lines
        super().__init__("\n".join(self.lines))


def _database(value: str) -> str:
    if "://" not in value:
        raise ValueError(
            'must be a SQLAlchemy URL: "sqlite:///" and a file path, or e.g. postgresql://host/db'
        )
    return value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(_NAME_RULE)
    return value


# --- the whole file ---------------------------------------------------------------------


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # as every table (config_tables._Model)

    path: Path
    timezone: ZoneInfo = ZoneInfo("UTC")
    database: Annotated[str, AfterValidator(_database)] = DEFAULT_DATABASE
    connectors: dict[str, SerializeAsAny[ConnectorSettings]] = {}
    business_hours: BusinessHours | None = None
    sla: Sla | None = None
    kpis: KpiSettings = KpiSettings()
    costs: Costs | None = None
    targets: Targets = Targets()
    digests: dict[Annotated[str, AfterValidator(_name)], DigestSettings] = {}
    reports: dict[Annotated[str, AfterValidator(_name)], ReportSettings] = {}
    staffing: StaffingSettings | None = None
    alerts: dict[Annotated[str, AfterValidator(_name)], AlertSettings] = {}

    @model_validator(mode="before")
    @classmethod
    def _business_timezone(cls, data: Any) -> Any:
        hours = data.get("business_hours") if isinstance(data, dict) else None
        if isinstance(hours, dict) and "timezone" not in hours:
            return {**data, "business_hours": {**hours, "timezone": data.get("timezone", "UTC")}}
        return data


def find_config_path(explicit: Path | None) -> Path:
    """``--config``, else ``$CSKPI_CONFIG``, else ``./cskpi.toml``; the first given must exist."""
    if explicit is not None:
        if explicit.is_file():
            return explicit
        raise ConfigError(f"{explicit}: no such config file (given with --config)")
    named = os.environ.get("CSKPI_CONFIG")
    if named:
        if Path(named).expanduser().is_file():
            return Path(named).expanduser()
        raise ConfigError(f"{named}: no such config file (named by $CSKPI_CONFIG)")
    local = Path("cskpi.toml")
    if local.is_file():
        return local
    raise ConfigError(
        "no config file: no --config given, $CSKPI_CONFIG is not set and there "
        "is no ./cskpi.toml; `cskpi init` writes one"
    )


def load_config(path: Path, connector_types: Mapping[str, ConnectorFactory]) -> Config:
    """Read and validate ``path``; :class:`ConfigError` listing everything wrong."""
    shown = str(path)
    raw = _read_toml(path, shown)
    errors: list[str] = []
    top = {key: value for key, value in raw.items() if key not in ("connectors", "path")}
    if "path" in raw:
        errors.append(f"{shown}: path: {_REASONS['extra_forbidden']}")
    top.setdefault("database", DEFAULT_DATABASE)
    if isinstance(top["database"], str):
        top["database"] = absolute_database_url(top["database"], path.resolve().parent)
    base = path.resolve().parent  # file: secrets are relative to it, like the database
    config: Config | None = None
    try:
        config = Config.model_validate({**top, "path": path.resolve()}, context={"base": base})
    except ValidationError as exc:
        errors.extend(_config_errors(shown, exc, raw))
    if config and config.sla and config.sla.business_hours and config.business_hours is None:
        errors.append(f"{shown}: [sla] business_hours: true needs a [business_hours] table")
    timezone = config.timezone if config else ZoneInfo("UTC")
    found = raw.get("connectors", {})
    connectors = _connectors(found, connector_types, timezone, base, shown, raw)
    errors.extend(connectors.errors)
    if config is not None:
        errors.extend(_report_references(config, shown, found))
    if errors:
        raise ConfigError(errors)
    assert config is not None
    return config.model_copy(update={"connectors": connectors.settings})


def _report_references(config: Config, shown: str, connectors: object) -> list[str]:
    """A digest's ``attach_report`` names a report; a report's ``connectors`` are configured."""
    errors = []
    reports = ", ".join(config.reports) or "none"
    for name, digest in config.digests.items():
        if digest.attach_report is not None and digest.attach_report not in config.reports:
            missing = digest.attach_report
            errors.append(f"{shown}: [digests.{name}] attach_report: no [reports.{missing}] "
                          f"table; configured reports: {reports}")  # fmt: skip
    known = connectors if isinstance(connectors, dict) else {}
    for name, report in config.reports.items():
        if unknown := [c for c in report.connectors if c not in known]:
            errors.append(f"{shown}: [reports.{name}] connectors: no connector named "
                          f"{unknown[0]!r}; configured: {', '.join(known) or 'none'}")  # fmt: skip
    return errors


def absolute_database_url(url: str, base: Path) -> str:
    """Make a relative SQLite path absolute against ``base`` (the config file's folder)."""
    if password := urlsplit(url).password:
        register_secret(password)
    prefix, sep, rest = url.partition(":///")
    if not sep or prefix.split("+")[0] != "sqlite":
        return url
    file, question, query = rest.partition("?")
    if file in ("", ":memory:") or file.startswith("file:"):
        return url
    resolved = Path(file).expanduser()
    if not resolved.is_absolute():
        resolved = base / resolved
    return f"{prefix}:///{resolved}{question}{query}"


def _read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such config file; `cskpi init` writes one") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    try:
        # Windows editors save UTF-8 with a byte-order mark; TOML itself does not allow one.
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: invalid TOML: the file is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_error(shown, str(exc), text)) from None


def _toml_error(shown: str, message: str, text: str) -> str:
    match = _TOML_POSITION.fullmatch(message)
    if not match:
        return f"{shown}: invalid TOML: {message}"
    reason, line = match[1], int(match[2])
    source = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", source).split("#")[0]
    if unquoted.count("{") > unquoted.count("}"):
        reason = (
            "an inline table { … } must stay on one line; put it on one line or write it "
            f"as a [table] of its own ({reason})"
        )
    return f"{shown}: line {line}: invalid TOML: {reason}"


# --- connectors -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Connectors:
    settings: dict[str, ConnectorSettings]
    errors: list[str]


def _connectors(
    tables: object,
    types: Mapping[str, ConnectorFactory],
    timezone: ZoneInfo,
    base: Path,
    shown: str,
    raw: dict[str, Any],
) -> _Connectors:
    if not isinstance(tables, dict):
        return _Connectors(
            {}, [f"{shown}: connectors: must be a table of [connectors.NAME] tables"]
        )
    if not tables:
        return _Connectors({}, [f"{shown}: {NO_CONNECTORS}"])
    result, errors = {}, []
    for name, table in tables.items():
        try:
            result[name] = _connector(name, table, types, timezone, base)
        except ValidationError as exc:
            errors.extend(_config_errors(shown, exc, raw, ("connectors", name)))
        except _KeyError as exc:
            loc = ("connectors", name) if exc.key is None else ("connectors", name, exc.key)
            errors.append(f"{shown}: {_locate(loc, raw)}: {exc.reason}")
    return _Connectors(result, errors)


class _KeyError(Exception):
    """A problem with one key of a connector table (``key`` None: the table itself)."""

    def __init__(self, key: str | None, reason: str) -> None:
        super().__init__(key, reason)
        self.key, self.reason = key, reason


def _connector(
    name: str, table: object, types: Mapping[str, ConnectorFactory], timezone: ZoneInfo, base: Path
) -> ConnectorSettings:
    installed = ", ".join(sorted(types)) or "none"
    if not _NAME.fullmatch(name):
        raise _KeyError(None, f"bad connector name: {_NAME_RULE}")
    if not isinstance(table, dict):
        raise _KeyError(None, "must be a [connectors.NAME] table")
    kind = table.get("type")
    if kind is None:
        raise _KeyError("type", f"{_REASONS['missing']}; installed: {installed}")
    if not isinstance(kind, str):
        raise _KeyError("type", f"must be a string naming a connector type; installed: {installed}")
    if kind not in types:
        raise _KeyError("type", f"unknown connector type {kind!r}; installed: {installed}")
    settings = types[kind].Settings.model_validate(table, context={"base": base})
    return _timing(settings, timezone)


def _timing(settings: ConnectorSettings, timezone: ZoneInfo) -> ConnectorSettings:
    """Checks the keys every connector shares, and puts a naive start_date in the config zone."""
    if settings.schedule is not None and settings.every is not None:
        raise _KeyError("every", "give either schedule or every, not both")
    update: dict[str, Any] = {}
    try:
        if settings.schedule is not None:
            update["schedule"] = validate_cron(settings.schedule)
    except TimespecError as exc:
        raise _KeyError("schedule", exc.reason) from None
    for key in ("every", "longest_wait"):
        _positive_duration(key, getattr(settings, key))
    start = settings.start_date
    if start is not None:
        zoned = start if start.tzinfo is not None else start.replace(tzinfo=timezone)
        update["start_date"] = zoned.astimezone(UTC)
    return settings.model_copy(update=update) if update else settings


def _positive_duration(key: str, value: str | None) -> None:
    try:
        if value is not None and parse_duration(value) <= timedelta(0):
            raise _KeyError(key, "must be longer than zero")
    except TimespecError as exc:
        raise _KeyError(key, exc.reason) from None


# --- error messages ---------------------------------------------------------------------


def _config_errors(
    shown: str, exc: ValidationError, raw: dict[str, Any], prefix: tuple[str, ...] = ()
) -> list[str]:
    lines: list[str] = []
    errors = exc.errors(include_url=False)
    for error in errors:
        loc = error["loc"]
        # An item's error also fails its container (a length check, say): one mistake, one line.
        if any(other["loc"][: len(loc)] == loc and other["loc"] != loc for other in errors):
            continue
        where = _locate((*prefix, *loc), raw)
        line = f"{shown}: {where + ': ' if where else ''}{_reason(error)}"
        if line not in lines:
            lines.append(line)
    return lines


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden" and isinstance(error.get("input"), dict):
        return "unknown table"
    if kind in _REASONS:
        return str(_REASONS[kind])
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    if kind.startswith("zoneinfo"):
        return "unknown time zone; use an IANA name such as Europe/Berlin"
    message = str(error.get("ctx", {}).get("error", error["msg"]))
    value = error.get("input")
    if isinstance(value, str) and len(value) >= 4:
        # A third-party validator may quote the value it rejects; the value may be a secret.
        message = message.replace(value, "…")
    return redact(" ".join(message.split()))


def _locate(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """``[table.path] key`` for an error location, splitting where the TOML tables end."""
    if loc and loc[-1] == "[key]":  # pydantic's marker for a bad dict key: the table's name
        loc = loc[:-1]
    tables: list[str] = []
    node: Any = raw
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            break
        tables.append(str(part))
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[len(tables) :])
    table = ".".join(p if _BARE_KEY.fullmatch(p) else f'"{p}"' for p in tables)
    key = key.lstrip(".")
    return f"[{table}]{' ' if key else ''}{key}" if table else key
