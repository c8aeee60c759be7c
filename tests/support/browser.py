"""The Chromium the browser tests drive, found once the way users have one.

Debian's `chromium` (on PATH or at its usual paths) first, else the Chromium that
`playwright install chromium` put in Playwright's registry. Nothing is downloaded here:
where neither exists, browser tests skip naming the install command (fail under CI=true).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator

from tests.support.skips import missing

NAMES = ("chromium", "chromium-browser")
KNOWN_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/usr/bin/chromium-browser")
INSTALL = "apt-get install chromium, or with internet: playwright install chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def find_chromium() -> str | None:
    """The path of a Chromium to launch, or None."""
    for name in NAMES:
        if path := shutil.which(name):
            return path
    for path in KNOWN_PATHS:
        if os.access(path, os.X_OK):
            return path
    return playwright_chromium()


def playwright_chromium() -> str | None:
    """Where Playwright's registry keeps its Chromium, if `playwright install chromium` put one there."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as playwright:
            path = playwright.chromium.executable_path
    except Error:  # e.g. called inside a running Playwright loop
        return None
    return path if os.access(path, os.X_OK) else None


@functools.lru_cache(maxsize=1)
def chromium() -> str | None:
    return find_chromium()


def require_chromium() -> str:
    """The browser's path; skips the test (fails it under CI=true) where there is none."""
    path = chromium()
    if path is None:
        missing("Chromium", INSTALL)
    return path


def launch_args() -> dict:
    """Playwright's `launch()` arguments for the browser found (pytest-playwright's `browser_type_launch_args`)."""
    return {"executable_path": require_chromium(), "args": CHROMIUM_ARGS}


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator:
    from playwright.sync_api import sync_playwright

    args = launch_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**args)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
