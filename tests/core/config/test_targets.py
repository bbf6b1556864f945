"""``[targets]`` (config/targets.py) against a reference written here.

Two properties. A target written the documented way (a comparison, then a percentage for a
rate, a duration for a time, a number otherwise) parses to the value built with it, and
judges a value met exactly when the comparison holds. Any string at all, read from a config
file, is either a target with a finite value or one line naming the file, ``[targets]`` and
the key, with a reason from a fixed set (never the value written: it is not echoed). The unit
each KPI reports comes from ``test_kpis.UNITS``, which that test checks against the engine.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cskpi.connectors.registry import installed
from cskpi.core.config.file import KPI_KEYS, ConfigError, load_config
from cskpi.core.config.targets import Target, parse_target
from tests.core.kpis.test_kpis import UNITS

# The KPIs whose value is a split of counts or stages, not one number (docs/kpis.md).
SPLITS = {"backlog_age", "submissions_by_hour", "resolution_stages", "time_in_status", "touches",
          "first_response_distribution", "resolution_distribution", "awaiting_reply"}  # fmt: skip
JUDGED = sorted(set(KPI_KEYS) - SPLITS)
UNIT_OF = {key: unit if unit in ("%", "s") else "number" for key, unit in UNITS.items()}
HOLDS = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}  # fmt: skip
SIGN = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}
SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

SPLIT = "this KPI is a split of counts, with no single value to set a target on"
FORM = 'must be a comparison and a number, e.g. ">= 85%", "<= 2h" or "<= 120"'
PERCENT = 'is a percentage KPI: write the target like ">= 85%"'
DURATION = 'is a duration KPI: write the target like "<= 2h" or "<= 1h30m"'
NUMBER = 'must end in a number, e.g. "<= 120"'

SPACE = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def written(draw: st.DrawFn) -> tuple[str, str, str, float]:
    """(key, text, op, value): a target written as the docs show, and what it means."""
    key, op = draw(st.sampled_from(JUDGED)), draw(st.sampled_from(list(HOLDS)))
    unit = UNIT_OF[key]
    if unit == "s":
        letters = draw(st.lists(st.sampled_from(list(SECONDS)), min_size=1, unique=True))
        parts = [(draw(st.integers(0, 500)), letter) for letter in SECONDS if letter in letters]
        number = "".join(f"{n}{draw(st.sampled_from([u, u.upper()]))}" for n, u in parts)
        value = float(sum(n * SECONDS[u] for n, u in parts))
    else:
        quarters = draw(st.integers(-400, 4_000_000 if unit == "number" else 40_000))
        value = quarters / 4  # exact in binary, so no rounding question
        number = f"{value:,}" if draw(st.booleans()) else str(value)
        number = number.removesuffix(".0") if draw(st.booleans()) else number
        number += draw(st.sampled_from(["%", " %"])) if unit == "%" else ""
    text = f"{draw(SPACE)}{op}{draw(SPACE)}{number}{draw(SPACE)}"
    return key, text, op, value


@settings(max_examples=50, deadline=None)
@given(case=written(), probe=st.floats(-1e7, 1e7, allow_nan=False), edge=st.booleans())
def test_a_written_target_means_what_was_written(
    case: tuple[str, str, str, float], probe: float, edge: bool
) -> None:
    key, text, op, value = case
    target = parse_target(key, text)
    assert target == Target(op, value, text)
    assert target.label == f"{SIGN[op]} {text.strip()[len(op) :].strip()}"
    probe = value if edge else probe
    assert target.met(probe) is HOLDS[op](probe, value)
    assert target.met(None) is None


def reference(key: str, text: str) -> float | str:
    """The documented reading: the target's value, or the reason it is refused. A number is
    ASCII digits, optionally grouped by thousands with commas, with an optional sign and
    decimals; a duration is counts of w, d, h, m, s in that order (any case, spaces
    ignored)."""
    if key in SPLITS:
        return SPLIT
    body = text.strip()
    op = next((o for o in (">=", "<=", ">", "<") if body.startswith(o)), None)
    rest = body[len(op) :].strip() if op else ""
    if op is None or not rest:
        return FORM
    if UNIT_OF[key] == "s":
        compact = rest.lower().replace(" ", "")
        found = re.fullmatch(r"([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?", compact)
        if not compact or found is None:
            return DURATION
        return float(sum(int(p[:-1]) * SECONDS[p[-1]] for p in found.groups() if p))
    if UNIT_OF[key] == "%":
        if not rest.endswith("%"):
            return PERCENT
        rest = rest[:-1].strip()
    if not re.fullmatch(r"[+-]?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?", rest):
        return NUMBER
    return float(Decimal(rest.replace(",", "")))


def adversarial() -> st.SearchStrategy[str]:
    """Strings near the grammar (its own characters shuffled, a valid target with junk around
    it) and anything at all."""
    near = st.text(alphabet=" \t<>=%0123456789.,-+_eEinfaINFwdhmsWDHMS#'\"\\\n", max_size=14)
    pieces = [">=", "<=", ">", "<", "=", " ", "%", "nan", "inf", "Infinity", "1e400", "7", "0.5",
              ",", "_", "-", "h", "30m", "9" * 25, "w", "٣", "\u00a0"]  # fmt: skip
    tokens = st.lists(st.sampled_from(pieces), max_size=6).map("".join)
    valid = written().map(lambda case: case[1])
    junk = st.tuples(near, valid, near).map("".join)
    anything = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
    return st.one_of(near, tokens, valid, junk, anything)


def toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` exactly (JSON's escapes, DEL escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def loaded(key: str, text: str) -> Target | str:
    """The target a config file with ``key = text`` in ``[targets]`` gives, or its error."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cskpi.toml"
        config = f'[connectors.hd]\ntype = "demo"\n\n[targets]\n{key} = {toml_string(text)}\n'
        path.write_text(config, encoding="utf-8")
        try:
            target = load_config(path, installed()).targets.get(key)
        except ConfigError as exc:
            return str(exc).replace(str(path), "FILE")
    assert target is not None
    return target


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KPI_KEYS), text=adversarial())
@example(key="tickets_created", text=">=0.0\n0")  # found on CI: a comparison, then no number
def test_any_string_is_a_target_or_one_line_naming_the_key(key: str, text: str) -> None:
    expected, got = reference(key, text), loaded(key, text)
    if isinstance(got, str):
        assert not isinstance(expected, float), f"{text!r} should mean {expected}"
        assert got == f"FILE: [targets] {key}: {expected}"  # one line, the value not echoed
        return
    assert math.isfinite(got.value), f"{text!r} set a target of {got.value}"
    assert got.text == text
    if isinstance(expected, float):
        assert got.value == expected
    else:  # a lenient extra (1e3, 1_000, other scripts' digits), only ever in the number
        assert expected in (NUMBER, DURATION), f"{text!r}: {expected}"


@pytest.mark.parametrize(
    ("key", "text", "reason"),
    [
        ("csat", ">= nan%", NUMBER),
        ("backlog", "<= inf", NUMBER),
        ("backlog", ">= -Infinity", NUMBER),
        ("csat", ">= 1e400%", NUMBER),
        ("first_response_time", "<= 99999999999999999999999w", DURATION),
        ("first_response_time", "<= -2h", DURATION),
        ("csat", ">= 85%%", NUMBER),
        ("backlog", "<= 5 # five", NUMBER),
        ("backlog", "≤ 5", FORM),
        ("backlog", "=> 5", FORM),
        ("backlog", "<=", FORM),
    ],
)
def test_what_the_property_found_is_refused(key: str, text: str, reason: str) -> None:
    """Examples the adversarial property turned up (no finite value, a duration too long for
    Python's timedelta) and near misses, each refused with its reason."""
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        parse_target(key, text)
