"""What the local vendor imitations (``*_server.py``) share: the HTTP plumbing around them.

Each imitation decides what to answer (:meth:`HttpImitation.respond` returns an
:class:`Answer`); this module serves it on 127.0.0.1 from a ``ThreadingHTTPServer`` in a
thread, scripts faults, and runs an imitation in its own process for the benchmarks
(:func:`serve_main`, whose first printed line is the URL).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

JSON = "application/json; charset=utf-8"
Fault = int | str  # an HTTP status to answer with, "drop" the connection, or "ok" (serve it)
Query = dict[str, list[str]]


@lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


def iso(ts: int) -> str:
    """``2026-01-01T00:00:00Z``; by hand, as strftime would dominate a page's rendering."""
    day, sec = divmod(ts, 86400)
    return f"{_day(day)}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"


@dataclass(frozen=True)
class Logged:
    """One request an imitation answered: when (its clock), where, and with what status."""

    at: float
    path: str
    query: Query
    status: int


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON, or str for a text or ready-made JSON body; status 0: drop
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = JSON


def one(query: Query, key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


class Faults:
    """Scripted faults: the next requests whose path matches get them, in order (``"ok"``
    lets one through, to place a fault mid-stream). ``exact`` matches the whole path,
    otherwise the scripted path is a prefix."""

    def __init__(self, *, exact: bool = False) -> None:
        self.exact = exact
        self._queue: list[tuple[str, Fault]] = []

    def add(self, path: str, *faults: Fault) -> None:
        self._queue += [(path, f) for f in faults]

    def take(self, path: str) -> Fault | None:
        """The fault for this request, if one is scripted and is not ``"ok"``."""
        found = next((f for f in self._queue if self._matches(path, f[0])), None)
        if found is None:
            return None
        self._queue.remove(found)
        return None if found[1] == "ok" else found[1]

    def _matches(self, path: str, scripted: str) -> bool:
        return path == scripted if self.exact else path.startswith(scripted)


class HttpImitation:
    """The server: :meth:`start` it, use :attr:`url` as ``base_url``, :meth:`stop` it (or
    use it as a context manager, which does both)."""

    methods: ClassVar[frozenset[str]] = frozenset({"GET"})
    url = ""
    _server: ThreadingHTTPServer | None = None
    # Sees every request as it arrives (method, path, query, JSON body, headers): the tests
    # check them against the vendors' published API documents (tests/connectors/openapi).
    on_request: Callable[[str, str, Query, Any, dict[str, str]], None] | None = None

    def respond(self, method: str, path: str, query: Query, body: Any, auth: str | None) -> Answer:
        raise NotImplementedError

    def warm(self) -> None:
        """Render every record once, before a benchmark."""

    def start(self) -> str:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(imitation: HttpImitation) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs

        def setup(self) -> None:
            super().setup()  # headers and body go out in separate writes: no Nagle stalls
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # http.server calls do_<METHOD>
            self._serve("GET", None)

        def do_POST(self) -> None:
            if "POST" not in imitation.methods:
                self.send_error(501, "Unsupported method ('POST')")
                return
            length = int(self.headers.get("Content-Length") or 0)
            self._serve("POST", json.loads(self.rfile.read(length) or b"{}"))

        def _serve(self, method: str, body: Any) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            auth = self.headers.get("Authorization")
            if imitation.on_request is not None:
                imitation.on_request(method, parts.path, query, body, dict(self.headers.items()))
            answer = imitation.respond(method, parts.path, query, body, auth)
            if answer.status == 0:
                self.close_connection = True
                return
            text = answer.body if isinstance(answer.body, str) else json.dumps(answer.body)
            payload = text.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.kind)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve_main(
    doc: str | None, make: Callable[[int, int], HttpImitation], count: str, default: int
) -> None:
    """Serve an imitation until killed; the first line printed is its URL.

    ``count`` names the size option (``tickets``, ``conversations``); ``make(size, seed)``.
    """
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument(f"--{count}", type=int, default=default)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warm", action="store_true", help="render every record up front")
    args = parser.parse_args()
    server = make(getattr(args, count), args.seed)
    if args.warm:
        server.warm()
    print(server.start(), flush=True)  # the parent reads the URL from this line
    threading.Event().wait()
