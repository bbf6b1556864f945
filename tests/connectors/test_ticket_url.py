"""Each connector type's link to a ticket in its helpdesk's agent UI, for digests (issue 23,
item 17). Formats: Zendesk https://{subdomain}.zendesk.com/agent/tickets/{id}, Freshdesk
https://{domain}.freshdesk.com/a/tickets/{id}, Intercom's Inbox
https://app[.eu|.au].intercom.com/a/inbox/_/inbox/conversation/{id}."""

from __future__ import annotations

from typing import Any

import pytest

from cskpi.connectors.registry import installed

TOKEN = "ticket-url-test-token"


@pytest.mark.parametrize(
    ("settings", "external_id", "url"),
    [
        ({"type": "zendesk", "subdomain": "acme", "access_token": TOKEN}, "123",
         "https://acme.zendesk.com/agent/tickets/123"),
        ({"type": "zendesk", "base_url": "https://acme.zendesk.com/", "access_token": TOKEN},
         "9", "https://acme.zendesk.com/agent/tickets/9"),
        ({"type": "zendesk", "base_url": "http://127.0.0.1:8080", "access_token": TOKEN},
         "9", None),  # a test server or proxy is no agent UI
        ({"type": "freshdesk", "domain": "acme", "api_key": TOKEN}, "42",
         "https://acme.freshdesk.com/a/tickets/42"),
        ({"type": "freshdesk", "base_url": "https://proxy.example", "api_key": TOKEN}, "42",
         None),
        ({"type": "intercom", "access_token": TOKEN}, "215474154263922",
         "https://app.intercom.com/a/inbox/_/inbox/conversation/215474154263922"),
        ({"type": "intercom", "access_token": TOKEN, "region": "eu"}, "7",
         "https://app.eu.intercom.com/a/inbox/_/inbox/conversation/7"),
        ({"type": "zendesk", "subdomain": "acme", "access_token": TOKEN}, "a/b?c",
         "https://acme.zendesk.com/agent/tickets/a%2Fb%3Fc"),  # an id is one path segment
        ({"type": "demo"}, "t1", None),
    ],
)  # fmt: skip
def test_ticket_url(settings: dict[str, Any], external_id: str, url: str | None) -> None:
    model = installed()[settings["type"]].Settings.model_validate(settings)
    assert model.ticket_url(external_id) == url


def test_a_mailbox_has_no_ticket_page() -> None:
    from cskpi.connectors.base import ConnectorSettings

    assert ConnectorSettings(type="plugin").ticket_url("1") is None
    assert installed()["email"].Settings.ticket_url is ConnectorSettings.ticket_url
