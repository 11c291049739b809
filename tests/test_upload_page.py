"""The browser upload page in headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_helpers import download, make_video, random_file, running_worker, server_offset
from conftest import TOKEN_SECRET, LiveServer
from playwright.sync_api import Browser, Page, sync_playwright

from client_sdk import mint_upload_token
from upload_service.core.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's screenshots are refreshed only on request (UPDATE_SCREENSHOTS=1), so
# that a test run leaves the checkout clean; otherwise they go to a temp dir.
SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "upload-page-screenshots"
)
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
ROW = "#uploads article.upload"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 900, "height": 720})
    page = context.new_page()
    yield page
    context.close()


def token(sub: str = "page-user") -> str:
    return mint_upload_token(TOKEN_SECRET, sub, ttl=600)


def throttle_uploads(page: Page, bytes_per_second: int, offline: bool = False) -> None:
    """Chromium's own network emulation (DevTools protocol): uploads crawl, for real."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": offline,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def percent(page: Page) -> float:
    return float(page.get_attribute(ROW, "data-percent") or 0)


def test_page_and_its_npm_assets_are_served(live_server: LiveServer) -> None:
    html = httpx.get(f"{live_server.url}/upload")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "/upload/assets/tus.min.js" in html.text and "//cdn" not in html.text
    for name, needle in (("tus.min.js", "tus"), ("hls.min.js", "Hls"), ("upload.js", "tus.Upload")):
        asset = httpx.get(f"{live_server.url}/upload/assets/{name}")
        assert asset.status_code == 200 and needle in asset.text, name
    assert httpx.get(f"{live_server.url}/upload/assets/../app.py").status_code == 404
    assert httpx.get(f"{live_server.url}/upload/assets/nothing.js").status_code == 404


@pytest.fixture
def worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with running_worker(settings) as proc:
        yield proc


def test_upload_a_video_until_it_plays(
    live_server: LiveServer, worker: subprocess.Popen[bytes], page: Page, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "lesson-1.mp4", seconds=4)
    page.goto(f"{live_server.url}/upload#token={token()}")
    assert "page-user" in page.inner_text("#token-state")
    page.set_input_files("#files", str(video))
    page.wait_for_selector(f'{ROW}[data-percent="100.0"]', timeout=30_000)
    assert "100.0%" in page.inner_text(f"{ROW} .percent")
    page.wait_for_selector(f'{ROW}[data-state="ready"]', timeout=120_000)
    # hls.js parsed the master playlist and the <video> got media data.
    page.wait_for_selector(f"{ROW}[data-player]", timeout=30_000)
    page.wait_for_function(
        "document.querySelector('#uploads video').readyState >= 2", timeout=30_000
    )
    assert not (page.get_attribute(ROW, "data-player") or "").startswith("error")
    # The storyboard's thumbnails: a pointer along the timeline shows the tile for there.
    page.wait_for_selector(f"{ROW}[data-storyboard]", timeout=30_000)
    assert int(page.get_attribute(ROW, "data-storyboard") or 0) == 1  # 4 s: one tile
    page.locator(f"{ROW} video").scroll_into_view_if_needed()
    box = page.locator(f"{ROW} video").bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 20)
    page.wait_for_selector(f"{ROW}[data-preview]", timeout=10_000)
    assert page.get_attribute(ROW, "data-preview") == "0,0"
    assert page.is_visible(f"{ROW} .preview")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "upload-ready.png"), full_page=True)
    upload_id = page.get_attribute(ROW, "data-upload-id")
    assert upload_id
    assert download(live_server.url, upload_id, token()) == video.read_bytes()


def test_pause_resume_and_reload_continue_from_the_stored_offset(
    live_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    size = 2 * 1024 * 1024
    path = random_file(tmp_path / "lecture-2.mp4", size)
    address = f"{live_server.url}/upload?chunk_size=65536#token={token()}"
    page.goto(address)
    throttle_uploads(page, 400 * 1024)
    page.set_input_files("#files", str(path))
    page.wait_for_function(
        f"Number(document.querySelector('{ROW}')?.dataset.percent || 0) >= 15", timeout=30_000
    )
    stats = page.inner_text(f"{ROW} .stats")
    assert "/s" in stats and "ETA" in stats and "MiB" in stats
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "upload-progress.png"), full_page=True)

    # Pause: the row says so; Resume continues the same upload.
    page.click(f"{ROW} button.toggle")
    page.wait_for_selector(f'{ROW}[data-state="paused"]')
    url = page.get_attribute(ROW, "data-upload-url")
    assert url
    paused_at = server_offset(url, token())
    page.click(f"{ROW} button.toggle")
    page.wait_for_function(
        f"Number(document.querySelector('{ROW}').dataset.startOffset) >= {paused_at}"
    )
    page.wait_for_function(
        f"Number(document.querySelector('{ROW}').dataset.percent) >= 40", timeout=30_000
    )

    # Reload mid-upload: picking the same file again finds the stored upload (tus
    # fingerprint in localStorage) and continues from the server's offset.
    before_reload = server_offset(url, token())
    assert 0 < before_reload < size
    page.reload()
    page.wait_for_selector("#unfinished", state="visible")
    assert "lecture-2.mp4" in page.inner_text("#unfinished-list")
    page.set_input_files("#files", str(path))
    page.wait_for_selector(f"{ROW}[data-start-offset]", timeout=15_000)
    assert page.get_attribute(ROW, "data-upload-url") == url
    start = int(page.get_attribute(ROW, "data-start-offset") or 0)
    assert start >= before_reload > 0, "the reloaded page must not start from 0"
    page.wait_for_selector(f'{ROW}[data-percent="100.0"]', timeout=60_000)
    page.wait_for_selector(f'{ROW}[data-state="uploaded"], {ROW}[data-state="processing"]')
    assert download(live_server.url, url.rsplit("/", 1)[-1], token()) == path.read_bytes()
    # Finished uploads are forgotten, so the list of unfinished ones is empty again.
    page.wait_for_selector("#unfinished", state="hidden")


def test_a_dropped_connection_is_retried_and_continues(
    live_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    size = 1024 * 1024
    path = random_file(tmp_path / "lecture-3.mp4", size)
    page.goto(f"{live_server.url}/upload?chunk_size=65536#token={token()}")
    throttle_uploads(page, 300 * 1024)
    page.set_input_files("#files", str(path))
    page.wait_for_function(
        f"Number(document.querySelector('{ROW}')?.dataset.percent || 0) >= 20", timeout=30_000
    )
    url = page.get_attribute(ROW, "data-upload-url")
    assert url
    throttle_uploads(page, 300 * 1024, offline=True)  # the connection drops
    dropped_at = server_offset(url, token())
    page.wait_for_timeout(1500)  # long enough for requests to fail and retries to start
    assert page.get_attribute(ROW, "data-state") != "error"
    throttle_uploads(page, -1)  # and comes back: tus-js-client's retries carry on
    page.wait_for_selector(f'{ROW}[data-percent="100.0"]', timeout=60_000)
    page.wait_for_selector(f'{ROW}[data-state="uploaded"], {ROW}[data-state="processing"]')
    assert 0 < dropped_at < size
    assert download(live_server.url, url.rsplit("/", 1)[-1], token()) == path.read_bytes()
