"""The digest email's HTML rendered by a real browser (headless Chromium): it loads, the chart
image decodes, and the numbers are on screen (``innerText``: what is rendered, not markup)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cskpi.core.digest.runs import preview, write_files
from tests.core.digest.test_digest import AT, HELPDESK, helpdesk

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip
# Runs after the load event: the rendered text and the decoded image size, into the DOM.
PROBE = """<script>window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({text: document.body.innerText,
    images: Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight])});
  document.body.appendChild(probe);
});</script>"""

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (scripts/test installs it)"
)


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "profile"  # a fresh profile for every run
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def test_the_email_renders_in_chromium_with_its_numbers_and_chart(tmp_path: Path) -> None:
    cfg = helpdesk(tmp_path, HELPDESK)
    files = write_files(preview(cfg, "daily", AT), tmp_path / "out")
    page = next(p for p in files if p.suffix == ".html")
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"), encoding="utf-8")

    dom = chromium(tmp_path, "--dump-dom", probe.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert match is not None, dom[-2000:]
    seen = json.loads(match[1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert seen["images"] == [[True, 1080, 600]]
    text = " ".join(seen["text"].split())  # as read on screen, whitespace aside
    for expected in (
        "daily digest · Thu 19 Nov 2026 Changes vs Wed 18 Nov 2026",
        "Tickets created 3 ▲ +2 (+200.0%)",
        "Tickets solved 2 ▲ +1 (+100.0%)",
        "First response (median) p90 1h 51m, mean 1h 15m, n 2 1h 15m ▲ +1h 05m (+650.0%)",
        "CSAT no csat rating in the window -",
        "SLA first response met 2 / 3 66.7% ▼ -33.3 pts",
        "SLA breaches: 1 first response",
        "23h 00m normal hd:t3 Ticket 3 (SLA breached)",
        "Ana 1 0h 30m - Ben 1 2h 00m -",
    ):
        assert expected in text, (expected, text)

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=720,1200", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 720
