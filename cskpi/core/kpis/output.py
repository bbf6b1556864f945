"""A KPI report as SPEC §5 JSON, as CSV, and as display text. Rounding happens here only:
the report itself holds exact numbers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from cskpi.core.config.periods import Window
from cskpi.core.kpis.drill import Listing
from cskpi.core.kpis.report import Bucket, Entry, Group, Report

# Decimal places per field of an entry, by unit; fields not listed are kept as they are.
_PLACES: dict[str, dict[str, int]] = {
    "s": {"value": 1, "median": 1, "p90": 1, "mean": 1},
    "%": {"value": 1, "mean": 3, "cost": 2, "revenue": 2, "mean_assignees": 2},
    "score": {"value": 2, "top2": 1},
    "ratio": {"value": 2},
    "days": {"value": 1, "net_per_day": 2},
}
_MONEY = {"value": 2, "cost": 2}


def rounded(key: str, entry: Entry) -> Entry:
    places = _PLACES.get(entry["unit"], _MONEY if key == "cost_per_ticket" else {})
    if key == "nps":
        places = {"value": 1}
    found = {field: _round(v, places[field]) if field in places else v
             for field, v in entry.items()}  # fmt: skip
    native = entry.get("native")
    if isinstance(native, dict) and isinstance(native.get("value"), float):
        found["native"] = {**native, "value": round(native["value"], 1)}
    return found


def _round(value: Any, places: int) -> Any:
    """A float rounded; a stage duration KPI's figures per stage (a dict) each rounded."""
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {k: _round(v, places) for k, v in value.items()}
    return value


def _kpis(kpis: dict[str, Entry]) -> dict[str, Entry]:
    return {key: rounded(key, entry) for key, entry in kpis.items()}


def to_json(report: Report) -> dict[str, Any]:
    w = report.window
    doc: dict[str, Any] = {
        "window": {
            "from": w.start.astimezone(w.tz).isoformat(),
            "to": w.end.astimezone(w.tz).isoformat(),
            "timezone": str(w.tz),
        },
        "connectors": report.connectors,
        "kpis": _kpis(report.kpis),
    }
    if report.by is not None:
        doc["by"] = {"dimension": report.by.dimension, "groups": _groups(report.by.groups, w)}
    if report.series is not None:
        buckets = [_bucket(b, w) for b in report.series.buckets]
        doc["series"] = {"interval": report.series.interval, "buckets": buckets}
    return doc


def _bucket(b: Bucket, w: Window) -> dict[str, Any]:
    doc: dict[str, Any] = {"from": _local(b.window.start, w), "to": _local(b.window.end, w)}
    doc["kpis"] = _kpis(b.kpis)
    if b.groups is not None:
        doc["groups"] = _groups(b.groups, w)
    return doc


def _groups(groups: list[Group], w: Window) -> list[dict[str, Any]]:
    accounts = any(g.account is not None for g in groups)
    return [{"key": g.key, "label": g.label, "kpis": _kpis(g.kpis),
             **({"account": account_json(g.account, w)} if accounts else {})}
            for g in groups]  # fmt: skip


def account_json(account: dict[str, Any] | None, w: Window) -> dict[str, Any] | None:
    """An account with its dates as local ISO text (SPEC §6 Accounts)."""
    if account is None:
        return None
    dates = {k: None if account[k] is None else _local(account[k], w)
             for k in ("created_at", "churned_at")}  # fmt: skip
    return {**account, **dates}


def _local(moment: datetime, w: Window) -> str:
    return moment.astimezone(w.tz).isoformat()


def json_text(report: Report) -> str:
    # allow_nan=False: never the invalid JSON `Infinity`/`NaN` (formulas.finite makes them null)
    return json.dumps(to_json(report), indent=2, ensure_ascii=False, allow_nan=False)


_CSV_FIELDS = (
    "from", "to", "timezone", "dimension", "key", "label", "kpi", "bucket", "value", "unit",
    "n", "median", "p90", "mean", "numerator", "denominator", "reason", "interval",
    "account_mrr", "at_risk", "risk_reasons",
)  # fmt: skip


def csv_text(report: Report) -> str:
    """One row per group x KPI, and per bucket of a matrix KPI (backlog_age by age,
    submissions_by_hour by weekday and hour); the first block (empty dimension) is the whole
    window, and every row names the window, so rows stay meaningful when filtered or joined.
    With a series, the same follows for each bucket, its rows naming the bucket's from/to
    and the ``interval``."""
    out = io.StringIO()
    # Text quoted, numbers bare: a CR in a name stays inside its cell, a number stays a number.
    writer = csv.DictWriter(out, _CSV_FIELDS, extrasaction="ignore", lineterminator="\n",
                            quoting=csv.QUOTE_NONNUMERIC)  # fmt: skip
    writer.writeheader()
    w = report.window
    dimension = report.by.dimension if report.by is not None else ""
    sections = [(w, "", report.kpis, report.by.groups if report.by else [])]
    if report.series is not None:
        sections += [(b.window, report.series.interval, b.kpis, b.groups or [])
                     for b in report.series.buckets]  # fmt: skip
    for span, interval, kpis, groups in sections:
        window = {"from": _local(span.start, w), "to": _local(span.end, w),
                  "timezone": str(w.tz), "interval": interval}  # fmt: skip
        blocks = [("", None, "all", kpis, None)] + [
            (dimension, g.key, g.label, g.kpis, g.account) for g in groups
        ]
        for block_dimension, key, label, entries, account in blocks:
            head = {**window, "dimension": block_dimension, "key": key or "", "label": label,
                    **_account_cells(account)}  # fmt: skip
            for name, entry in _kpis(entries).items():
                for row in _csv_rows(name, entry):
                    writer.writerow({field: _cell(v) for field, v in {**head, **row}.items()})
    return out.getvalue()


# Figures of an entry that have no CSV column: one row each, the field named in ``bucket``.
_EXTRA_ROWS: dict[str, tuple[tuple[str, str], ...]] = {
    "resolution_stages": (("unreplied", "count"),),
    "reassignment_rate": (("mean_assignees", "ratio"),),
    "esat": (("top2", "%"),),
    "repeat_contact_rate": (("cross_channel", "count"), ("pending", "count")),
    "backlog_time_to_clear": (("backlog", "count"), ("net_per_day", "count")),
}


def _account_cells(account: dict[str, Any] | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"account_mrr": "" if account["mrr"] is None else account["mrr"],
            "at_risk": "yes" if account["at_risk"] else "no",
            "risk_reasons": " ".join(account["reasons"])}  # fmt: skip


def _csv_rows(name: str, entry: Entry) -> list[dict[str, Any]]:
    rows = _csv_main_rows(name, entry)
    return rows + [
        {"kpi": name, "bucket": field, "value": entry[field], "unit": unit}
        for field, unit in _EXTRA_ROWS.get(name, ())
        if field in entry
    ]


def _csv_main_rows(name: str, entry: Entry) -> list[dict[str, Any]]:
    value = entry["value"]
    if isinstance(value, dict) and entry["unit"] == "s":  # stages: median, p90, mean each
        return [{"kpi": name, "bucket": b, "value": m, "median": m, "p90": entry["p90"][b],
                 "mean": entry["mean"][b], "n": entry["n"], "unit": "s"}
                for b, m in value.items()]  # fmt: skip
    if isinstance(value, dict):  # backlog_age and the other counts by bucket
        return [{"kpi": name, "bucket": b, "value": n, "unit": entry["unit"]}
                for b, n in value.items()]  # fmt: skip
    if isinstance(value, list):  # submissions_by_hour: 7 weekdays (0 = Monday) x 24 hours
        return [{"kpi": name, "bucket": f"{_DAYS[d]} {h:02d}:00", "value": n, "unit": entry["unit"]}
                for d, hours in enumerate(value) for h, n in enumerate(hours)]  # fmt: skip
    rows = [{**entry, "kpi": name, "n": entry.get("n", entry.get("tickets_solved", ""))}]
    return rows + _native_rows(name, entry)


def _native_rows(name: str, entry: Entry) -> list[dict[str, Any]]:
    """With --native: the vendor's figure (bucket ``native``), the diverging tickets and each
    reason's count (buckets ``native.diverging``, ``native.<reason>``)."""
    native = entry.get("native")
    if not isinstance(native, dict):
        return []
    counts = {"diverging": native["diverging"], **native["reasons"]}
    return [
        {"kpi": name, "bucket": "native", "value": native["value"], "unit": entry["unit"],
         "n": native["n"], "reason": native.get("reason", "")},
        *({"kpi": name, "bucket": f"native.{k}", "value": v, "unit": "count"}
          for k, v in counts.items()),
    ]  # fmt: skip


# A spreadsheet reads a cell starting with one of these as a formula (`=HYPERLINK(…)` in an
# agent or tag name); a leading ' makes it text. Numbers are written as numbers, so a
# negative figure stays one. https://owasp.org/www-community/attacks/CSV_Injection
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


TEXT_LIMIT = 200


def clipped(text: str, size: int = TEXT_LIMIT) -> str:
    """Helpdesk text (a subject, a name) cut to ``size`` characters with an ellipsis, for what
    people read: a 10 MB subject must not make a 20 MB digest. JSON and CSV keep it whole."""
    return text if len(text) <= size else text[: size - 1] + "…"


def duration_text(seconds: float | None) -> str:
    """``1h 42m`` style; seconds only under a minute; days past 48 hours."""
    if seconds is None:
        return "-"
    sign, s = ("-" if seconds < 0 else ""), abs(round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if s < 60:
        return f"{sign}{secs}s"
    if s < 3600:
        return f"{sign}{minutes}m {secs:02d}s" if secs else f"{sign}{minutes}m"
    if s < 48 * 3600:
        return f"{sign}{days * 24 + hours}h {minutes:02d}m"
    return f"{sign}{days}d {hours:02d}h"


def duration_column(values: list[float | None]) -> list[str]:
    """Durations shown one under another in one format, the one the largest needs
    (``0h 45m`` above ``26h 10m``, not ``45m``), so a column reads at a glance."""
    present = [abs(round(v)) for v in values if v is not None]
    largest = max(present, default=0)
    if largest < 60:
        return duration_texts(values, "s")
    return duration_texts(values, "m" if largest < 3600 else "h" if largest < 48 * 3600 else "d")


def duration_texts(values: list[float | None], unit: str) -> list[str]:
    texts = []
    for v in values:
        if v is None:
            texts.append("-")
            continue
        sign, s = ("-" if v < 0 else ""), abs(round(v))
        parts = {"s": f"{s}s", "m": f"{s // 60}m {s % 60:02d}s",
                 "h": f"{s // 3600}h {s % 3600 // 60:02d}m",
                 "d": f"{s // 86400}d {s % 86400 // 3600:02d}h"}  # fmt: skip
        texts.append(sign + parts[unit])
    return texts


def value_text(key: str, entry: Entry) -> str:
    """The headline figure as a person reads it."""
    value, unit = entry["value"], entry["unit"]
    if value is None:
        return "-"
    if isinstance(value, dict):
        return _split_text(key, value, unit)
    if unit == "s":
        return duration_text(value)
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "days":
        return f"{value:,.1f} days"
    if key == "submissions_by_hour":
        return _busiest(value)
    if unit == "count":
        return f"{value:,}"
    if key == "nps":
        return f"{value:+.1f}"
    return f"{value:,.2f}" + (f" {unit}" if key == "cost_per_ticket" else "")


def _split_text(key: str, value: dict[str, Any], unit: str) -> str:
    """A KPI split into buckets or stages, in one short line: its figures in bucket order;
    awaiting_reply as its two totals (the buckets go in the detail)."""
    if key == "awaiting_reply":
        totals = {w: sum(n for k, n in value.items() if k.startswith(w + ".")) for w in _WHO}
        return " / ".join(f"{w} {n:,}" for w, n in totals.items())
    if unit == "s":
        return " / ".join(duration_text(v) for v in value.values())
    return " / ".join(f"{v:,}" for v in value.values())


_WHO = ("agent", "customer")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _busiest(matrix: list[list[int]]) -> str:
    count, day, hour = max((n, d, h) for d, row in enumerate(matrix) for h, n in enumerate(row))
    return f"busiest {_DAYS[day]} {hour:02d}:00 ({count:,})" if count else "-"


def native_texts(entry: Entry) -> tuple[str, str]:
    """With --native, the vendor's figure and how many tickets diverge, and why; blank for a
    KPI without a vendor twin."""
    native = entry.get("native")
    if not isinstance(native, dict):
        return "", ""
    if native["value"] is None:
        return "-", str(native.get("reason", "no ticket with a vendor figure"))
    why = ", ".join(f"{k} {v:,}" for k, v in native["reasons"].items() if v)
    detail = f"{native['diverging']:,} of {native['n']:,} diverge" + (f" ({why})" if why else "")
    return duration_text(native["value"]), detail


def detail_text(key: str, entry: Entry) -> str:
    """The supporting numbers: p90 and n, numerator/denominator, or the reason for null."""
    if entry["value"] is None:
        return str(entry.get("reason", ""))
    if key == "backlog_age":
        return "age " + " / ".join(entry["value"])
    if isinstance(entry["value"], dict):
        return _split_detail(key, entry)
    if key in _DETAILS:
        return _DETAILS[key](entry)
    if entry["unit"] == "s":
        p90, mean = duration_text(entry["p90"]), duration_text(entry["mean"])
        return f"p90 {p90}, mean {mean}, n {entry['n']:,}"
    if "denominator" in entry:
        return _fraction(entry)
    return ""


def _fraction(entry: Entry) -> str:
    return f"{entry['numerator']:,} / {entry['denominator']:,}"


def _top2(entry: Entry) -> str:
    return f"n {entry['n']:,}, top two boxes {entry['top2']:.1f}%"


# The detail of the KPIs whose supporting numbers are their own.
_DETAILS: dict[str, Callable[[Entry], str]] = {
    "csat": lambda e: f"{e['numerator']:,} of {e['n']:,} positive, mean {e['mean']:.2f}",
    "nps": lambda e: f"n {e['n']:,}: {e['promoters']} promoters, {e['detractors']} detractors",
    "ces": _top2,
    "esat": _top2,
    "cost_per_ticket": lambda e: f"cost {e['cost']:,.2f} over {e['tickets_solved']:,} solved",
    "cost_revenue_ratio": lambda e: f"cost {e['cost']:,.2f} / revenue {e['revenue']:,.2f}",
    "reassignment_rate": lambda e: f"{_fraction(e)}, mean assignees {e['mean_assignees']:.2f}",
    "repeat_contact_rate": lambda e: (
        f"{_fraction(e)}, {e['cross_channel']:,} cross-channel, {e['pending']:,} pending"
    ),
    "backlog_time_to_clear": lambda e: (
        f"backlog {e['backlog']:,}, net {e['net_per_day']:.2f} solved a day"
    ),
}


_SPLIT_LABELS = {"touches": "agent replies "}
_STAGE_NAMES = {"to_first_reply": "to reply", "to_first_solve": "to solve",
                "after_reopen": "after reopen"}  # fmt: skip


def _split_detail(key: str, entry: Entry) -> str:
    """What the figures of a split KPI are: its buckets' names, or for stages p90 and n."""
    value: dict[str, Any] = entry["value"]
    if key == "awaiting_reply":
        return "; ".join(
            f"{w}: " + ", ".join(f"{k.split('.', 1)[1]} {n:,}" for k, n in value.items()
                                 if k.startswith(w + "."))
            for w in _WHO
        )  # fmt: skip
    if entry["unit"] == "s":
        p90 = " / ".join(duration_text(v) for v in entry["p90"].values())
        unreplied = f", {entry['unreplied']:,} unreplied" if "unreplied" in entry else ""
        names = " / ".join(_STAGE_NAMES.get(k, k) for k in value)
        return f"{names} median; p90 {p90}; n {entry['n']:,}{unreplied}"
    return _SPLIT_LABELS.get(key, "") + " / ".join(value)


# --- the rows behind a KPI: `cskpi tickets` (drill.py) -------------------------------------

_COUNTS = ("agent_replies", "reopens")


def iso_times(epochs: NDArray[np.float64], tz: ZoneInfo) -> list[str | None]:
    """Epoch seconds as local ISO 8601 with their offset, None for NaN. The offset is looked
    up once per distinct quarter hour (it changes no more often), not once per row."""
    known = ~np.isnan(epochs)
    seconds = np.where(known, epochs, 0).astype(np.int64)
    quarters, index = np.unique(seconds // 900, return_inverse=True)
    offsets = [
        datetime.fromtimestamp(int(q) * 900, tz).utcoffset() or timedelta() for q in quarters
    ]
    shift = np.array([o.total_seconds() for o in offsets], dtype=np.int64)[index.ravel()]
    names = np.array([_offset_text(o) for o in offsets], dtype=object)[index.ravel()]
    stamps = np.datetime_as_string((seconds + shift).astype("datetime64[s]"), unit="s")
    return [
        s + n if k else None
        for s, n, k in zip(stamps.tolist(), names.tolist(), known.tolist(), strict=True)
    ]


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def listing_columns(listing: Listing, tz: ZoneInfo) -> dict[str, list[Any]]:
    """Each column as plain values: times as local ISO text, counts as integers, no NaN."""
    out: dict[str, list[Any]] = {}
    for name, values in listing.columns.items():
        if name in listing.times:
            out[name] = iso_times(values.astype(np.float64), tz)
        elif values.dtype.kind == "f":
            plain = [None if v != v else v for v in values.tolist()]
            out[name] = [None if v is None else int(v) for v in plain] if name in _COUNTS else plain
        else:
            out[name] = values.tolist()
    return out


def listing_json(listing: Listing, window: Window) -> str:
    columns = listing_columns(listing, window.tz)
    names = list(columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    doc: dict[str, Any] = {"window": _window(window), "kpi": listing.kpi, "count": len(listing)}
    if "in_numerator" in listing.columns:
        doc["numerator"] = int(np.count_nonzero(listing.columns["in_numerator"]))
    doc[listing.kind] = rows
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)


def listing_csv(listing: Listing, window: Window) -> str:
    """One row per ticket (or rating), tags as their JSON list; the CSV-injection guard of
    the KPI CSV applies to every text cell."""
    columns = listing_columns(listing, window.tz)
    if "tags" in columns:
        columns["tags"] = _tag_lists(columns["tags"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(list(columns))
    guarded = [
        values if name in listing.times else _cells(values, listing.columns[name].dtype.kind)
        for name, values in columns.items()
    ]
    writer.writerows(zip(*guarded, strict=True))
    return out.getvalue()


def _cells(values: list[Any], kind: str) -> list[Any]:
    """A column's CSV cells: None as empty, text through the injection guard (``_cell``).
    A column of numbers is passed over by C loops, not a call per cell; a text column's
    distinct values are guarded once (docs/performance.md)."""
    if kind != "O":
        return ["" if v is None else v for v in values] if None in values else values
    try:
        distinct = set(values)
    except TypeError:  # an unhashable value: cell by cell
        return [_cell("" if v is None else v) for v in values]
    changed = {v: _cell("" if v is None else v) for v in distinct}
    fixes = {v: c for v, c in changed.items() if c is not v}
    return list(map(fixes.get, values, values)) if fixes else values


def _tag_lists(lists: list[Any]) -> list[str]:
    """Each ticket's tags as its JSON list, each distinct list written once."""
    written: dict[tuple[Any, ...], str] = {}
    out = []
    for tags in lists:
        if not isinstance(tags, list):
            out.append(json.dumps(tags, ensure_ascii=False))
            continue
        key = tuple(tags)
        text = written.get(key)
        if text is None:
            text = written[key] = json.dumps(tags, ensure_ascii=False)
        out.append(text)
    return out


def _window(w: Window) -> dict[str, str]:
    return {"from": w.start.astimezone(w.tz).isoformat(), "to": w.end.astimezone(w.tz).isoformat(),
            "timezone": str(w.tz)}  # fmt: skip
