"""Signing in to IMAP with an OAuth2 access token: SASL XOAUTH2 and OAUTHBEARER.

XOAUTH2 (Google, https://developers.google.com/gmail/imap/xoauth2-protocol; Microsoft
documents the same string) sends ``user=U ^A auth=Bearer T ^A ^A``. OAUTHBEARER (RFC 7628
§3.1) sends a GS2 header ``n,a=U,`` (RFC 5801, ``,`` and ``=`` escaped) then
``^A auth=Bearer T ^A ^A``; ``host`` and ``port`` are optional and left out, as imapclient
does. A refused token is answered with a continuation carrying base64 JSON (``{"status":
"401", …}``); the client then sends an empty response (XOAUTH2) or a single ``^A`` (RFC 7628
§3.2.3) and the server ends with ``NO``. imaplib base64-encodes what the callback returns.
"""

from __future__ import annotations

import logging

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from cskpi.connectors.email.oauth2 import Mechanism, TokenSource
from cskpi.core.config.secrets import redact, register_secret
from cskpi.core.http.client import AuthError

log = logging.getLogger("cskpi.connectors.email.oauth2")

_SCOPES = {"google": "https://mail.google.com/", "microsoft": "IMAP.AccessAsUser.All"}


def xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str) -> bytes:
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode()


def choose(client: IMAPClient, configured: Mechanism | None) -> Mechanism:
    """The configured mechanism, else XOAUTH2 unless the server offers only OAUTHBEARER."""
    if configured is not None:
        return configured
    if client.has_capability("AUTH=OAUTHBEARER") and not client.has_capability("AUTH=XOAUTH2"):
        return "OAUTHBEARER"
    return "XOAUTH2"


def sign_in(client: IMAPClient, user: str, tokens: TokenSource, host: str) -> None:
    """Authenticate with the access token; a cached token the server refuses (expired or
    revoked before its time) is refreshed once and tried again. Raises :class:`AuthError`
    naming the step that failed, never the token."""
    mechanism = choose(client, tokens.mechanism)
    token, fresh = tokens.token()
    refusal = _attempt(client, mechanism, user, token)
    if refusal is not None and not fresh:
        log.info("%s: the IMAP server refused the cached access token; refreshing it", tokens.name)
        token = tokens.renew(token)
        refusal = _attempt(client, mechanism, user, token)
    if refusal is None:
        return
    tokens.forget(token)
    scope = tokens.settings.scope or _SCOPES.get(tokens.settings.provider, "the mail scope")
    raise AuthError(
        f"the IMAP server {host} refused the OAuth2 access token for {user} ({mechanism}"
        f"{', ' + refusal if refusal else ''}): the token endpoint issued it, so check that "
        f"the app was granted {scope} and that {user} is the account that signed in"
    )


def _attempt(client: IMAPClient, mechanism: Mechanism, user: str, token: str) -> str | None:
    """None when signed in, else what the server said (its JSON status, its NO text)."""
    initial = (xoauth2 if mechanism == "XOAUTH2" else oauthbearer)(user, token)
    register_secret(initial.decode())  # its base64 is what travels
    said: list[str] = []

    def respond(challenge: bytes) -> bytes:
        if not said and not challenge:
            said.append("")
            return initial
        said.append(challenge.decode("utf-8", "replace"))
        return b"\x01" if mechanism == "OAUTHBEARER" else b""

    try:
        client.sasl_login(mechanism, respond)
    except LoginError as exc:
        details = [s for s in said if s] + [str(exc)]
        return redact(" ".join(" ".join(details).split()))[:300]
    return None
