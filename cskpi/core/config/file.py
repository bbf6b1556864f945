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
    DEFAULT_DIGEST_KPIS,
    DIMENSIONS,
    KPI_KEYS,
    PERIODS,
    BusinessHours,
    Compare,
    Costs,
    DigestSettings,
    Dimension,
    EmailTarget,
    KpiSettings,
    PriorityTargets,
    Sla,
    SlackTarget,
)
from cskpi.core.config.timespec import TimespecError, parse_duration, validate_cron

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_DIGEST_KPIS",
    "DIMENSIONS",
    "KPI_KEYS",
    "PERIODS",
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
    "Sla",
    "SlackTarget",
    "absolute_database_url",
    "find_config_path",
    "load_config",
]

DEFAULT_DATABASE = "sqlite:///cskpi.db"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = "a name must start with a letter or digit and use only letters, digits, _ . -"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"(.*) \(at line (\d+), column \d+\)", re.DOTALL)
_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


class ConfigError(Exception):
    """An invalid or missing config; ``str()`` is one line naming file, table, key and reason."""


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
    digests: dict[Annotated[str, AfterValidator(_name)], DigestSettings] = {}

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
    """Read and validate ``path``; :class:`ConfigError` on anything wrong."""
    shown = str(path)
    raw = _read_toml(path, shown)
    top = {key: value for key, value in raw.items() if key != "connectors"}
    if "path" in top:
        raise ConfigError(f"{shown}: path: {_REASONS['extra_forbidden']}")
    top.setdefault("database", DEFAULT_DATABASE)
    if isinstance(top["database"], str):
        top["database"] = absolute_database_url(top["database"], path.resolve().parent)
    try:
        config = Config.model_validate({**top, "path": path.resolve()})
    except ValidationError as exc:
        raise _config_error(shown, exc, raw) from None
    if config.sla is not None and config.sla.business_hours and config.business_hours is None:
        raise ConfigError(f"{shown}: [sla] business_hours: true needs a [business_hours] table")
    connectors = _connectors(raw.get("connectors", {}), connector_types, config, shown, raw)
    return config.model_copy(update={"connectors": connectors})


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
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such config file; `cskpi init` writes one") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: invalid TOML: the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.fullmatch(str(exc))
        where = f" line {match[2]}:" if match else ""
        reason = match[1] if match else str(exc)
        raise ConfigError(f"{shown}:{where} invalid TOML: {reason}") from None


# --- connectors -------------------------------------------------------------------------


def _connectors(
    tables: object,
    types: Mapping[str, ConnectorFactory],
    config: Config,
    shown: str,
    raw: dict[str, Any],
) -> dict[str, ConnectorSettings]:
    if not isinstance(tables, dict):
        raise ConfigError(f"{shown}: connectors: must be a table of [connectors.NAME] tables")
    result = {}
    for name, table in tables.items():
        try:
            result[name] = _connector(name, table, types, config)
        except ValidationError as exc:
            raise _config_error(shown, exc, raw, ("connectors", name)) from None
        except _KeyError as exc:
            loc = ("connectors", name) if exc.key is None else ("connectors", name, exc.key)
            raise ConfigError(f"{shown}: {_locate(loc, raw)}: {exc.reason}") from None
    return result


class _KeyError(Exception):
    """A problem with one key of a connector table (``key`` None: the table itself)."""

    def __init__(self, key: str | None, reason: str) -> None:
        super().__init__(key, reason)
        self.key, self.reason = key, reason


def _connector(
    name: str, table: object, types: Mapping[str, ConnectorFactory], config: Config
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
    settings = types[kind].Settings.model_validate(table)
    return _timing(settings, config)


def _timing(settings: ConnectorSettings, config: Config) -> ConnectorSettings:
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
        zoned = start if start.tzinfo is not None else start.replace(tzinfo=config.timezone)
        update["start_date"] = zoned.astimezone(UTC)
    return settings.model_copy(update=update) if update else settings


def _positive_duration(key: str, value: str | None) -> None:
    try:
        if value is not None and parse_duration(value) <= timedelta(0):
            raise _KeyError(key, "must be longer than zero")
    except TimespecError as exc:
        raise _KeyError(key, exc.reason) from None


# --- error messages ---------------------------------------------------------------------


def _config_error(
    shown: str, exc: ValidationError, raw: dict[str, Any], prefix: tuple[str, ...] = ()
) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = _locate((*prefix, *first["loc"]), raw)
    # An item's error also fails its container (a length check, say): one mistake, one count.
    others = [e for e in errors[1:] if e["loc"] != first["loc"][: len(e["loc"])]]
    more = f" (and {len(others)} more)" if others else ""
    return ConfigError(f"{shown}: {where + ': ' if where else ''}{_reason(first)}{more}")


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
