"""`cskpi import ratings|accounts`: the survey answers and account data no helpdesk API holds.

A file is read and checked whole before anything is written, then written in one
transaction, so a bad row fails the whole file (naming its line) and leaves the store as it
was. Importing the same file again changes nothing and says so: a row counts as updated only
when one of its values differs from the stored one (the statements skip the others and
their row counts tell), else as unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, bindparam, text

from cskpi.connectors import base
from cskpi.core.config.periods import parse_instant
from cskpi.core.store.dialect import sql_for
from cskpi.core.store.engine import write_transaction
from cskpi.core.store.schema import to_epoch
from cskpi.core.store.upserts import UPSERTS, upsert_records

IMPORT_CONNECTOR = "import"
RATING_COLUMNS = ("id", "kind", "score", "scale_min", "scale_max", "rated_at", "ticket", "agent",
                  "requester", "comment")  # fmt: skip
ACCOUNT_COLUMNS = ("organization", "mrr", "created_at", "churned_at")

# Default scales by kind; floats, so a default and an explicit "1" give the same derived id.
SCALES = {"csat": (1.0, 5.0), "nps": (0.0, 10.0), "ces": (1.0, 7.0), "esat": (1.0, 5.0)}

Cells = dict[str, str]  # lower-cased column name -> stripped value ("" when blank)
Rows = list[tuple[int, Cells]]  # (line where the row starts, cells)
T = TypeVar("T")


class ImportFileError(ValueError):
    """A file that cannot be imported; ``str()`` is ``"FILE: line N: column X: reason"``."""

    def __init__(
        self, path: Path, reason: str, line: int | None = None, column: str | None = None
    ) -> None:
        self.path, self.reason, self.line, self.column = path, reason, line, column
        where = (f"line {line}: " if line else "") + (f"column {column}: " if column else "")
        super().__init__(f"{path}: {where}{reason}")


@dataclass(frozen=True)
class ImportResult:
    file: Path
    rows: int
    created: int
    updated: int  # stored before, and a value differed
    unchanged: int = 0  # stored before with the same values


class _CellError(Exception):
    """``(column, reason)`` of a bad value, raised where the line is not known: see `_at_line`."""


@contextmanager
def _at_line(path: Path, line: int) -> Iterator[None]:
    try:
        yield
    except _CellError as exc:
        column, reason = exc.args
        raise ImportFileError(path, reason, line, column) from None


# --- reading the CSV --------------------------------------------------------------------


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(path, exc.strerror or str(exc)) from None
    try:
        return data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        reason = f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        raise ImportFileError(path, reason, line) from None


def _read(path: Path, accepted: Sequence[str], required: Sequence[str]) -> tuple[list[str], Rows]:
    text = _decode(path)
    # Excel saves "CSV" with semicolons in many European locales; survey tools also use tabs.
    delimiter = max(",;\t", key=text.partition("\n")[0].count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        columns = _header(path, next(reader, []), accepted, required)
        rows = list(_rows(path, reader, len(columns)))
    except csv.Error as exc:
        raise ImportFileError(path, f"not readable as CSV: {exc}", reader.line_num) from None
    if not rows:
        raise ImportFileError(path, "there is a header but no rows to import")
    return columns, [(line, dict(zip(columns, values, strict=True))) for line, values in rows]


def _header(
    path: Path, header: list[str], accepted: Sequence[str], required: Sequence[str]
) -> list[str]:
    columns = [name.strip().lower() for name in header]
    if not any(columns):
        reason = f"the file is empty; the first line must be a header: {','.join(accepted)}"
        raise ImportFileError(path, reason, 1)
    unknown = [repr(c) for c in columns if c not in accepted]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    missing = [c for c in required if c not in columns]
    if unknown:
        reason = f"unknown column {', '.join(unknown)}; the columns are {', '.join(accepted)}"
    elif twice:
        reason = f"column {', '.join(twice)} appears more than once"
    elif missing:
        reason = f"missing required column {', '.join(missing)}"
    else:
        return columns
    raise ImportFileError(path, reason, 1)


def _rows(path: Path, reader: Any, width: int) -> Iterator[tuple[int, list[str]]]:
    end = reader.line_num
    for values in reader:
        # A quoted value may span lines: a row starts just after the previous one ended.
        line, end = end + 1, reader.line_num
        cells = [v.strip() for v in values]
        if not any(cells):
            continue  # blank lines, and the all-empty rows spreadsheets leave at the end
        if len(cells) != width:
            reason = f"{len(cells)} values for {width} columns (quote a value with a comma in it)"
            raise ImportFileError(path, reason, line)
        yield line, cells


def _parse(path: Path, rows: Rows, parse: Callable[[Cells, tzinfo], T], tz: tzinfo) -> list[T]:
    parsed = []
    for line, cells in rows:
        with _at_line(path, line):
            parsed.append(parse(cells, tz))
    return parsed


def _need(cells: Cells, column: str) -> str:
    value = cells.get(column, "")
    if not value:
        raise _CellError(column, "is empty")
    return value


def _number(cells: Cells, column: str) -> float:
    value = _need(cells, column)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _CellError(column, f"{value!r} is not a number (decimals take a dot: 4.5)")
    return number


def _instant(cells: Cells, column: str, tz: tzinfo) -> datetime | None:
    value = cells.get(column, "")
    if not value:
        return None
    try:
        # ISO only: parse_instant's spans ("30d") would move with the clock between imports.
        datetime.fromisoformat(value)
    except ValueError:
        reason = f"{value!r} is not an ISO date or datetime such as 2025-03-01 or 2025-03-01T14:30"
        raise _CellError(column, reason) from None
    return parse_instant(value, tz)


def _existing(conn: Connection, table: str, ids: Iterable[str]) -> set[str]:
    # `table` is one of this module's constants.
    query = text(f"SELECT id FROM {table} WHERE id IN :ids")  # noqa: S608
    query = query.bindparams(bindparam("ids", expanding=True))
    wanted, found = sorted(set(ids)), set[str]()
    for start in range(0, len(wanted), 500):  # under SQLite's bound-parameter limit
        found.update(conn.execute(query, {"ids": wanted[start : start + 500]}).scalars())
    return found


# --- ratings ----------------------------------------------------------------------------

# The sync's rating upsert without its prefixing of ticket_id and agent_id: a connector's
# records carry the source's own ids, while an imported row names ids already stored.
_RATING_UPSERT = dataclasses.replace(UPSERTS[base.Rating], prefixed=frozenset())
_RATING_REFS = (("ticket", "ticket"), ("agent", "person"))  # column, table it points into


def import_ratings(
    engine: Engine, path: Path, tz: tzinfo, source: str = IMPORT_CONNECTOR
) -> ImportResult:
    """Store the survey answers of a CSV as ratings of connector ``source``; all rows or none."""
    _, rows = _read(path, RATING_COLUMNS, ("kind", "score", "rated_at"))
    ratings = _parse(path, rows, _rating, tz)
    _unique_ids(path, rows, ratings)
    with write_transaction(engine) as conn:
        _check_refs(path, conn, rows)
        stored = _existing(conn, "rating", (f"{source}:{r.external_id}" for r in ratings))
        changed = _RATING_UPSERT.write(conn, source, [_RATING_UPSERT.build(r) for r in ratings])
    created = len(ratings) - len(stored)
    updated = changed - created
    return ImportResult(path, len(ratings), created, updated, len(stored) - updated)


def _rating(cells: Cells, tz: tzinfo) -> base.Rating:
    kind = _need(cells, "kind").lower()
    if kind not in SCALES:
        raise _CellError("kind", f"{cells['kind']!r} is not one of {', '.join(SCALES)}")
    low, high, score = _scored(cells, kind)
    if (rated_at := _instant(cells, "rated_at", tz)) is None:
        raise _CellError("rated_at", "is empty")
    rating = base.Rating(
        cells.get("id", ""), cast(base.RatingKind, kind), score, low, high, rated_at,
        ticket_id=cells.get("ticket") or None, agent_id=cells.get("agent") or None,
        comment=cells.get("comment") or None,
    )  # fmt: skip
    if not rating.external_id:
        rating.external_id = _content_id(rating, cells.get("requester", ""))
    return rating


def _scored(cells: Cells, kind: str) -> tuple[float, float, float]:
    """The scale's bounds and the score on it."""
    low, high = SCALES[kind]
    if cells.get("scale_min"):
        low = _number(cells, "scale_min")
    if cells.get("scale_max"):
        high = _number(cells, "scale_max")
    if kind == "nps" and (low, high) != SCALES["nps"]:
        column = "scale_min" if low != SCALES["nps"][0] else "scale_max"
        raise _CellError(column, f"nps is always on the 0-10 scale, not {low:g}-{high:g}")
    if low >= high:
        raise _CellError("scale_max", f"{high:g} is not above scale_min {low:g}")
    score = _number(cells, "score")
    if kind == "nps" and not score.is_integer():
        raise _CellError("score", f"nps scores are whole numbers 0-10, not {cells['score']}")
    if not low <= score <= high:
        raise _CellError("score", f"{cells['score']} is outside the {kind} scale {low:g}-{high:g}")
    return low, high, score


def _content_id(rating: base.Rating, requester: str) -> str:
    # Made of the parsed answer, so the same answer in an overlapping export ("5" or "5.0",
    # "+01:00" or naive local time) is the same row. The requester tells apart two customers
    # giving the same score at the same second; it is kept nowhere else (see the README).
    content = [rating.kind, rating.score, rating.scale_min, rating.scale_max,
               to_epoch(rating.rated_at), rating.ticket_id, rating.agent_id, requester,
               rating.comment]  # fmt: skip
    return "row-" + hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


def _unique_ids(path: Path, rows: Rows, ratings: list[base.Rating]) -> None:
    first: dict[str, int] = {}
    for (line, cells), rating in zip(rows, ratings, strict=True):
        key = rating.external_id
        if key in first and cells.get("id"):
            reason = f"{key!r} is already the id on line {first[key]}"
            raise ImportFileError(path, reason, line, "id")
        # The same answer again with no id to tell them apart: both count, numbered in order.
        copy = 2
        while rating.external_id in first:
            rating.external_id, copy = f"{key}-{copy}", copy + 1
        first[rating.external_id] = line


def _check_refs(path: Path, conn: Connection, rows: Rows) -> None:
    missing: dict[str, set[str]] = {}
    for column, table in _RATING_REFS:
        wanted = {cells[column] for _, cells in rows if cells.get(column)}
        missing[column] = wanted - _existing(conn, table, wanted)
    for line, cells in rows:
        for column, table in _RATING_REFS:
            if cells.get(column) in missing[column]:
                reason = f"no {table} {cells[column]!r} is stored (ids look like acme-zendesk:123)"
                raise ImportFileError(path, reason, line, column)


# --- accounts ---------------------------------------------------------------------------

# An empty mrr or created_at cell keeps the stored value (billing exports often blank a
# churned account's MRR, which churn_rate still needs); an empty churned_at means the
# account is active, so it clears a churn (a win-back). A column left out changes nothing.
_ACCOUNT_SETS = {
    "mrr": "COALESCE(:mrr, mrr)",
    "created_at": "COALESCE(:created_at, created_at)",
    "churned_at": ":churned_at",
}
_ID_SHAPE = re.compile(r"[\w.-]+:\S+")  # "acme-zendesk:77": a stored id, never a new name


@dataclass(frozen=True)
class _Account:
    organization: str
    mrr: float | None
    created_at: int | None  # epochs, as stored
    churned_at: int | None


def import_accounts(engine: Engine, path: Path, tz: tzinfo) -> ImportResult:
    """Set MRR, creation and churn dates of organizations from a CSV; all rows or none."""
    columns, rows = _read(path, ACCOUNT_COLUMNS, ("organization",))
    accounts = _parse(path, rows, _account, tz)
    with write_transaction(engine) as conn:
        targets = _resolve(path, conn, rows, accounts)
        created, updated = _write_accounts(conn, columns, accounts, targets)
    unchanged = len(accounts) - created - updated
    return ImportResult(path, len(accounts), created, updated, unchanged)


def _account(cells: Cells, tz: tzinfo) -> _Account:
    mrr = _number(cells, "mrr") if cells.get("mrr") else None
    if mrr is not None and mrr < 0:
        raise _CellError("mrr", f"{cells['mrr']} is negative")
    created, churned = _instant(cells, "created_at", tz), _instant(cells, "churned_at", tz)
    # Only against the file's created_at: a helpdesk's organization date is when the account
    # was entered there (a migrated helpdesk dates them all at the move), not when it began.
    if created and churned and churned < created:
        reason = f"{cells['churned_at']} is before created_at {cells['created_at']}"
        raise _CellError("churned_at", reason)
    return _Account(_need(cells, "organization"), mrr, to_epoch(created), to_epoch(churned))


def _resolve(
    path: Path, conn: Connection, rows: Rows, accounts: list[_Account]
) -> list[tuple[str, bool]]:
    """Each account's organization id, and whether it is to be created."""
    stored = {r.id: r.name for r in conn.execute(text("SELECT id, name FROM organization"))}
    by_name: dict[str, list[str]] = {}
    for org_id, name in stored.items():
        if name:
            by_name.setdefault(_fold(name), []).append(org_id)
    targets, first = [], dict[str, int]()
    for (line, _), account in zip(rows, accounts, strict=True):
        with _at_line(path, line):
            target = _match(account.organization, stored, by_name)
            if target[0] in first:
                reason = f"{target[0]} is already the organization of line {first[target[0]]}"
                raise _CellError("organization", reason)
        first[target[0]] = line
        targets.append(target)
    return targets


def _match(
    value: str, stored: dict[str, str | None], by_name: dict[str, list[str]]
) -> tuple[str, bool]:
    if value in stored:
        return value, False
    ids = sorted(by_name.get(_fold(value), []))
    if len(ids) > 1:
        reason = f"{value!r} is the name of {len(ids)} organizations: {', '.join(ids)}; use an id"
        raise _CellError("organization", reason)
    if ids:
        return ids[0], False
    if _ID_SHAPE.fullmatch(value):
        raise _CellError("organization", f"no organization {value!r} is stored")
    slug = re.sub(r"[\W_]+", "-", _fold(value)).strip("-")
    if not slug:
        raise _CellError("organization", f"{value!r} has no letters or digits to make an id of")
    new_id = f"{IMPORT_CONNECTOR}:{slug}"
    if new_id in stored:  # another spelling of a name an earlier import created
        reason = f"{value!r} would be stored as {new_id}, the id of {stored[new_id]!r}; use it"
        raise _CellError("organization", reason)
    return new_id, True


def _fold(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _write_accounts(
    conn: Connection, columns: list[str], accounts: list[_Account], targets: list[tuple[str, bool]]
) -> tuple[int, int]:
    """Create the new organizations, set the given columns on all; returns how many are new
    and how many stored ones changed."""
    pairs = list(zip(accounts, targets, strict=True))
    new = [(org_id, a) for a, (org_id, is_new) in pairs if is_new]
    orgs = [base.Organization(i.partition(":")[2], a.organization) for i, a in new]
    if orgs:  # created_at comes with the update below
        upsert_records(conn, IMPORT_CONNECTOR, orgs)
    given = [c for c in _ACCOUNT_SETS if c in columns]
    if not given:
        return len(orgs), 0
    sets = ", ".join(f"{c} = {_ACCOUNT_SETS[c]}" for c in given)
    # Only a row whose values differ is written, so the row count is what changed.
    differs = sql_for(conn).differs(given, [_ACCOUNT_SETS[c] for c in given])
    # The SET and WHERE clauses are this module's constants; values are bound.
    update = text(f"UPDATE organization SET {sets} WHERE id = :id AND {differs}")  # noqa: S608
    params = {fresh: [{**dataclasses.asdict(a), "id": i} for a, (i, is_new) in pairs
                      if is_new is fresh] for fresh in (True, False)}  # fmt: skip
    if params[True]:
        conn.execute(update, params[True])
    updated = conn.execute(update, params[False]).rowcount if params[False] else 0
    return len(orgs), max(updated, 0)
