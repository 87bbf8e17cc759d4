"""Drive the demo in a real headless browser: type a prompt, click Generate, wait for the
images; report when the first preview and the final images appeared; save a screenshot.

    python -m mini_t2i.demo.browser --url http://127.0.0.1:7860 --screenshot docs/demo.png

Uses Playwright's Python API with the system's Chromium (Debian: apt-get install chromium);
Playwright's own browser download is never used (`find_chromium` says where it looked).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-quic", "--disable-component-update", "--disable-sync"]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass
class BrowserRun:
    first_preview_s: float  # click -> first image in the gallery
    final_s: float  # click -> the ranked images (the status line reports them)
    image_count: int
    status: str


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else the first of CANDIDATES on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def drive_demo(url: str, prompt: str, screenshot: str | Path | None = None, timeout_s: float = 120.0,
               viewport: tuple[int, int] = (1280, 900)) -> BrowserRun:
    """Open `url`, generate from `prompt` with the default settings, wait for the final images."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ImportError("the browser driver needs playwright: pip install -e '.[dev]' (never `playwright install`; "
                          "it uses the system chromium)") from None
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium found: apt-get install chromium, or set CHROMIUM=/path/to/chrome")
    with sync_playwright() as p:  # Playwright gives the browser a fresh temporary profile
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(url, wait_until="networkidle", timeout=timeout_s * 1000)
            page.locator("#prompt textarea, #prompt input").first.fill(prompt)
            t0 = time.perf_counter()
            page.locator("#generate").click()
            images = page.locator("#gallery img")
            images.first.wait_for(state="visible", timeout=timeout_s * 1000)
            first = time.perf_counter() - t0
            status = page.locator("#status")
            page.wait_for_function("() => document.querySelector('#status')?.innerText.includes(' in all')",
                                   timeout=timeout_s * 1000)
            final = time.perf_counter() - t0
            page.wait_for_timeout(500)  # let the final images paint before the screenshot
            if screenshot:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
            return BrowserRun(first, final, images.count(), status.inner_text().strip())
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate once in the demo through headless Chromium.")
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--prompt", default="a red circle above a blue square")
    parser.add_argument("--screenshot", default=None, help="PNG to write once the images are shown")
    args = parser.parse_args(argv)
    run = drive_demo(args.url, args.prompt, args.screenshot)
    print(f"first preview {run.first_preview_s:.1f} s, final {run.final_s:.1f} s, {run.image_count} images: "
          f"{run.status}")


if __name__ == "__main__":
    main()
