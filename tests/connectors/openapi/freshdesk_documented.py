"""Freshdesk publishes no OpenAPI document: the query parameters its reference documents for
each endpoint cskpi reads (https://developers.freshdesk.com/api/), as a table the requests
are checked against.

Each entry: parameter -> the values the reference allows (a tuple of words, or a predicate).
Every list also takes ``page`` and ``per_page`` (at most 100; "Pagination").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Allowed = tuple[str, ...] | Callable[[str], bool]

_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _utc(value: str) -> bool:
    """'Only UTC format is accepted' - YYYY-MM-DDTHH:MM:SSZ."""
    return bool(_UTC.match(value))


def _number(value: str) -> bool:
    return value.isdigit()


def _per_page(value: str) -> bool:
    return value.isdigit() and 1 <= int(value) <= 100


def _includes(*words: str) -> Callable[[str], bool]:
    """``include`` takes a comma-separated list of the embeddable names."""
    return lambda value: all(part in words for part in value.split(","))


PAGING: Mapping[str, Allowed] = {"page": _number, "per_page": _per_page}

DOCUMENTED: Mapping[str, Mapping[str, Allowed]] = {
    # "View a list of tickets" (#list_all_tickets): filter, requester_id, email,
    # unique_external_id, company_id, updated_since, order_by, order_type, include.
    "/api/v2/tickets": {
        "filter": ("new_and_my_open", "watching", "spam", "deleted"),
        "requester_id": _number,
        "email": lambda v: "@" in v,
        "unique_external_id": lambda v: True,
        "company_id": _number,
        "updated_since": _utc,
        "order_by": ("created_at", "due_by", "updated_at", "status"),
        "order_type": ("asc", "desc"),
        "include": _includes("stats", "requester", "description", "company"),
    },
    # "List all conversations of a ticket" (#list_all_ticket_notes): pagination only.
    "/api/v2/tickets/{id}/conversations": {},
    # "List all agents" (#list_all_agents): email, mobile, phone, state.
    "/api/v2/agents": {
        "email": lambda v: "@" in v,
        "mobile": lambda v: True,
        "phone": lambda v: True,
        "state": lambda v: True,
    },
    "/api/v2/agents/me": {},  # "Currently authenticated agent" (#me)
    "/api/v2/groups": {},  # "List all groups" (#list_all_groups)
    "/api/v2/companies": {},  # "List all companies" (#list_all_companies)
    "/api/v2/surveys": {"state": lambda v: True},  # "List all surveys" (#list_all_surveys)
    # "View all satisfaction ratings" (#view_all_satisfaction_ratings): created_since, user_id.
    "/api/v2/surveys/satisfaction_ratings": {"created_since": _utc, "user_id": _number},
}

_CONVERSATIONS = re.compile(r"^/api/v2/tickets/\d+/conversations$")


def documented_path(path: str) -> str | None:
    if _CONVERSATIONS.match(path):
        return "/api/v2/tickets/{id}/conversations"
    return path if path in DOCUMENTED else None


def freshdesk_violation(method: str, path: str, query: Mapping[str, list[str]]) -> str | None:
    """What in a request its reference does not document, or ``None``."""
    endpoint = documented_path(path)
    if method != "GET" or endpoint is None:
        return f"{method} {path} is no documented read endpoint"
    allowed = {**DOCUMENTED[endpoint], **({} if endpoint.endswith("/me") else PAGING)}
    for key, values in query.items():
        check = allowed.get(key)
        if check is None:
            return f"{key} is not a documented parameter of {endpoint}"
        for value in values:
            fits = value in check if isinstance(check, tuple) else check(value)
            if not fits:
                return f"{key}={value!r} is not a documented value"
        if len(values) > 1:
            return f"{key} given {len(values)} times"
    return None
