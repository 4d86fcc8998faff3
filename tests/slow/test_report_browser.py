"""The daily report's HTML page in a real browser: Debian's Chromium, headless, driven by its
chromedriver, as a phone (390 CSS px wide, mobile emulation: device metrics and the viewport
meta tag honoured) and as a desktop (1280 px). It renders, its three charts are there and drawn,
nothing is wider than the screen; a full-page screenshot of each is kept in build/report-browser/.

The page is the report of a crowded day made in process (tests/report_support.py: 14 producers,
one with a 97-character name, one with markup in it, every hour busy, one late). Chromium is
driven over the W3C WebDriver protocol, spoken here with urllib: no new dependency. Chromium
and chromedriver come from `make browser` (`make test-slow` runs it first).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from delivery import report_render
from infrastructure.cli.deployment import Deployment
from tests.report_support import busy_document

pytestmark = pytest.mark.slow

ARTEFACTS: Final = Path(__file__).parents[2] / "build" / "report-browser"
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
DEVICES: Final = {
    # An iPhone-sized phone: 390 x 844 CSS px at 3 device pixels each, a mobile viewport.
    "phone": {
        "width": 390,
        "height": 844,
        "mobile": {"width": 390, "height": 844, "pixelRatio": 3},
    },
    "desktop": {"width": 1280, "height": 900, "mobile": None},
}
MEASURE: Final = """
const root = document.documentElement;
const wider = [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .map((e) => e.tagName.toLowerCase() + (e.className ? "." + e.className : ""));
const charts = [...document.querySelectorAll("svg")].map((svg) => ({
  width: svg.getBoundingClientRect().width,
  height: svg.getBoundingClientRect().height,
  bars: svg.querySelectorAll("rect.bar").length,
}));
const verdict = document.getElementById("verdict");
return {
  innerWidth: window.innerWidth,
  scrollWidth: root.scrollWidth,
  bodyScrollWidth: document.body.scrollWidth,
  pageHeight: root.scrollHeight,
  wider: wider.slice(0, 20),
  charts: charts,
  verdictTop: verdict.getBoundingClientRect().top,
  verdictText: verdict.innerText,
};
"""


class WebDriver:
    """A chromedriver process and one session of headless Chromium, over W3C WebDriver."""

    def __init__(self, profile: Path, device: dict[str, Any]) -> None:
        chromedriver = shutil.which("chromedriver")
        chromium = shutil.which("chromium")
        if chromedriver is None or chromium is None:
            pytest.fail(
                "Chromium is not installed: run `make browser` (apt-get install chromium "
                "chromium-driver; `make test-slow` runs it first)"
            )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(  # noqa: S603  # fixed argv
            [chromedriver, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chromedriver did not answer within 30 s")
            time.sleep(0.1)
        options: dict[str, Any] = {
            "binary": chromium,
            "args": [
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={device['width']},{device['height']}",
            ],
        }
        if device["mobile"] is not None:
            options["mobileEmulation"] = {"deviceMetrics": device["mobile"]}
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        session = self._call("POST", "/session", {"capabilities": capabilities})
        self.session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310  # chromedriver on loopback
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310  # as above
            return json.loads(response.read())["value"]

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def execute(self, script: str) -> Any:
        return self._call("POST", f"{self.session}/execute/sync", {"script": script, "args": []})

    def full_page_png(self) -> bytes:
        """Chrome's own capture beyond the viewport (CDP through chromedriver)."""
        metrics = self._cdp("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self._cdp(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": metrics["width"],
                    "height": metrics["height"],
                    "scale": 1,
                },
            },
        )
        return base64.b64decode(shot["data"])

    def _cdp(self, command: str, params: dict[str, Any]) -> Any:
        return self._call(
            "POST", f"{self.session}/goog/cdp/execute", {"cmd": command, "params": params}
        )

    def quit(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebDriver]:
    driver = WebDriver(tmp_path / "profile", DEVICES[request.param])
    try:
        yield driver
    finally:
        driver.quit()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("browser", sorted(DEVICES), indirect=True)
def test_the_report_page_in_chromium(
    browser: WebDriver, request: pytest.FixtureRequest, provisioned: Deployment, tmp_path: Path
) -> None:
    device = request.node.callspec.params["browser"]
    width = DEVICES[device]["width"]
    # GIVEN the HTML report of a crowded day
    document = busy_document(provisioned)
    page = tmp_path / "report.html"
    page.write_text(report_render.page(document))
    # WHEN Chromium opens it as the device
    browser.open(page.as_uri())
    found = browser.execute(MEASURE)
    # THEN it renders at the device's width, the verdict first, at the top of the page ...
    assert found["innerWidth"] == width
    assert found["verdictText"].startswith("ATTENTION: all 144 files landed on 2026-11-25")
    assert found["verdictTop"] < 120
    # ... its three charts are drawn: the two shares, 24 hours of files, 24 of latency, the
    # hourly ones across the page
    charts = found["charts"]
    assert [chart["bars"] for chart in charts] == [2, 24, 24], charts
    assert all(chart["width"] > 200 and chart["height"] > 20 for chart in charts), charts
    assert all(chart["width"] >= min(width - 80, 700) for chart in charts[1:]), charts
    # ... and nothing is wider than the screen: no sideways scrolling
    assert found["scrollWidth"] <= width, found
    assert found["bodyScrollWidth"] <= width, found
    assert found["wider"] == [], found["wider"]
    # ... a full-page screenshot kept as the test's artefact
    png = browser.full_page_png()
    pixels = (DEVICES[device]["mobile"] or {}).get("pixelRatio", 1)
    assert png_size(png)[0] == width * pixels
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / f"report-{device}-{width}.png").write_bytes(png)
    shutil.copyfile(page, ARTEFACTS / "report.html")
