"""An OAuth2 authorization server on 127.0.0.1 for the mailbox's OAuth2 tests.

Two endpoints: ``POST /token`` trades a refresh token for an access token (RFC 6749 §6, the
request Google's and Microsoft's token endpoints take), ``POST /introspect`` answers Dovecot's
oauth2 passdb (``introspection_mode = post``: a form ``token=…``) with ``{"active": …,
"username": …}``. Every request's form is recorded, so tests see what cskpi sent.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

CLIENT_ID, CLIENT_SECRET = "cskpi-test-client", "client-secret-for-tests"


@dataclass
class Authority:
    """The server's state: which refresh tokens are good, and which access tokens."""

    expires_in: int = 3600
    rotate: bool = False  # issue a new refresh token with every access token (as Microsoft)
    outage: int | None = None  # answer /token with this status and no JSON
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> user
    access_tokens: dict[str, str] = field(default_factory=dict)  # access token -> user
    issued: list[str] = field(default_factory=list)  # access tokens, in order
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, form)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def grant(self, user: str) -> str:
        """A new refresh token for ``user``."""
        token = "rt-" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = user
        return token

    def revoke_access(self, token: str) -> None:
        self.access_tokens.pop(token, None)

    def refreshes(self) -> list[dict[str, str]]:
        return [form for path, form in self.requests if path == "/token"]

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if self.outage is not None:
            return self.outage, {}
        user = self.refresh_tokens.get(form.get("refresh_token", ""))
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if form.get("grant_type") != "refresh_token" or user is None:
            return 400, {"error": "invalid_grant",
                         "error_description": "Token has been expired or revoked."}  # fmt: skip
        access = "at-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = user
        self.issued.append(access)
        body: dict[str, object] = {"access_token": access, "expires_in": self.expires_in,
                                   "token_type": "Bearer", "scope": "mail"}  # fmt: skip
        if self.rotate:
            body["refresh_token"] = self.grant(user)  # the old one stays good, as Microsoft's
        return 200, body

    def introspect(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        user = self.access_tokens.get(form.get("token", ""))
        return 200, ({"active": True, "username": user} if user else {"active": False})

    def start(self) -> None:
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                with authority.lock:
                    authority.requests.append((self.path, form))
                    route = {"/token": authority.token, "/introspect": authority.introspect}
                    status, body = route[self.path](form) if self.path in route else (404, {})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
