"""Per-ticket figures of SPEC §6 that depend on the ticket alone, not on the window or the
group it is counted in: the seconds it spent in each unsolved status, and whether its
requester came back after its solve. ``populations.load`` derives them once, as columns of
the solved tickets, so every group and every bucket of a series reads them as they are.

Both are array code over rows read once for the whole window (``populations.py``); the rules
are in docs/kpis.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Obj = NDArray[np.object_]

UNSOLVED = ("new", "open", "pending", "on_hold")
# Of several changes in one second, the one that holds afterwards comes last: a solve or close
# wins (as the backlog's rule has it), then the statuses in their usual order of a ticket's life.
_ORDER = {"new": 0, "open": 1, "pending": 2, "on_hold": 3, "solved": 4, "closed": 5}


def status_code_sql(column: str) -> str:
    """SQL for a status change's number in ``_ORDER`` (any other status after them all): the
    database turns the history's text into numbers, where a Python loop over every change of
    a year took seconds (docs/performance.md)."""
    cases = " ".join(f"WHEN '{name}' THEN {code}" for name, code in _ORDER.items())
    return f"CASE {column} {cases} ELSE {len(_ORDER)} END"


def status_seconds(
    rowid: F64, created: F64, solved: F64, ticket: F64, at: F64, status: F64
) -> dict[str, F64]:
    """Seconds each ticket (``rowid``, ``created``, ``solved``; a ticket may come on several
    rows) spent in new, open, pending and on_hold between created_at and solved_at, from its
    changes (``ticket``, ``at``, ``status`` as its number by ``status_code_sql``): new until
    its first change, then each change's status until the next one. Columns ``in_new`` …
    ``in_on_hold``; NaN for a ticket without any change."""
    tickets, first = np.unique(rowid, return_index=True)
    known = np.isin(ticket, tickets)
    if not known.any():
        return {f"in_{name}": np.full(len(rowid), np.nan) for name in UNSOLVED}
    heads = np.unique(ticket[known])  # the tickets with a history
    # each history opens with new at -inf: new until the first change
    ticket = np.r_[ticket[known], heads]
    at = np.r_[at[known], np.full(len(heads), -np.inf)]
    codes = np.r_[status[known].astype(np.int64), np.zeros(len(heads), dtype=np.int64)]
    order = np.lexsort((codes, at, ticket))
    ticket, at, codes = ticket[order], at[order], codes[order]
    where = np.searchsorted(tickets, ticket)
    start, end = created[first[where]], solved[first[where]]
    following = np.r_[at[1:], np.inf]
    following[np.r_[ticket[1:] != ticket[:-1], True]] = np.inf  # a ticket's last: to its solve
    lo = np.minimum(np.maximum(at, start), end)
    hi = np.minimum(np.maximum(following, start), end)
    spent = np.maximum(hi - lo, 0.0)
    totals = np.zeros((len(tickets), len(UNSOLVED)))
    kept = codes < len(UNSOLVED)
    np.add.at(totals, (where[kept], codes[kept]), spent[kept])
    totals[~np.isin(tickets, heads)] = np.nan
    per_row = totals[np.searchsorted(tickets, rowid)]
    return {f"in_{name}": per_row[:, i].copy() for i, name in enumerate(UNSOLVED)}


def repeat_contacts(
    solved_rows: tuple[F64, F64, Obj, Obj, Obj],
    later_rows: tuple[F64, Obj, Obj, Obj],
    window: float,
    now: float,
) -> dict[str, F64]:
    """For each solved ticket (created_at, solved_at, connector, channel, requester email),
    whether another ticket (created_at, connector, channel, email) with the same lower-cased
    email was created in (solved_at, solved_at + ``window``]. ``later_rows`` holds every such
    candidate, the solved tickets themselves included where their email and created_at put
    them there. Columns: ``has_email`` (1/0), ``pending`` (1 when it has an email and
    solved_at + window > ``now``), ``repeat`` (1/0 for a ticket judged, NaN for one without
    an email or pending) and ``repeat_cross`` (1 when such a later ticket came through
    another connector or another channel)."""
    created, solved_at, connector, channel, email = solved_rows
    l_created, l_connector, l_channel, l_email = later_rows
    n = len(created)
    # Numbers rather than strings: each distinct email is lower-cased once, and a route
    # (email, connector, channel) is a number made of the three numbers.
    raw, distinct = _factorize([*email.tolist(), *l_email.tolist()])
    address = [_lower(e) for e in distinct]
    people = _factorize(address)[0][raw]
    has = ~np.array([a == "" for a in address], dtype=bool)[raw[:n]]
    pending = has & (solved_at + window > now)
    judged = has & ~pending
    ways = _factorize([*connector.tolist(), *l_connector.tolist()])[0]
    media = _factorize([*channel.tolist(), *l_channel.tolist()])[0]
    route = (people * (ways.max(initial=0) + 1) + ways) * (media.max(initial=0) + 1) + media
    routes = np.unique(route, return_inverse=True)[1].astype(np.int64)  # small for _in_span
    # the ticket itself is among the candidates when its own created_at is in the span
    itself = has & (created > solved_at) & (created <= solved_at + window)
    found = _in_span(people[n:], l_created, people[:n], solved_at, window) - itself
    same_way = _in_span(routes[n:], l_created, routes[:n], solved_at, window) - itself
    repeat = judged & (found > 0)
    return {
        "has_email": has.astype(np.float64),
        "pending": pending.astype(np.float64),
        "repeat": np.where(judged, repeat.astype(np.float64), np.nan),
        "repeat_cross": (repeat & (found > same_way)).astype(np.float64),
    }


def _lower(email: object) -> str:
    return email.strip().lower() if isinstance(email, str) else ""


def _factorize(values: list[Any]) -> tuple[I64, list[Any]]:
    """Each value's number among the distinct values (first seen first), and those values:
    a dict built and read by C loops, a fraction of a Python loop's cost per row."""
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    return codes, list(index)


_SHIFT = 36  # seconds of a (code, instant) key: 2**36 s is over 2,000 years


def _in_span(codes: I64, created: F64, want: I64, solved_at: F64, window: float) -> I64:
    """How many (code, created) rows have the wanted code and created in (solved_at,
    solved_at + window]: one sort of (code, created) keys, two binary searches."""
    if len(want) == 0:
        return np.zeros(0, dtype=np.int64)
    base = int(np.floor(min(np.min(solved_at), np.min(created, initial=np.inf))))
    keys = np.sort((codes << _SHIFT) + (created.astype(np.int64) - base))
    wanted = want << _SHIFT
    lo = np.searchsorted(keys, wanted + (solved_at.astype(np.int64) - base), "right")
    hi = np.searchsorted(keys, wanted + (solved_at.astype(np.int64) + int(window) - base), "right")
    return (hi - lo).astype(np.int64)
