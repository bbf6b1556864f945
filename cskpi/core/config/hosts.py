"""Whether a host is this machine: the one place credentials may travel in clear (tests,
a local proxy). IMAP, SMTP, the helpdesk APIs and Slack all ask here."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def plain_http_elsewhere(url: str) -> bool:
    """``url`` is ``http://`` to a host other than this machine."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback(parts.hostname)
