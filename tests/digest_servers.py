"""Real servers on 127.0.0.1 for the digest tests: an SMTP server (aiosmtpd, STARTTLS or TLS,
AUTH LOGIN/PLAIN) with a self-signed certificate, and an HTTP server that plays Slack (an
incoming webhook, and the Web API methods slack_sdk calls: auth.test, chat.postMessage,
files.getUploadURLExternal, the upload URL, files.completeUploadExternal).

Why a server and not ``responses`` for slack_sdk: its WebClient sends with urllib, which
``responses`` (a requests adapter) never sees. The config's ``base_url`` points the client
here, so the real SDK code path (retry handlers, upload steps) runs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SMTP_USER, SMTP_PASSWORD = "kpi@acme.test", "smtp-pa55word-xyz"
SLACK_TOKEN = "xoxb-test-token-123456"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- SMTP -------------------------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == SMTP_USER
            and data.password.decode() == SMTP_PASSWORD
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(folder: Path, *, implicit_tls: bool = False) -> Iterator[tuple[Mailbox, int]]:
    """STARTTLS required before AUTH (or TLS from the first byte), on a free port."""
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    options: dict[str, Any] = {"authenticator": box.authenticate, "auth_require_tls": True}
    if implicit_tls:  # aiosmtpd does not count TLS from the first byte as "TLS" for AUTH
        options.update(ssl_context=context, auth_require_tls=False)
    else:
        options.update(tls_context=context, require_starttls=True)
    port = free_port()  # the controller's readiness probe connects to the port it is given
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


# --- Slack ------------------------------------------------------------------------------


@dataclass
class SlackCall:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def payload(self) -> dict[str, Any]:
        """The arguments, whether sent as JSON or as a form."""
        if self.headers.get("content-type", "").startswith("application/json"):
            return dict(self.json())
        return self.form()


@dataclass
class SlackServer:
    port: int = 0
    calls: list[SlackCall] = field(default_factory=list)
    # path -> scripted (status, headers, body) answers used first, then the default
    script: dict[str, list[tuple[int, dict[str, str], str]]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]

    def answer(self, path: str) -> tuple[int, dict[str, str], str]:
        if self.script.get(path):
            return self.script[path].pop(0)
        if path.startswith("/hooks/"):
            return 200, {"Content-Type": "text/plain"}, "ok"
        if path.startswith("/upload/"):
            return 200, {"Content-Type": "text/plain"}, "OK - 1"
        return 200, {"Content-Type": "application/json"}, json.dumps(self._api(path))

    def _api(self, path: str) -> dict[str, Any]:
        method = path.removeprefix("/api/")
        if method == "auth.test":
            return {"ok": True, "team": "Acme", "user": "cskpi", "team_id": "T1"}
        if method == "chat.postMessage":
            return {"ok": True, "channel": "C0SUPPORT", "ts": "1763884800.000100"}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "upload_url": f"{self.base}/upload/F1", "file_id": "F1"}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": "F1", "title": "chart"}]}
        return {"ok": False, "error": "unknown_method"}


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        state: SlackServer = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        state.calls.append(SlackCall(self.path, headers, body))
        status, extra, text = state.answer(self.path)
        data = text.encode()
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def slack_server() -> Iterator[SlackServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = SlackServer(port=httpd.server_address[1])
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
