"""The situation display in a real headless browser (Debian's chromium driven
by Playwright): the page shows the system tracks the gateway publishes on its
tracks topic, and loads nothing from anywhere but the gateway.

Set HILGW_UPDATE_SCREENSHOT=1 to write the screenshot to docs/img/display.png
(the README's picture); otherwise it goes to the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import pytest

from gateway.config import parse_config
from gateway.supervisor import Gateway

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
# Headless as root in a container: no sandbox (needs user namespaces), no GPU,
# and none of the background traffic a desktop browser makes on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]


def test_static_page_names_no_external_url() -> None:
    static = resources.files("gateway.web").joinpath("static")
    for name in ("index.html", "display.js", "display.css"):
        text = static.joinpath(name).read_text()
        assert not re.search(r"(https?:|wss?:)?//[A-Za-z0-9]", _strip_comments(text, name)), name
        assert "@import" not in text, name
        assert "url(" not in text, name


def _strip_comments(text: str, name: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    if name.endswith(".js"):
        text = re.sub(r"(?m)^\s*//.*$", "", text)
        # The one URL the page builds: ws(s)://<the host that served it>/ws.
        text = text.replace("://${location.host}", "")
    return text


async def test_display_shows_the_published_tracks(tmp_path: Path) -> None:
    if not CHROMIUM.exists():  # noqa: ASYNC240  # one stat() before anything starts
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): ./scripts/test installs it")
    pw = pytest.importorskip("playwright.async_api", reason="playwright is not installed: ./scripts/test")

    cfg = parse_config(
        {
            "gateway_id": "display",
            "mqtt": {"enabled": False},
            "fusion": {"publish_hz": 4.0},
            "emulation": {"scenario": "builtin:demo", "transport": "pty"},
            "web": {"port": 0, "update_hz": 4.0},
        }
    )
    requests: list[str] = []
    errors: list[str] = []
    shot = tmp_path / "display.png"
    async with Gateway(cfg) as gw:
        published = gw.tracks.subscribe("test", maxsize=4096)
        base = f"http://127.0.0.1:{gw.endpoints['web'].port}"
        async with pw.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1500, "height": 820})
                page.on("request", lambda r: requests.append(r.url))
                page.on("websocket", lambda ws: requests.append(ws.url))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(base + "/")

                # Until the page shows exactly the ids of a picture the gateway
                # published (it may lag the newest by a push or two), with at
                # least two confirmed tracks so the picture is worth a look.
                seen: list[tuple[int, set[int]]] = []
                shown: set[int] = set()
                deadline = time.monotonic() + 25.0
                while time.monotonic() < deadline:
                    seen += [(b.batch_sequence, {t.track_id for t in b.tracks}) for b in published.get_all()]
                    rows = await page.eval_on_selector_all(
                        "#tracks tbody tr[data-track-id]",
                        "rows => rows.map(r => [r.dataset.trackId, r.dataset.status])",
                    )
                    shown = {int(tid) for tid, _ in rows}
                    confirmed = sum(status == "confirmed" for _, status in rows)
                    if shown and confirmed >= 2 and any(ids == shown for _, ids in seen[-8:]):
                        break
                    await asyncio.sleep(0.25)
                else:
                    pytest.fail(
                        f"page shows {sorted(shown)}; last published {[sorted(i) for _, i in seen[-3:]]}"
                    )

                devices = await page.eval_on_selector_all(
                    "#devices tbody tr", "rows => rows.map(r => r.dataset.deviceId)"
                )
                assert sorted(devices) == [
                    "ew-ship-a", "ew-ship-a-nav", "ew-ship-b", "ew-ship-b-nav", "radar-fwd", "radar-rear"
                ]  # fmt: skip
                assert await page.text_content("#authority") == "HOLD"
                assert await page.text_content("#link") == "live"
                await asyncio.sleep(2.0)  # a few more pushes: trails in the picture
                await page.screenshot(path=str(shot))
            finally:
                await browser.close()

    assert shot.stat().st_size > 10_000
    assert requests, "the page made no request at all?"
    outside = [u for u in requests if urlparse(u).hostname != "127.0.0.1"]
    assert not outside, outside
    assert not errors, errors
    if os.environ.get("HILGW_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "img" / "display.png")
