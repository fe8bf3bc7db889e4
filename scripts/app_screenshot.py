"""The README's picture of the web app: the demo mixture separated on a running app, in headless Chromium.

Usage: ``python scripts/app_screenshot.py URL OUT.png`` with the app running at URL, e.g.
``python -m dgmo_pl.tiny /tmp/tiny && dgmo-pl app --model /tmp/tiny --ddim-steps 4 --steps-per-round 5``.
Needs the extras ``dev`` and ``app`` and Debian's ``chromium``; the PNG is reduced to 64 colours.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from dgmo_pl.data import DEMO_MIXTURE


def main(argv: list[str] | None = None) -> None:
    """Separate the demo mixture with two queries on the page at URL and save the page as a small PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the running app's address")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or "chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(args.url)
        page.locator("input[type=file]").first.set_input_files(DEMO_MIXTURE)
        page.get_by_label("Queries (one a line)").fill("dog barking\nman speaking")
        page.get_by_role("button", name="Separate").click()
        page.locator("#output-2 [data-testid=download-link]").wait_for(state="attached")
        page.wait_for_timeout(1500)  # let the players draw their waveforms
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    Image.open(args.out).convert("RGB").quantize(64).save(args.out, optimize=True)


if __name__ == "__main__":
    main()
