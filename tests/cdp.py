"""Headless Chromium driven over the DevTools protocol through ``--remote-debugging-pipe``
(commands on fd 3, answers on fd 4, each a JSON text ended by NUL): no websocket, no port,
no third-party driver. Enough for the report's test: load a page with every request
intercepted (only the page itself is let through), collect console errors, resize the
viewport, evaluate an expression, take a screenshot.

https://chromedevtools.github.io/devtools-protocol/
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.test_digest_chromium import CHROMIUM, FLAGS


@dataclass
class Page:
    """One tab. ``blocked``: URLs of the requests other than ``url`` (all refused);
    ``errors``: console errors, uncaught exceptions and error log entries."""

    url: str
    send_fd: Any
    recv_fd: Any
    session: str = ""
    blocked: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _buffer: bytes = b""
    _next: int = 0

    def _send(self, method: str, params: dict[str, Any], session: bool = True) -> int:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        self.send_fd.write(json.dumps(message).encode() + b"\0")
        return self._next

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = self.recv_fd.read(1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> Any:
        wanted = self._send(method, params or {}, session)
        while True:
            message = self._read()
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if url == self.url:
                self._send("Fetch.continueRequest", {"requestId": params["requestId"]})
            else:
                self.blocked.append(url)
                refuse = {"requestId": params["requestId"], "errorReason": "BlockedByClient"}
                self._send("Fetch.failRequest", refuse)
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))

    def load(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attach = {"targetId": target["targetId"], "flatten": True}
        attached = self.call("Target.attachToTarget", attach, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        self.call("Page.navigate", {"url": self.url})
        while self._read_event() != "Page.loadEventFired":
            pass

    def _read_event(self) -> str | None:
        message = self._read()
        self._event(message)
        return message.get("method")

    def viewport(self, width: int, height: int, mobile: bool) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        self.call("Emulation.setDeviceMetricsOverride", metrics)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])


@contextmanager
def chromium_page(path: Path, profile: Path) -> Iterator[Page]:
    """``path`` loaded in a fresh headless Chromium; closed on exit."""
    to_browser, from_browser = os.pipe(), os.pipe()

    def pipes_on_3_and_4() -> None:  # in the child, before exec
        inbound = fcntl.fcntl(to_browser[0], fcntl.F_DUPFD, 10)
        outbound = fcntl.fcntl(from_browser[1], fcntl.F_DUPFD, 10)
        os.dup2(inbound, 3)
        os.dup2(outbound, 4)

    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
        close_fds=False, preexec_fn=pipes_on_3_and_4,  # a test: one thread
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(to_browser[0])
    os.close(from_browser[1])
    send = os.fdopen(to_browser[1], "wb", buffering=0)
    recv = os.fdopen(from_browser[0], "rb", buffering=0)
    page = Page(path.as_uri(), send, recv)
    try:
        page.load()
        yield page
    finally:
        with suppress(EOFError, OSError, RuntimeError):
            page.call("Browser.close", session=False)
        send.close()
        recv.close()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
