"""HTTP, once: the session, retries, timeouts, rate limits and the only sleeping in cskpi.

Every HTTP connector talks through :class:`HttpClient`: a ``requests.Session`` with tenacity
wrapped once around each send. 429, 408, 5xx, dropped connections and timeouts are retried,
``Retry-After`` first (seconds or an HTTP date), otherwise exponential backoff with jitter;
other 4xx fail at once, and 401/403 name the secret to fix. A :class:`RateLimiter` paces
requests to the vendor's quota from a configured budget and the vendor's own headers, so a
long backfill runs at the ceiling without provoking 429s. All waiting goes through a
:class:`Clock`, so tests run on a :class:`FakeClock` and never sleep.
"""

from __future__ import annotations

import copy
import email.utils
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import orjson
import requests
import tenacity
from requests.auth import AuthBase, HTTPBasicAuth

from cskpi.core.clock import Clock, SystemClock
from cskpi.core.config.hosts import plain_http_elsewhere
from cskpi.core.config.secrets import redact, register_secret
from cskpi.core.http.ratelimit import MAX_RETRY_AFTER, RateLimiter, header_number

log = logging.getLogger("cskpi.http")

_SENSITIVE_PARAM = re.compile(r"token|secret|passw|api_?key|signature|^key$|^auth", re.IGNORECASE)
_DETAIL_CHARS = 300


class APIError(Exception):
    """A request that failed. The message is redacted: it never carries a registered secret."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(redact(message))
        self.status, self.retry_after = status, retry_after


class RetriableAPIError(APIError):
    """429, 408, 5xx, a dropped connection or a timeout: worth trying again."""


class FatalAPIError(APIError):
    """Any other 4xx, or a response that cannot be used: trying again would not help."""


class AuthError(FatalAPIError):
    """401/403: the credentials are wrong; the message names the setting to fix."""


def retry_after_seconds(value: str | None, wall_now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    seconds = header_number(value.strip())
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - wall_now)


def safe_url(url: str | None) -> str:
    """``url`` fit for a message: no user info, token-like query values masked, redacted."""
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = [
        (k, "***" if _SENSITIVE_PARAM.search(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return redact(urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*[]"), "")))


def _where(sent: requests.Response | requests.PreparedRequest) -> str:
    request = sent.request if isinstance(sent, requests.Response) else sent
    return f"{request.method} {safe_url(request.url)}"


def _detail(response: requests.Response) -> str:
    text = " ".join(response.text[:_DETAIL_CHARS].split())
    return f": {text}" if text else ""


def decode_json(response: requests.Response) -> Any:
    """The response's JSON body; a body that is not JSON is a :class:`FatalAPIError`.

    orjson, because parsing is most of a connector's CPU (docs/performance.md); the stdlib
    is the fallback for what orjson refuses and JSON allows (integers beyond 64 bits).
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(response.content)
    except ValueError:
        kind = response.headers.get("Content-Type", "no Content-Type")
        raise FatalAPIError(
            f"{_where(response)} returned a body that is not JSON ({kind}){_detail(response)}",
            status=response.status_code,
        ) from None


class HttpClient:
    """One vendor account's session: base URL, auth, CA bundle, retries and pacing.

    ``name`` is the connector's name and ``secret_hint`` the settings key holding its
    credential, so that a 401/403 says which secret to fix. Only idempotent requests go
    through here (reads, and searches such as Intercom's ``POST conversations/search``):
    every request may be sent more than once.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        auth: AuthBase | None = None,
        headers: Mapping[str, str] | None = None,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        max_attempts: int = 8,
        max_backoff: float = 60.0,
        longest_wait: float = MAX_RETRY_AFTER,
        secret_hint: str = "api_token",  # noqa: S107 - the name of a setting, not a secret
    ) -> None:
        self.name, self.secret_hint, self.timeout = name, secret_hint, timeout
        self.longest_wait = longest_wait  # a vendor asking for more fails the run instead
        _refuse_plaintext(name, base_url)
        self.base_url = base_url.rstrip("/") + "/"
        self.limiter, self.max_attempts = limiter, max_attempts
        self.clock: Clock = clock or SystemClock()
        self.session = requests.Session()
        self.session.auth = auth
        self.session.headers.update(headers or {})
        if ca_bundle:
            self.session.verify = str(ca_bundle)
        _register_credentials(auth, headers or {})
        self._environments: dict[tuple[str, str, int | None], dict[str, Any]] = {}
        self._backoff = tenacity.wait_exponential_jitter(initial=1, max=max_backoff, jitter=1)
        self._retrying = tenacity.Retrying(
            sleep=self.clock.sleep,
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(RetriableAPIError),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def with_limiter(self, limiter: RateLimiter | None) -> HttpClient:
        """The same session and settings paced by another limiter (an endpoint's own quota)."""
        sibling = copy.copy(self)
        sibling.limiter = limiter
        return sibling

    def url(self, path_or_url: str) -> str:
        """A path joined to ``base_url``; an absolute URL only on the same scheme, host, port."""
        if "://" not in path_or_url:
            return self.base_url + path_or_url.lstrip("/")
        if _origin(path_or_url) != _origin(self.base_url):
            raise FatalAPIError(
                f"{self.name}: refusing to follow {safe_url(path_or_url)}: "
                f"it is not on {safe_url(self.base_url)}"
            )
        return path_or_url

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Send with retries and pacing; a 2xx/3xx response or an :class:`APIError`."""
        prepared = self.session.prepare_request(
            requests.Request(method, self.url(path_or_url), params=dict(params or {}), json=json)
        )
        try:
            return self._retrying(self._attempt, prepared)
        except RetriableAPIError as exc:
            raise RetriableAPIError(
                f"{exc} (gave up after {self.max_attempts} attempts)", status=exc.status
            ) from exc

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> requests.Response:
        """``GET`` a path under ``base_url`` or a same-host URL (a vendor's next-page link)."""
        return self.request("GET", path_or_url, params=params)

    def post(
        self, path_or_url: str, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> requests.Response:
        """``POST`` a JSON body (idempotent searches only: it may be retried)."""
        return self.request("POST", path_or_url, params=params, json=json)

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``GET`` and return the JSON object of the body."""
        return _object(self.get(path_or_url, params))

    def post_json(self, path_or_url: str, json: Any = None) -> dict[str, Any]:
        """``POST`` and return the JSON object of the body."""
        return _object(self.post(path_or_url, json))

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()

    def _attempt(self, prepared: requests.PreparedRequest) -> requests.Response:
        slot = self.limiter.acquire() if self.limiter else None
        response: requests.Response | None = None
        try:
            response = self._send(prepared)
        finally:
            if self.limiter and slot:
                self.limiter.release(slot, response)
        if self.limiter and (pause := self.limiter.pause()) > self.longest_wait:
            raise FatalAPIError(
                f"{self.name}: the vendor's quota is used up for {pause:,.0f} s more "
                f"({_where(response)}), longer than the longest wait ({self.longest_wait:,.0f} s): "
                "this run stops here and the next one resumes"
            )
        self._check(response)
        return response

    def _send(self, prepared: requests.PreparedRequest) -> requests.Response:
        """One send, following redirects only within ``base_url``'s scheme, host and port."""
        for _ in range(_MAX_REDIRECTS):
            response = self._send_once(prepared)
            target = self.session.get_redirect_target(response)
            if target is None:
                return response
            prepared = prepared.copy()
            prepared.url = self.url(urljoin(response.url, target))  # refuses another origin
        raise FatalAPIError(
            f"{self.name}: {_where(prepared)}: more than {_MAX_REDIRECTS} redirects"
        )

    def _send_once(self, prepared: requests.PreparedRequest) -> requests.Response:
        settings = self._environment(prepared.url or "")
        try:
            return self.session.send(
                prepared, timeout=self.timeout, allow_redirects=False, **settings
            )
        except requests.exceptions.SSLError as exc:  # a ConnectionError, but retrying won't help
            raise FatalAPIError(
                f"{self.name}: TLS verification failed for {_where(prepared)} "
                f"({type(exc).__name__}); set ca_bundle to the server's CA certificate"
            ) from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            if (cause := _unreachable(exc)) is not None:  # waiting will not bring the host
                raise FatalAPIError(f"{self.name}: {_where(prepared)}: {cause}") from exc
            raise RetriableAPIError(
                f"{self.name}: {_where(prepared)}: {type(exc).__name__}"
            ) from exc

    def _environment(self, url: str) -> dict[str, Any]:
        """send() skips the environment (REQUESTS_CA_BUNDLE, proxies) unless merged in here.
        Read once per origin: scanning os.environ on every request showed in a connector that
        sends one request per record (docs/performance.md); proxies depend on the host only."""
        origin = _origin(url)
        found = self._environments.get(origin)
        if found is None:
            found = dict(
                self.session.merge_environment_settings(url, {}, None, self.session.verify, None)
            )
            self._environments[origin] = found
        return found

    def _check(self, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        outcome = f"{status} {response.reason} on {_where(response)}"
        if status in (401, 403):
            raise AuthError(
                f"the token for connector {self.name} is rejected ({outcome}): "
                f"check {self.secret_hint}{_detail(response)}",
                status=status,
            )
        if status in (408, 429) or status >= 500:
            retry_after = retry_after_seconds(
                response.headers.get("Retry-After"), self.clock.wall()
            )
            if retry_after is not None and retry_after > self.longest_wait:
                raise FatalAPIError(
                    f"{self.name}: {outcome} asks to wait {retry_after:,.0f} s, longer than the "
                    f"longest wait ({self.longest_wait:,.0f} s): this run stops here and the "
                    "next one resumes",
                    status=status,
                )
            raise RetriableAPIError(
                f"{self.name}: {outcome}{_detail(response)}", status=status, retry_after=retry_after
            )
        raise FatalAPIError(f"{self.name}: {outcome}{_detail(response)}", status=status)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, APIError) and exc.retry_after is not None:
            return min(exc.retry_after, self.longest_wait)
        return float(self._backoff(state))

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        attempt = f"attempt {state.attempt_number + 1} of {self.max_attempts}"
        log.warning("%s; retrying in %.1f s (%s)", exc, wait, attempt)


_MAX_REDIRECTS = 5
# What the resolver and the kernel say when a host cannot be reached at all; retrying for
# minutes would only delay saying so (socket.gaierror and ECONNREFUSED messages).
_UNREACHABLE = (
    "Name or service not known",
    "nodename nor servname provided",
    "Temporary failure in name resolution",
    "No address associated with hostname",
    "Failed to resolve",
    "Connection refused",
)


def _unreachable(exc: Exception) -> str | None:
    """The cause, when ``exc`` says the host does not resolve or refuses connections."""
    text = str(exc)
    return next((cause for cause in _UNREACHABLE if cause in text), None)


def _refuse_plaintext(name: str, base_url: str) -> None:
    """Credentials never cross the network in clear: http:// only to this machine."""
    if plain_http_elsewhere(base_url):
        raise FatalAPIError(
            f"{name}: base_url {safe_url(base_url)} is plain http; use https:// "
            "(http:// is allowed only for 127.0.0.1 and localhost)"
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def _object(response: requests.Response) -> dict[str, Any]:
    body = decode_json(response)
    if not isinstance(body, dict):
        raise FatalAPIError(f"{_where(response)} returned JSON that is not an object")
    return body


def _register_credentials(auth: AuthBase | None, headers: Mapping[str, str]) -> None:
    # Belt and braces: settings resolve secrets through cskpi.core.config.secrets already.
    if isinstance(auth, HTTPBasicAuth):
        user, password = (
            part.decode() if isinstance(part, bytes) else str(part)
            for part in (auth.username, auth.password)
        )
        register_secret(password)
        register_secret(f"{user}:{password}")  # its base64 is what `Authorization: Basic` sends
    for key, value in headers.items():
        if key.lower() in ("authorization", "x-api-key", "api-key"):
            register_secret(value)
            register_secret(value.rpartition(" ")[2])
