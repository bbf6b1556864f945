"""What the store holds, read with plain SQL, and the form a record takes there.

The connector contract compares the two: ids carry the connector's name as a prefix (and
so do references to other records), times are integer Unix seconds, tags a JSON list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import Engine, text

from cskpi.connectors import base

TABLES = ("ticket", "message", "rating", "person", "grp", "organization", "status_change",
          "vendor_metric")  # fmt: skip
_TABLE_OF: dict[type, str] = {
    base.Ticket: "ticket", base.Message: "message", base.Rating: "rating",
    base.Person: "person", base.Group: "grp", base.Organization: "organization",
    base.StatusChange: "status_change",
}  # fmt: skip
# Columns holding another record's id: stored with the connector's name as prefix.
_REFS = frozenset({"ticket_id", "author_id", "agent_id", "requester_id", "organization_id",
                   "assignee_id", "group_id"})  # fmt: skip
_WITHOUT_EXTERNAL_ID = frozenset({"message", "rating"})
_WITHOUT_CONNECTOR = frozenset({"message"})

Row = dict[str, object]
Stored = dict[str, dict[str, Row]]  # table -> stored id -> row
Positions = dict[str, tuple[object, object]]  # stream -> stored (cursor, position)


def stored(engine: Engine, name: str) -> Stored:
    """Every row the connector ``name`` has in each table, by id (plain SQL)."""
    found: Stored = {}
    for table in TABLES:
        rows = query(engine, f"SELECT * FROM {table}")  # noqa: S608
        found[table] = {row_id(r): _decoded(r) for r in rows if row_id(r).startswith(f"{name}:")}
    return found


def row_id(row: Row) -> str:
    """A row's id; a status change, which has none, is named by its ticket, time and status,
    a vendor metric by its ticket and name."""
    if "id" in row:
        return str(row["id"])
    if "name" in row:
        return f"{row['ticket_id']}#{row['name']}"
    return f"{row['ticket_id']}@{row['at']}:{row['status']}"


def positions(engine: Engine, name: str) -> Positions:
    """Each stream's stored (cursor, position)."""
    sql = "SELECT stream, cursor, position FROM sync_state WHERE connector = :name"
    return {
        str(r["stream"]): (r["cursor"], r["position"]) for r in query(engine, sql, {"name": name})
    }


def query(engine: Engine, sql: str, params: Mapping[str, object] | None = None) -> list[Row]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), dict(params or {}))]


def rows_of(page: base.Page, name: str) -> Iterator[tuple[str, Row]]:
    """A page's records in the form the store keeps them (a status history as its changes;
    ``replaced`` says which tickets' earlier changes it drops)."""
    for record in page.records:
        if isinstance(record, base.StatusHistory):
            for at, status in record.changes:
                change = base.StatusChange(record.ticket_id, at, status)
                yield "status_change", _stored_form("status_change", asdict(change), name)
            continue
        if isinstance(record, base.VendorMetrics):
            for metric, seconds in record.metrics:
                row = {"ticket_id": f"{name}:{record.ticket_id}", "name": metric,
                       "seconds": seconds, "connector": name}  # fmt: skip
                yield "vendor_metric", row
            continue
        table = _TABLE_OF[type(record)]
        yield table, _stored_form(table, asdict(record), name)


def replaced(
    page: base.Page,
    name: str,
    kind: type[base.StatusHistory | base.VendorMetrics] = base.StatusHistory,
) -> set[str]:
    """The stored ticket ids whose status changes the page's histories replace (with
    ``kind`` VendorMetrics: whose vendor metrics the page's sets replace)."""
    return {
        f"{name}:{r.ticket_id}"
        for r in page.records
        if isinstance(r, base.StatusHistory | base.VendorMetrics) and isinstance(r, kind)
    }


def _stored_form(table: str, values: Row, name: str) -> Row:
    row = {column: _stored_value(column, value, name) for column, value in values.items()}
    if table == "status_change":
        row["connector"] = name
        return row
    row["id"] = f"{name}:{values['external_id']}"
    if table in _WITHOUT_EXTERNAL_ID:
        row.pop("external_id", None)
    if table not in _WITHOUT_CONNECTOR:
        row["connector"] = name
    return row


def _stored_value(column: str, value: object, name: str) -> object:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if column in _REFS and value is not None:
        return f"{name}:{value}"
    if column == "tags" and isinstance(value, Sequence) and not isinstance(value, str):
        return list(dict.fromkeys(value))  # a tag set: a repeated tag is kept once
    return value


def _decoded(row: Row) -> Row:
    tags = row.get("tags")
    return {**row, "tags": json.loads(tags)} if isinstance(tags, str) else row
