"""Shared pieces of the console tests: a console server in a subprocess and headless
Chromium (Debian's chromium + chromium-driver, installed by `make test` when missing)
driven by Selenium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
SLOMO = str(Path(sys.executable).parent / "slomo-rig")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = ROOT / "docs" / "console"
START_TIMEOUT_S = 120


class Console:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc = proc
        self.url = url  # as printed, with ?token=... when bound beyond loopback
        m = re.match(r"http://([^/]+):(\d+)/", url)
        assert m, url
        self.port = int(m.group(2))
        self.base = f"http://127.0.0.1:{self.port}"


@contextmanager
def console(sessions: Path, *args: str) -> Iterator[Console]:
    proc = subprocess.Popen(
        [SLOMO, "console", "--sessions", str(sessions), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the URL is printed (or it exits)
        m = re.search(r"(http://\S+)", line)
        if not m:
            raise AssertionError(f"console did not start: {line}{proc.stdout.read()}")
        yield Console(proc, m.group(1))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def chromium() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--autoplay-policy=no-user-gesture-required",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    return driver


def wait(driver: webdriver.Chrome, condition, timeout_s: float = 180, what: str = "") -> object:
    """Wait on a condition (never a fixed sleep); generous for a busy 2-core machine."""
    # Parts of the page are re-rendered while it is open: an element found during one
    # poll may be replaced before it is read, which only means "poll again".
    return WebDriverWait(
        driver, timeout_s, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    ).until(lambda d: condition(d), message=f"waited {timeout_s} s for {what}")


def click_fresh(driver: webdriver.Chrome, css: str, text: str = "", timeout_s: float = 60) -> None:
    """Click the element `css` (holding `text`) once it is found and clickable. Parts of
    the page are re-rendered while it is open (the sessions list every few seconds), so
    an element found a moment ago may be gone: find it again until the click lands."""

    def attempt(d) -> bool:
        try:
            el = d.find_element(By.CSS_SELECTOR, css)
            if text not in el.text:
                return False
            el.click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait(driver, attempt, timeout_s, f"a click on {css}")


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    """docs/console/NAME.png, only when SLOMO_SCREENSHOTS=1 (CI leaves the tree clean)."""
    if os.environ.get("SLOMO_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))
