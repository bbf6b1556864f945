"""The ``[targets]`` table: a goal per KPI, such as ``csat = ">= 85%"`` or
``first_response_time = "<= 2h"`` (seed 002: "set realistic, measurable goals").

A target is a comparison and a number in the KPI's own unit: a percentage for a rate, a
duration for a time, a plain number for a count or score. Each KPI's unit is known from its
key (``target_unit``), so a target in the wrong unit (``csat = "<= 2h"``) is an error when
the config is read, not a silently missed goal in every digest.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cskpi.core.config.timespec import TimespecError, parse_duration

Unit = Literal["%", "s", "number"]

# KPIs whose value is a split (counts by bucket, stages) rather than one number.
SPLIT_KPIS = frozenset({
    "backlog_age", "submissions_by_hour", "resolution_stages", "time_in_status", "touches",
    "first_response_distribution", "resolution_distribution", "awaiting_reply",
})  # fmt: skip
_PERCENT = frozenset({"csat", "cost_revenue_ratio", "churn_rate", "csat_response_rate"})
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_FORM = re.compile(r"\s*((?>>=|<=|>|<))\s*(\S.*?)\s*", re.DOTALL)  # atomic: "<=" never "<", "="
_DURATION_FORM = 'is a duration KPI: write the target like "<= 2h" or "<= 1h30m"'
_SIGNS = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


def target_unit(key: str) -> Unit:
    """The unit of a KPI's headline value, by its key's naming (docs/kpis.md)."""
    if key in _PERCENT or key.endswith("_rate") or key.startswith("sla_"):
        return "%"
    if key.endswith("_time") or key.endswith("_time_business"):
        return "s"
    return "number"


@dataclass(frozen=True)
class Target:
    op: str  # >=, <=, > or <
    value: float  # in the KPI's unit: percent, seconds or a plain number
    text: str  # as written, e.g. ">= 85%"

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target; None when there is no value to judge."""
        return None if value is None else _OPERATORS[self.op](float(value), self.value)

    @property
    def label(self) -> str:
        """``≥ 85%``, ``≤ 2h``: how a digest line shows it."""
        return f"{_SIGNS[self.op]} {self.text.strip()[len(self.op) :].strip()}"


def parse_target(key: str, text: str) -> Target:
    """The target for KPI ``key`` from its config text; ValueError saying what is wrong."""
    if key in SPLIT_KPIS:
        raise ValueError("this KPI is a split of counts, with no single value to set a target on")
    match = _FORM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError('must be a comparison and a number, e.g. ">= 85%", "<= 2h" or "<= 120"')
    op, number = match.groups()
    unit = target_unit(key)
    if unit == "%":
        if not number.endswith("%"):
            raise ValueError('is a percentage KPI: write the target like ">= 85%"')
        return Target(op, _number(number[:-1]), text)
    if unit == "s":
        try:
            return Target(op, parse_duration(number).total_seconds(), text)
        except TimespecError:
            raise ValueError(
                'is a duration KPI: write the target like "<= 2h" or "<= 1h30m"'
            ) from None
    return Target(op, _number(number), text)


def _number(text: str) -> float:
    """The number, thousands commas allowed; nan and infinity are no goal to meet."""
    try:
        number = float(text.replace(",", "").strip())
    except ValueError:
        number = math.nan  # refused below, in the same words
    if not math.isfinite(number):
        raise ValueError('must end in a number, e.g. "<= 120"')
    return number
