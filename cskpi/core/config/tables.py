"""The models of the config file's own tables: ``[business_hours]``, ``[sla]``, ``[kpis]``,
``[costs]``, ``[digests.NAME]`` with its Slack and email targets, ``[reports.NAME]``,
``[staffing]`` and ``[alerts.NAME]``, and the KPI, period and dimension names they accept.

They are apart from ``file.py`` because they say what a valid table holds, while
``file.py`` reads the file, validates the connector tables against each plugin's own
``Settings`` and turns any failure into a message naming file, table and key. Import them
from ``cskpi.core.config.file``, which re-exports them with the top-level :class:`Config`.
"""

from __future__ import annotations

import re
import string
from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Self, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    SecretStr,
    StrictBool,
    ValidationInfo,
    create_model,
    model_validator,
)

from cskpi.core.config.hosts import plain_http_elsewhere
from cskpi.core.config.secrets import Secret
from cskpi.core.config.targets import Target, parse_target
from cskpi.core.config.timespec import (
    CronExpression,
    DayHours,
    Duration,
    OpenHours,
    PositiveDuration,
    TimespecError,
    parse_duration,
)

KPI_KEYS: tuple[str, ...] = (
    "tickets_created", "tickets_solved", "backlog", "backlog_change", "backlog_age",
    "first_response_time", "first_response_time_business", "response_time",
    "resolution_time", "resolution_time_business", "fcr_rate", "reopen_rate",
    "escalation_rate", "sla_first_response", "sla_resolution", "csat", "nps", "ces",
    "agent_replies_per_solved", "submissions_by_hour", "cost_per_ticket",
    "cost_revenue_ratio", "churn_rate",
    # SPEC §6, in its table's order
    "first_resolution_time", "first_resolution_time_business", "resolution_stages",
    "time_in_status", "reassignment_rate", "touches", "first_response_distribution",
    "resolution_distribution", "esat", "public_replies", "internal_notes", "tickets_touched",
    "active_agents", "awaiting_reply", "unique_customers", "repeat_contact_rate",
    "backlog_time_to_clear",
    # SPEC §7, kept last (cskpi/core/kpis/native.py)
    "handle_time", "csat_response_rate",
)  # fmt: skip
DEFAULT_DIGEST_KPIS: tuple[str, ...] = (
    "tickets_created", "tickets_solved", "backlog", "first_response_time",
    "resolution_time", "fcr_rate", "csat", "sla_first_response",
)  # fmt: skip
PERIODS: tuple[str, ...] = (
    "today", "yesterday", "last-7d", "last-30d", "this-week", "last-week", "this-month",
    "last-month",
)  # fmt: skip

Dimension = Literal[
    "agent", "group", "channel", "type", "priority", "tag", "connector", "organization"
]
Compare = Literal["previous", "same-period-last-week", "none"]
DIMENSIONS: tuple[str, ...] = get_args(Dimension)
WhereDimension = Literal[
    "agent", "group", "channel", "type", "priority", "tag", "connector", "organization", "status"
]


class _Model(BaseModel):
    """A config table: an unknown key is an error, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- [business_hours] -------------------------------------------------------------------


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError("must be a two-letter ISO country code such as US or DE")
    import holidays  # only a config that names a country pays for the import

    if value.upper() not in holidays.list_supported_countries():
        raise ValueError(
            f"the holidays package has no calendar for {value.upper()}; use an ISO code such "
            "as US, DE or GB, or list the days in `holidays`"
        )
    return value.upper()


class BusinessHours(_Model):
    timezone: ZoneInfo  # defaults to the top-level timezone (filled in by Config)
    mon: DayHours = ()
    tue: DayHours = ()
    wed: DayHours = ()
    thu: DayHours = ()
    fri: DayHours = ()
    sat: DayHours = ()
    sun: DayHours = ()
    holidays: tuple[date, ...] = ()
    country: Annotated[str, AfterValidator(_country)] | None = None

    @model_validator(mode="after")
    def _some_day_open(self) -> Self:
        if not any(self.week):
            raise ValueError('no day has opening hours; give e.g. mon = "09:00-17:00"')
        return self

    @property
    def week(self) -> tuple[tuple[OpenHours, ...], ...]:
        """Opening intervals by weekday, Monday first (``week[date.weekday()]``)."""
        return (self.mon, self.tue, self.wed, self.thu, self.fri, self.sat, self.sun)


# --- [sla], [kpis], [costs] -------------------------------------------------------------


class PriorityTargets(_Model):
    urgent: PositiveDuration | None = None
    high: PositiveDuration | None = None
    normal: PositiveDuration | None = None
    low: PositiveDuration | None = None

    def target(self, priority: str | None) -> timedelta | None:
        """The target for a normalised priority; ``None`` when there is none."""
        targets = {"urgent": self.urgent, "high": self.high, "normal": self.normal, "low": self.low}
        return targets.get(priority) if priority is not None else None


class Sla(_Model):
    first_response: PriorityTargets = PriorityTargets()
    resolution: PriorityTargets = PriorityTargets()
    business_hours: bool = False


class KpiSettings(_Model):
    escalation_tags: tuple[str, ...] = ("escalated",)
    # how long after a solve a new ticket from the same requester is a repeat contact (§6)
    repeat_window: PositiveDuration = timedelta(days=7)


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError("must be a three-letter ISO currency code such as USD or EUR")
    return value.upper()


def _target(value: object, info: ValidationInfo) -> Target | None:
    if value is None or isinstance(value, Target):
        return value
    if not isinstance(value, str):
        raise ValueError('must be a string such as ">= 85%" or "<= 2h"')
    assert info.field_name is not None
    return parse_target(info.field_name, value)


class TargetsBase(_Model):
    """``[targets]``: one optional goal per KPI key (``config/targets.py``)."""

    def get(self, key: str) -> Target | None:
        target = getattr(self, key, None)
        return target if isinstance(target, Target) else None


_TargetField = Annotated[Target | None, BeforeValidator(_target)]
# One field per KPI, so an error names its key and an unknown key is refused as elsewhere.
if TYPE_CHECKING:
    Targets = TargetsBase
else:
    Targets = create_model(
        "Targets", __base__=TargetsBase, **dict.fromkeys(KPI_KEYS, (_TargetField, None))
    )


class Costs(_Model):
    monthly_support_cost: NonNegativeFloat
    monthly_revenue: PositiveFloat | None = None
    currency: Annotated[str, AfterValidator(_currency)] = "USD"


# --- [digests.NAME] ---------------------------------------------------------------------


def _kpi_key(value: str) -> str:
    if value not in KPI_KEYS:
        raise ValueError(f"unknown KPI; known: {', '.join(KPI_KEYS)}")
    return value


def _values(value: Any) -> Any:
    """A ``where`` value: one string, or a list of them (OR)."""
    return [value] if isinstance(value, str) else value


WhereValues = Annotated[
    tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_values), Field(min_length=1)
]


def _period(value: str) -> str:
    if value in (*PERIODS, "since-last") or re.fullmatch(r"[1-9]\d*d", value):
        return value
    raise ValueError(
        "must be one of today, yesterday, last-7d, last-30d, Nd (e.g. 14d), "
        "this-week, last-week, this-month, last-month, since-last"
    )


def _address(value: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    if not (local and at and domain) or any(c.isspace() for c in value.strip()):
        raise ValueError("must be an email address")
    return value.strip()


def _smtp_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must look like smtp://host:587 (STARTTLS) or smtps://host:465")
    if parts.password is not None:
        raise ValueError("must not contain a password; put a reference in `password`")
    return value


Address = Annotated[str, AfterValidator(_address)]


_PLAIN_HTTP = "is plain http://; use https:// (http:// only to 127.0.0.1 or localhost)"


def _webhook(value: SecretStr | None) -> SecretStr | None:
    # The URL is a secret: the message never repeats it.
    parts = urlsplit(value.get_secret_value()) if value is not None else None
    if parts is not None and (parts.scheme not in ("https", "http") or not parts.hostname):
        raise ValueError("must be a URL such as https://hooks.slack.com/services/…")
    if value is not None and plain_http_elsewhere(value.get_secret_value()):
        raise ValueError(_PLAIN_HTTP)
    return value


def _api_url(value: str) -> str:
    if plain_http_elsewhere(value):
        raise ValueError(_PLAIN_HTTP)
    return value


class SlackTarget(_Model):
    webhook_url: Annotated[Secret | None, AfterValidator(_webhook)] = None
    token: Secret | None = None
    channel: str | None = None
    base_url: Annotated[str, AfterValidator(_api_url)] = "https://slack.com/api/"

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("give either webhook_url, or token and channel")
        if self.token is not None and not self.channel:
            raise ValueError('token needs a channel, e.g. channel = "#support"')
        if self.webhook_url is not None and self.channel is not None:
            raise ValueError("channel applies to token only; a webhook posts to its own channel")
        return self


class EmailTarget(_Model):
    to: Annotated[tuple[Address, ...], Field(min_length=1)]
    smtp_url: Annotated[str, AfterValidator(_smtp_url)]
    from_: Address = Field(alias="from")
    username: str | None = None
    password: Secret | None = None


class DigestSettings(_Model):
    schedule: CronExpression
    period: Annotated[str, AfterValidator(_period)] = "yesterday"
    compare: Compare = "previous"
    kpis: Annotated[tuple[Annotated[str, AfterValidator(_kpi_key)], ...], Field(min_length=1)] = (
        DEFAULT_DIGEST_KPIS
    )
    by: Dimension | None = None
    # like --where: DIM = "VALUE" or ["VALUE", ...]; values OR, dimensions AND
    where: dict[WhereDimension, WhereValues] = Field(default_factory=dict)
    slack: SlackTarget | None = None
    email: EmailTarget | None = None
    grace: Duration = timedelta(hours=6)
    attach_report: str | None = None  # a [reports.NAME] to attach to the email
    # the optional sections (SPEC §6): the top 5 unhappy ratings by mrr, the accounts at risk
    unhappy: StrictBool = False
    at_risk: StrictBool = False


# --- [reports.NAME] ---------------------------------------------------------------------

OUT_PLACEHOLDERS = ("name", "from", "to")


def _report_period(value: str) -> str:
    if value in PERIODS or re.fullmatch(r"[1-9]\d*d", value):
        return value
    raise ValueError(
        "must be one of today, yesterday, last-7d, last-30d, Nd (e.g. 14d), this-week, "
        "last-week, this-month, last-month"
    )


def _out_pattern(value: str) -> str:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError:
        raise ValueError("is not a valid pattern; write a literal { or } as {{ or }}") from None
    if unknown := [f for f in fields if f not in OUT_PLACEHOLDERS]:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {{name}}, {{from}}, {{to}}")
    if not value.strip():
        raise ValueError("must name a file, e.g. reports/{name}-{from}.html")
    return value


class ReportSettings(_Model):
    """A report written on a schedule by `cskpi run` (README: Reports)."""

    schedule: CronExpression
    period: Annotated[str, AfterValidator(_report_period)] = "last-7d"
    out: Annotated[str, AfterValidator(_out_pattern)] = "reports/{name}-{from}.html"
    by: Dimension | None = None
    connectors: tuple[str, ...] = ()
    # as a digest's: DIM = "VALUE" or ["VALUE", ...]; values OR, dimensions AND (--where)
    where: dict[WhereDimension, WhereValues] = Field(default_factory=dict)


# --- [staffing] -------------------------------------------------------------------------

_TARGET = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s+in\s+(\S+)\s*")


class ServiceTarget(NamedTuple):
    share: float  # 0.8 for "80%"
    seconds: float  # the answer time: 60 for "60s"


def _service_target(value: object) -> ServiceTarget:
    if isinstance(value, ServiceTarget):
        return value
    match = _TARGET.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError('must look like "80% in 60s": a share answered within a time')
    share = float(match[1])
    if not 0 < share < 100:
        raise ValueError("the share must be above 0% and below 100%")
    try:
        seconds = parse_duration(match[2]).total_seconds()
    except TimespecError as exc:
        raise ValueError(f"the answer time: {exc.reason}") from None
    if seconds <= 0:
        raise ValueError("the answer time must be longer than zero")
    return ServiceTarget(share / 100, seconds)


class StaffingSettings(_Model):
    """How `cskpi staffing` turns arrivals into agents (SPEC §8, docs/planning.md). ``aht``
    unset: the vendors' median handle time where stored, else 8 minutes."""

    aht: PositiveDuration | None = None
    target: Annotated[ServiceTarget, BeforeValidator(_service_target)] = ServiceTarget(0.8, 60.0)
    shrinkage: Annotated[float, Field(ge=0, lt=1)] = 0.3
    max_occupancy: Annotated[float, Field(gt=0, le=1)] = 0.85


# --- [alerts.NAME] ----------------------------------------------------------------------

ALERT_COUNTS: tuple[str, ...] = ("tickets_created", "tickets_solved", "backlog")
ALERT_MEASURES: tuple[str, ...] = (
    "first_response_time", "first_response_time_business", "resolution_time",
    "resolution_time_business", "response_time", "fcr_rate", "reopen_rate",
    "escalation_rate", "sla_first_response", "sla_resolution", "csat",
)  # fmt: skip


def _alert_kpi(value: str) -> str:
    if value not in (*ALERT_COUNTS, *ALERT_MEASURES):
        raise ValueError(
            f"no alert for this KPI; use one of {', '.join(ALERT_COUNTS + ALERT_MEASURES)}"
        )
    return value


class AlertSettings(_Model):
    kpi: Annotated[str, AfterValidator(_alert_kpi)]
    by: Dimension | None = None
    # as a digest's: only these tickets (and their ratings) are counted and measured
    where: dict[WhereDimension, WhereValues] = Field(default_factory=dict)
    interval: Literal["hour", "day"] = "day"
    baseline_weeks: Annotated[int, Field(ge=2, le=52)] = 8
    z: PositiveFloat = 3.0
    min_count: Annotated[int, Field(ge=0)] = 10
    slack: SlackTarget | None = None
    email: EmailTarget | None = None
