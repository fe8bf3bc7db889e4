"""The web app in a real browser: headless Chromium uploads the demo mixture, separates it, downloads the output."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from dgmo_pl.data import DEMO_MIXTURE

pytestmark = pytest.mark.integration  # a server subprocess, a browser and a fit on the tiny model

#: Every wait is bounded: the server's start, the page, the separation.
START_S, PAGE_MS, SEPARATION_MS = 90, 30_000, 120_000


def browser() -> str:
    """The system's Chromium, or a skip that says how to install what is missing."""
    pytest.importorskip("gradio", reason='the web app needs its extra: pip install -e ".[dev,app]"')
    pytest.importorskip("playwright.sync_api", reason='playwright comes with the dev extra: pip install -e ".[dev]"')
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium on this machine: apt-get install -y chromium (.ci/run does, as root)")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def app_url(tiny_model: Path, tmp_path: Path) -> Iterator[str]:
    """``python -m dgmo_pl.app`` on the tiny model, on a free port of 127.0.0.1; stopped afterwards."""
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "dgmo_pl.app", "--model", str(tiny_model), "--port", str(port), "--ddim-steps", "4",
         "--steps-per-round", "5", "--rounds", "1", "--cache-dir", "none"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "g")},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the app did not start on {url}:\n{(tmp_path / 'app.log').read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()


def test_the_page_separates_the_demo_mixture_and_serves_the_file(app_url: str, tmp_path: Path) -> None:
    """Bad input is a message and the page goes on; then a query's output plays and downloads at the input's
    length and rate, with the residual beside it."""
    from playwright.sync_api import sync_playwright

    chromium = browser()
    with sync_playwright() as playwright:
        engine = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])  # root in CI
        try:
            page = engine.new_page(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
            page.set_default_timeout(PAGE_MS)
            page.goto(app_url)
            separate = page.get_by_role("button", name="Separate")
            separate.click()
            page.get_by_text("no query").first.wait_for()

            page.locator("input[type=file]").first.set_input_files(DEMO_MIXTURE)
            page.get_by_label("Queries (one a line)").fill("dog barking")
            separate.click()
            download_link = page.locator("#output-0 [data-testid=download-link]")
            download_link.wait_for(state="attached", timeout=SEPARATION_MS)
            assert page.locator("#output-1").get_by_text("everything else (residual)").count() == 1
            with page.expect_download() as download:
                download_link.click()
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            engine.close()
    info, demo = sf.info(str(saved)), sf.info(DEMO_MIXTURE)
    assert saved.name == "dog-barking.wav"
    assert (info.frames, info.samplerate, info.channels) == (demo.frames, demo.samplerate, demo.channels)
    assert (tmp_path / "app.png").stat().st_size > 0
