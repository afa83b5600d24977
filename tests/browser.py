"""Headless Chromium driven through Selenium, for the report's browser tests, benchmark and screenshots.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; `.ci/run`
installs both) and the ``selenium`` package (the ``dev`` extra). The driver is given explicitly, so Selenium
Manager never tries to download one. Flags: those that work on a closed network (no background networking,
component updates or sync, a fresh profile), ``--no-sandbox`` for root in containers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None when either is missing."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if chromium_paths() is None:
        return "no chromium + chromedriver (apt-get install chromium chromium-driver; .ci/run does)"
    return None


@contextmanager
def chromium_driver(profile: str | os.PathLike[str]) -> Iterator[Any]:
    """A headless Chromium session with a fresh profile folder; always quit, so no browser outlives the block."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(missing_reason() or "no chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in FLAGS:
        options.add_argument(flag)
    Path(profile).mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={Path(profile).resolve()}")
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    try:
        driver.set_page_load_timeout(120)
        yield driver
    finally:
        driver.quit()


def first_paint_ms(driver: Any, timeout: float = 15.0) -> float | None:
    """The page's first-contentful-paint time (ms after navigation start), from the Paint Timing API.

    Waits for the entry: a headless browser may paint after the load event that ``driver.get`` returns at.
    """
    import time

    script = "return performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)"
    deadline = time.monotonic() + timeout
    while True:
        entries = driver.execute_script(script)
        if entries or time.monotonic() > deadline:
            return float(entries[0]) if entries else None
        time.sleep(0.05)


def wait_for(driver: Any, script: str, timeout: float = 30.0) -> Any:
    """Poll ``script`` (a JS expression) until it is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(f"return {script}"))
