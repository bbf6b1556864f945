"""The report over the demo store in a real browser (headless Chromium over the DevTools
protocol, tests/cdp.py): no console error, no request but the file itself (every request is
intercepted and counted), screenshots at 1280 px and 375 px that decode and are not blank,
no horizontal page scroll on a 375 px phone, a dark scheme, and one printed A4 page or more
per section."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from cskpi.connectors.registry import installed
from cskpi.core import app, quickstart
from cskpi.core.config.file import load_config
from tests.cdp import Page, chromium_page
from tests.test_digest_chromium import CHROMIUM

END = datetime(2026, 11, 23, tzinfo=UTC)
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (scripts/test installs it)"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    path, _ = quickstart.prepare(folder / "demo", 600, 30, 1, END)
    config = load_config(path, installed())
    assert app.sync(config, installed()).ok
    request = app.KpiRequest(period="last-7d", now=END.isoformat(), by="agent")
    return app.report(config, request, folder / "report.html")


def picture(page: Page, width: int) -> Image.Image:
    image = Image.open(io.BytesIO(page.screenshot()))
    image.load()
    assert image.width == width
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "a blank or nearly blank screenshot"
    return image


def test_the_report_loads_alone_and_fits_a_desktop_and_a_phone(
    report: Path, tmp_path: Path
) -> None:
    with chromium_page(report, tmp_path / "profile") as page:
        assert page.blocked == []
        assert [u for u in page.requests if u != page.url] == []
        assert page.errors == []
        page.viewport(1280, 900, mobile=False)
        assert picture(page, 1280).convert("RGB").getpixel((2, 2)) == (255, 255, 255)
        page.viewport(375, 800, mobile=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert page.evaluate("window.innerWidth") == 375
        picture(page, 375)
        page.call("Emulation.setEmulatedMedia",
                  {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})  # fmt: skip
        assert picture(page, 375).convert("RGB").getpixel((2, 2)) == (13, 17, 23)
        pdf = page.call("Page.printToPDF", {"preferCSSPageSize": True})["data"]
        assert page.errors == []

    printed = base64.b64decode(pdf)
    assert printed.startswith(b"%PDF")
    assert b"/MediaBox [0 0 594.95996 841.91998]" in printed  # A4: 210 x 297 mm in points
    assert printed.count(b"/Type /Page\n") >= 15  # a page break before each of 15 sections


def test_a_remote_resource_would_be_caught(tmp_path: Path) -> None:
    """The checks above can fail: a page asking for an image elsewhere, and logging an
    error, is caught."""
    page_file = tmp_path / "remote.html"
    page_file.write_text('<!DOCTYPE html><img src="https://example.com/x.png" alt="x">'
                         '<script>console.error("boom")</script>')  # fmt: skip
    with chromium_page(page_file, tmp_path / "profile") as page:
        assert page.blocked == ["https://example.com/x.png"]
        assert '[{"type": "string", "value": "boom"}]' in page.errors
