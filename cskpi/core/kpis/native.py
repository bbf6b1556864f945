"""The vendors' own figures beside ours (SPEC §7): ``cskpi kpis --native``, the divergence
report, and the KPIs read from vendor data (``handle_time``, ``csat_response_rate``).

Plain array functions over the populations ``populations.py`` loads: the created and
solved tickets carry each vendor metric as a column ``native.<name>`` (``with_vendor``).
A KPI with a native twin is compared ticket by ticket over its own population: a ticket
is compared when both figures exist, diverges when they differ by more than
max(60 s, 1 % of the native figure), and each difference gets the first of :data:`RULES`
that holds. docs/kpis.md "Why our number differs" is written from the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cskpi.core.config.periods import Window
from cskpi.core.kpis import formulas
from cskpi.core.kpis.populations import F64, Frame, Populations
from cskpi.core.store.schema import to_epoch

Entry = dict[str, Any]
Bools = NDArray[np.bool_]

TOLERANCE_SECONDS = 60.0
TOLERANCE_SHARE = 0.01

# The reasons, in the order they are tried: each with what it means and a worked example.
# docs/kpis.md's "Why our number differs" is ``why_section()`` (a test keeps them equal).
RULES: tuple[tuple[str, str, str], ...] = (
    ("minute_rounding",
     "the figures differ by less than a minute. Zendesk stores whole minutes (whether it "
     "rounds or truncates is not documented), so such a difference is never a divergence; it "
     "is counted so that every difference is explained",
     "A messaging ticket answered after 20 min 30 s: ours is 1,230 s (Zendesk gives "
     "`reply_time_in_seconds` for messaging), Zendesk's `reply_time_in_minutes` is 20, "
     "1,200 s: 30 s apart"),
    ("business_calendar",
     "only the business-hours twin diverges: the calendar figures agree, so the two business "
     "calendars differ (Zendesk applies the schedule in force at the end to the whole ticket, "
     "and its own holidays; Intercom its office hours)",
     "Created Monday 10:00, answered 11:00 with business hours 09:00-17:00: ours is 3,600 s "
     "calendar and business; Zendesk says 60 min calendar (agrees) but 30 min business "
     "(1,800 s): `first_response_time_business` diverges by 1,800 s"),
    ("reopened",
     "the ticket was reopened: the vendor measured another solve or reply than ours",
     "Created Monday 10:00, solved 12:00, reopened and solved again Tuesday 12:00: our "
     "resolution_time is 93,600 s (to the latest solve); a vendor figure of 120 min "
     "(7,200 s) measures to the first"),
    ("agent_created",
     "the ticket's first message (bots and system messages aside) is an agent's: Zendesk then "
     "counts the first reply from the agent's second public comment",
     "An agent opens a ticket at 10:00 with a public comment, replies again at 10:05 and "
     "12:05: ours is 300 s, Zendesk's 125 min (7,500 s)"),
    ("unexplained",
     "none of the above holds: the figures disagree for a reason the data does not show",
     "Created 10:00, first agent reply 11:00 in our data, Zendesk says 90 min: 1,800 s "
     "apart, not reopened, opened by the customer"),
)  # fmt: skip
RULE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in RULES)


@dataclass(frozen=True)
class Twin:
    """A KPI and the vendor metric it is compared with, over the KPI's own population."""

    kpi: str
    metric: str
    population: str  # "created" or "solved"
    end: str  # the frame column our figure runs to from created_at ("" for handle_time)
    business: bool = False


TWINS: tuple[Twin, ...] = (
    Twin("first_response_time", "reply_time", "created", "first_reply_at"),
    Twin("first_response_time_business", "reply_time_business", "created", "first_reply_at", True),
    Twin("first_resolution_time", "first_resolution_time", "solved", "first_solved_at"),
    Twin("first_resolution_time_business", "first_resolution_time_business", "solved",
         "first_solved_at", True),
    Twin("resolution_time", "full_resolution_time", "solved", "solved_at"),
    Twin("resolution_time_business", "full_resolution_time_business", "solved", "solved_at",
         True),
    Twin("handle_time", "handling_time", "solved", ""),
)  # fmt: skip
TWIN_OF = {twin.kpi: twin for twin in TWINS}


# --- comparing two figures ----------------------------------------------------------------


def diverging(canonical: F64, native: F64) -> Bools:
    """|canonical - native| > max(60 s, 1 % of native); False where either is missing."""
    with np.errstate(invalid="ignore"):
        limit = np.maximum(TOLERANCE_SECONDS, TOLERANCE_SHARE * np.abs(native))
        return np.abs(canonical - native) > limit


def reasons(
    canonical: F64,
    native: F64,
    *,
    calendar_agrees: Bools | None,
    reopens: F64,
    first_agent: F64,
) -> NDArray[np.object_]:
    """Each ticket's reason (:data:`RULES`), or None where none is due: the figures agree,
    one is missing, or they differ by a minute or more yet within the tolerance.
    ``calendar_agrees`` is given for a business twin: where its calendar pair is compared
    and does not diverge."""
    gap = np.abs(canonical - native)
    apart = diverging(canonical, native)
    found = np.full(len(canonical), None, dtype=object)
    with np.errstate(invalid="ignore"):
        rounding = (gap > 0) & (gap < TOLERANCE_SECONDS)
    found[rounding] = "minute_rounding"
    rest = apart.copy()
    for name, holds in (
        ("business_calendar", calendar_agrees),
        ("reopened", np.nan_to_num(reopens) > 0),
        ("agent_created", np.nan_to_num(first_agent) > 0),
    ):
        if holds is None:
            continue
        found[rest & holds] = name
        rest &= ~holds
    found[rest] = "unexplained"
    return found


def summary(canonical: F64, native: F64, reason: NDArray[np.object_]) -> Entry:
    """The ``native`` entry of a KPI: the vendor's median over the compared tickets, how many
    were compared, how many diverge, and every reason's count (all rules, zeros too)."""
    compared = ~np.isnan(canonical) & ~np.isnan(native)
    counts = {name: int(np.count_nonzero(reason[compared] == name)) for name in RULE_NAMES}
    n = int(np.count_nonzero(compared))
    value = float(np.median(native[compared])) if n else None
    return {
        "value": value,
        "n": n,
        "diverging": int(np.count_nonzero(diverging(canonical, native) & compared)),
        "reasons": counts,
    }


# --- a KPI's two figures per ticket -----------------------------------------------------


@dataclass(frozen=True)
class Compared:
    """One KPI's population, ticket by ticket: our seconds, the vendor's, the reason."""

    ids: NDArray[np.object_]
    canonical: F64
    native: F64
    reason: NDArray[np.object_]


def compared(p: Populations, twin: Twin, ctx: formulas.KpiContext) -> Compared | None:
    """Both figures for every ticket of ``twin``'s KPI population; None where ours needs a
    business calendar the config lacks."""
    if twin.business and ctx.business is None:
        return None
    frame = p.created if twin.population == "created" else p.solved
    ours = _ours(frame, twin, ctx)
    native = _column(frame, f"native.{twin.metric}")
    agrees = None
    if twin.business:
        plain = TWIN_OF[twin.kpi.removesuffix("_business")]
        theirs, mine = _column(frame, f"native.{plain.metric}"), _ours(frame, plain, ctx)
        agrees = ~np.isnan(theirs) & ~np.isnan(mine) & ~diverging(mine, theirs)
    why = reasons(
        ours, native, calendar_agrees=agrees,
        reopens=_column(frame, "reopens"), first_agent=_column(frame, "first_agent"),
    )  # fmt: skip
    ids = frame.cols.get("id", np.full(len(frame), None, dtype=object))
    return Compared(ids, ours, native, why)


def _ours(frame: Frame, twin: Twin, ctx: formulas.KpiContext) -> F64:
    """Our seconds for each ticket of the frame, NaN outside the KPI's population (a ticket
    with no first reply, or no first solve)."""
    if not twin.end:  # handle_time is the vendor's own figure
        return _column(frame, f"native.{twin.metric}")
    start, end = _column(frame, "created_at"), _column(frame, twin.end)
    if not twin.business:
        calendar: F64 = end - start
        return calendar
    assert ctx.business is not None
    known = ~np.isnan(end)
    seconds = np.full(len(frame), np.nan)
    seconds[known] = formulas.business_seconds(ctx.business, start[known], end[known])
    return seconds


def _column(frame: Frame, name: str) -> F64:
    found = frame.cols.get(name)
    if found is None:
        return np.full(len(frame), np.nan)
    column: F64 = np.asarray(found, dtype=np.float64)
    return column


def with_native(
    entries: dict[str, Entry], p: Populations, ctx: formulas.KpiContext
) -> dict[str, Entry]:
    """``entries`` with ``"native"`` added to each KPI that has a twin (SPEC §7)."""
    found = dict(entries)
    for twin in TWINS:
        if twin.kpi not in found:
            continue  # a KPI this build does not compute (yet)
        pair = compared(p, twin, ctx)
        if pair is None:
            native: Entry = {"value": None, "n": 0, "diverging": 0,
                             "reasons": dict.fromkeys(RULE_NAMES, 0),
                             "reason": "no [business_hours] in the config"}  # fmt: skip
        else:
            native = summary(pair.canonical, pair.native, pair.reason)
        found[twin.kpi] = {**found[twin.kpi], "native": native}
    return found


def diverging_tickets(p: Populations, kpi: str, ctx: formulas.KpiContext) -> list[Entry]:
    """The tickets behind ``kpi`` whose figures diverge from the vendor's, for `cskpi
    tickets --kpi KPI --native`: id, our seconds, the vendor's, the reason; by id. Load the
    populations with ``native=True`` (the ids come with the vendor metrics)."""
    twin = TWIN_OF.get(kpi)
    if twin is None:
        raise ValueError(f"{kpi} has no vendor twin; these have: {', '.join(TWIN_OF)}")
    pair = compared(p, twin, ctx)
    if pair is None:
        return []
    apart = diverging(pair.canonical, pair.native)
    rows = [
        {"id": str(pair.ids[i]), "seconds": float(pair.canonical[i]),
         "native_seconds": float(pair.native[i]), "reason": str(pair.reason[i])}
        for i in np.flatnonzero(apart)
    ]  # fmt: skip
    return sorted({r["id"]: r for r in rows}.values(), key=lambda r: r["id"])


# --- KPIs from vendor data --------------------------------------------------------------


def answered(ratings: Frame, w: Window) -> Frame:
    """The ratings answered in W (a score, rated_at in W): what every KPI over ratings
    counts. The population also holds csat surveys offered in W (see ``_ratings``)."""
    end = float(to_epoch(w.end) or 0)
    if "rated_at" not in ratings.cols:
        return ratings
    keep = ~np.isnan(ratings["score"]) & (ratings["rated_at"] < end)
    return Frame({k: v[keep] for k, v in ratings.cols.items()}, ratings.key)


def vendor_kpis(p: Populations, w: Window) -> dict[str, Entry]:
    """handle_time and csat_response_rate, in KPI_KEYS order."""
    return {"handle_time": handle_time(p.solved), "csat_response_rate": response_rate(p, w)}


def handle_time(solved: Frame) -> Entry:
    """Over the tickets solved in W, the vendor's handling time where it records one."""
    if len(solved) == 0:
        return formulas.durations(np.zeros(0), "no ticket solved in the window")
    seconds = _column(solved, "native.handling_time")
    return formulas.durations(
        seconds[~np.isnan(seconds)],
        "no ticket solved in the window has a handling time from its vendor (Intercom "
        "records one, from API version 2.13)",
    )


def response_rate(p: Populations, w: Window) -> Entry:
    """Of the csat surveys offered in W, the share answered by ``now``."""
    ratings = p.ratings
    if "offered_at" not in ratings.cols:
        return formulas.rate(0, 0, _NO_OFFERS)
    start, end = float(to_epoch(w.start) or 0), float(to_epoch(w.end) or 0)
    now = float(to_epoch(w.now) or 0)
    offered_at = ratings["offered_at"]
    offered = (ratings["kind"] == "csat") & (offered_at >= start) & (offered_at < end)
    done = offered & ~np.isnan(ratings["score"]) & (ratings["rated_at"] <= now)
    return formulas.rate(int(np.count_nonzero(done)), int(np.count_nonzero(offered)), _NO_OFFERS)


_NO_OFFERS = (
    "no csat survey offered in the window is recorded (Zendesk records its offers; "
    "Intercom, Freshdesk and imported ratings do not)"
)


def why_section() -> str:
    """docs/kpis.md's "Why our number differs", written from :data:`RULES` and
    :data:`TWINS` (print it with ``python -c "from cskpi.core.kpis.native import
    why_section; print(why_section())"``)."""
    twins = ", ".join(f"`{t.kpi}` ↔ `{t.metric}`" for t in TWINS)
    head = (
        "## Why our number differs\n\n"
        "`cskpi kpis --native` puts the vendor's own figure beside each KPI that has one: "
        f"{twins}. "
        "Over the KPI's own tickets, a ticket is compared when both figures exist (a ticket "
        "without a vendor figure is not compared); `native.value` is the median of the "
        "vendor's figures, `native.n` how many tickets were compared, and `native.diverging` "
        "how many differ by more than max(60 s, 1 % of the vendor's figure). Every difference "
        "gets the first of these reasons that holds (`native.reasons` counts each; "
        "`minute_rounding` counts differences under a minute, which never diverge, the others "
        "count diverging tickets only; a difference of a minute or more that stays within 1 % "
        "gets no reason):\n\n"
    )
    items = [
        f"{n}. `{name}`: {meaning}. *Example:* {example}."
        for n, (name, meaning, example) in enumerate(RULES, 1)
    ]
    return head + "\n".join(items) + "\n"
