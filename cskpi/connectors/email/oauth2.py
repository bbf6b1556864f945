"""OAuth2 for the mailbox: the ``oauth2`` settings and an access token kept fresh.

Gmail and Microsoft 365 refuse passwords over IMAP; they take an OAuth2 access token in a SASL
XOAUTH2 or OAUTHBEARER exchange (:mod:`.sasl`). cskpi holds a refresh token (a secret
reference) and trades it at the provider's token endpoint for access tokens (RFC 6749 §6:
``grant_type=refresh_token``), which live about an hour.

One :class:`Grant` per (token endpoint, client, configured refresh token) lives for the whole
process, because the daemon builds its connectors anew for every run: the access token is
reused until ``MARGIN`` before it expires, and a refresh token the provider rotates
(Microsoft does on every refresh) is used from then on. When the configured reference is
``keyring:NAME`` the new refresh token is also written back there, so a restart starts from
it; ``env:`` and ``file:`` references are never written.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Literal, Self
from urllib.parse import urlsplit

import orjson
import requests
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from cskpi.core.clock import Clock
from cskpi.core.config.hosts import plain_http_elsewhere
from cskpi.core.config.secrets import Secret, SecretError, redact, register_secret, set_secret
from cskpi.core.http.client import AuthError, FatalAPIError, safe_url

log = logging.getLogger("cskpi.connectors.email.oauth2")

Provider = Literal["google", "microsoft", "custom"]
Mechanism = Literal["XOAUTH2", "OAUTHBEARER"]

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105
# Microsoft wants the scope on a refresh; offline_access keeps a refresh token coming back.
MICROSOFT_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
MARGIN = 300.0  # refresh this many seconds before the access token expires
DEFAULT_LIFETIME = 3600.0  # when the endpoint gives no expires_in (RFC 6749 makes it optional)
TIMEOUT = 30.0  # seconds, as the HTTP connectors' requests
_TENANT = re.compile(r"[A-Za-z0-9.-]+")
_UNRESOLVED = ("Name or service not known", "Temporary failure in name resolution",
               "nodename nor servname provided", "Failed to resolve")  # fmt: skip
# RFC 6749 §5.2 error codes, as cskpi check words them.
_REFUSALS = {
    "invalid_grant": ("revoked or expired refresh token", "refresh_token"),
    "invalid_client": ("unknown client or wrong client secret", "client_id and client_secret"),
    "unauthorized_client": ("the client may not use refresh tokens", "client_id"),
    "invalid_scope": ("a scope the refresh token was not granted", "scope"),
}


class OAuth2Settings(BaseModel):
    """The ``oauth2 = { … }`` table of an email connector (instead of ``password``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider = Field(description="google | microsoft | custom.")
    client_id: str = Field(min_length=1, description="The OAuth2 app's client id.")
    client_secret: Secret | None = Field(
        default=None, description="The client secret (a secret reference); none: a public client."
    )
    refresh_token: Secret = Field(description="The refresh token (a secret reference).")
    token_url: str | None = Field(
        default=None, description="Default by provider; custom: required."
    )
    tenant: str | None = Field(default=None, description='Microsoft tenant; default "common".')
    scope: str | None = Field(default=None, description="Scope sent on refresh.")
    mechanism: Mechanism | None = Field(
        default=None, description="XOAUTH2 | OAUTHBEARER; default: what the server offers."
    )
    _keyring_name: str | None = PrivateAttr(default=None)

    @field_validator("mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keyring(cls, data: object, handler: ValidatorFunctionWrapHandler) -> Self:
        """The keyring entry a rotated refresh token is written back to (the reference is
        resolved away by validation)."""
        settings: Self = handler(data)
        reference = data.get("refresh_token") if isinstance(data, dict) else None
        if isinstance(reference, str) and reference.startswith("keyring:"):
            settings._keyring_name = reference.removeprefix("keyring:")
        return settings

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.provider == "custom" and not self.token_url:
            raise ValueError('provider = "custom" needs token_url')
        if self.tenant is not None and self.provider != "microsoft":
            raise ValueError('tenant is for provider = "microsoft" only')
        if self.tenant is not None and not _TENANT.fullmatch(self.tenant):
            raise ValueError("tenant must be a tenant id or domain (letters, digits, . and -)")
        if self.token_url is not None:
            _check_url(self.token_url)
        return self

    @property
    def url(self) -> str:
        """The token endpoint: ``token_url``, else the provider's."""
        if self.token_url:
            return self.token_url
        if self.provider == "google":
            return GOOGLE_TOKEN_URL
        return MICROSOFT_TOKEN_URL.format(tenant=self.tenant or "common")

    @property
    def keyring_name(self) -> str | None:
        return self._keyring_name

    def refresh_scope(self) -> str | None:
        return self.scope or (MICROSOFT_SCOPE if self.provider == "microsoft" else None)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("token_url must be an https:// URL")
    if plain_http_elsewhere(url):
        raise ValueError(
            "token_url is plain http; use https:// (http:// is allowed only for 127.0.0.1 "
            "and localhost)"
        )


class TokenRefusedError(AuthError):
    """The token endpoint refused the refresh token or the client (an RFC 6749 §5.2 error)."""


class TokenEndpointUnreachableError(ConnectionError):
    """No answer from the token endpoint: refused, unresolvable, timed out or a TLS failure."""


@dataclass
class Grant:
    """The process's current refresh token and access token for one configured grant."""

    refresh_token: str
    access_token: str | None = None
    expires_at: float = 0.0  # on the clock's monotonic ``now``
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_grants: dict[tuple[str, str, str], Grant] = {}
_grants_lock = threading.Lock()


def forget_tokens() -> None:
    """Drop every cached grant (tests; a process otherwise keeps them for its lifetime)."""
    with _grants_lock:
        _grants.clear()


def _grant_of(settings: OAuth2Settings) -> Grant:
    configured = settings.refresh_token.get_secret_value()
    digest = hashlib.sha256(configured.encode()).hexdigest()
    with _grants_lock:
        return _grants.setdefault((settings.url, settings.client_id, digest), Grant(configured))


class TokenSource:
    """Access tokens for connector ``name``: cached, refreshed ``MARGIN`` before expiry."""

    def __init__(self, name: str, settings: OAuth2Settings, clock: Clock) -> None:
        self.name, self.settings, self.clock = name, settings, clock
        self.grant = _grant_of(settings)

    @property
    def mechanism(self) -> Mechanism | None:
        return self.settings.mechanism

    def token(self) -> tuple[str, bool]:
        """A usable access token, and whether it was fetched just now (a cached one the
        server refuses is worth one refresh; a fresh one is not)."""
        with self.grant.lock:
            cached = self.grant.access_token
            if cached is not None and self.clock.now() < self.grant.expires_at - MARGIN:
                return cached, False
            return self._refresh(), True

    def renew(self, refused: str) -> str:
        """A new access token in place of ``refused``, which the server rejected (expired
        or revoked early); another thread may have renewed it already."""
        with self.grant.lock:
            current = self.grant.access_token
            if current is not None and current != refused:
                return current
            return self._refresh()

    def forget(self, refused: str) -> None:
        """Do not offer ``refused`` again."""
        with self.grant.lock:
            if self.grant.access_token == refused:
                self.grant.access_token = None

    def _refresh(self) -> str:
        started = self.clock.now()
        body = self._post()
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise FatalAPIError(f"{self._where()} answered without an access_token")
        register_secret(token)
        self.grant.access_token = token
        self.grant.expires_at = started + _lifetime(body.get("expires_in"))
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self.grant.refresh_token:
            self._rotate(rotated)
        log.debug("%s: got an OAuth2 access token from %s", self.name, safe_url(self.settings.url))
        return token

    def _rotate(self, refresh_token: str) -> None:
        register_secret(refresh_token)
        self.grant.refresh_token = refresh_token
        name = self.settings.keyring_name
        if name is None:
            log.debug("%s: the token endpoint issued a new refresh token; using it until exit "
                      "(not written back: the reference is not keyring:)", self.name)  # fmt: skip
            return
        try:
            set_secret(name, refresh_token)
        except SecretError as exc:
            log.warning("%s: could not store the new refresh token in keyring:%s (%s); "
                        "using it until exit", self.name, name, exc)  # fmt: skip
            return
        log.debug("%s: stored the new refresh token in keyring:%s", self.name, name)

    def _form(self) -> dict[str, str]:
        s = self.settings
        form = {"grant_type": "refresh_token", "refresh_token": self.grant.refresh_token,
                "client_id": s.client_id}  # fmt: skip
        if s.client_secret is not None:
            form["client_secret"] = s.client_secret.get_secret_value()
        if scope := s.refresh_scope():
            form["scope"] = scope
        return form

    def _post(self) -> dict[str, object]:
        """One form POST with HttpClient's timeout. Not through HttpClient itself: it sends
        JSON bodies to paths under a base URL, and a token endpoint takes a form at its own URL.
        No retries: a refresh that fails fails this run, and the next run asks again."""
        with requests.Session() as session:  # honours REQUESTS_CA_BUNDLE and proxies
            return self._send(session)

    def _send(self, session: requests.Session) -> dict[str, object]:
        try:
            response = session.post(
                self.settings.url, data=self._form(), headers={"Accept": "application/json"},
                timeout=TIMEOUT, allow_redirects=False,
            )  # fmt: skip
        except requests.exceptions.SSLError as exc:
            raise TokenEndpointUnreachableError(
                f"{self._where()}: TLS verification failed; set REQUESTS_CA_BUNDLE to its CA"
            ) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TokenEndpointUnreachableError(
                f"cannot reach {self._where()}: {_cause(exc)}"
            ) from exc
        body = _json(response)
        if response.status_code >= 400 or "error" in body:
            raise self._refusal(response, body)
        return body

    def _refusal(self, response: requests.Response, body: dict[str, object]) -> Exception:
        error = body.get("error")
        outcome = f"{response.status_code} {response.reason}"
        if not isinstance(error, str):
            return FatalAPIError(f"{self._where()} answered {outcome}", status=response.status_code)
        meaning, key = _REFUSALS.get(error, ("", "oauth2"))
        said = _description(body.get("error_description"))
        why = "; ".join(part for part in (meaning, said) if part)
        return TokenRefusedError(
            f"{self._where()} refused the refresh token ({error}{': ' + why if why else ''}): "
            f"check connectors.{self.name}.oauth2.{key.replace(' and ', ' and oauth2.')}"
            + (" (sign in again for a new one)" if error == "invalid_grant" else ""),
            status=response.status_code,
        )

    def _where(self) -> str:
        return f"the token endpoint {safe_url(self.settings.url)} of connector {self.name}"


def _lifetime(value: object) -> float:
    """``expires_in`` in seconds (a number, or a string of one as some endpoints send)."""
    try:
        seconds = float(value) if isinstance(value, int | float | str) else DEFAULT_LIFETIME
    except ValueError:
        return DEFAULT_LIFETIME
    return seconds if seconds > 0 else DEFAULT_LIFETIME


def _json(response: requests.Response) -> dict[str, object]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _description(value: object) -> str:
    """The first line of ``error_description`` (Microsoft's add trace and correlation ids)."""
    if not isinstance(value, str):
        return ""
    first = value.strip().splitlines()[0] if value.strip() else ""
    return redact(first[:200])


def _cause(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT:g} s"
    if "Connection refused" in text:
        return "connection refused"
    if any(said in text for said in _UNRESOLVED):
        return "the host name does not resolve"
    return type(exc).__name__
