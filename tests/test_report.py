"""`slomo-rig report SESSION`: one self-contained page, checked in headless Chromium
(Debian's chromium + chromium-driver through Selenium, as the console tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.report import intervals

ROOT = Path(__file__).resolve().parents[1]
SLOMO = str(Path(sys.executable).parent / "slomo-rig")


def slomo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SLOMO, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sessions")
    proc = slomo("demo", "--out", str(out), "--seconds", "2", "--model", "integration", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (path,) = [p for p in out.iterdir() if p.is_dir()]
    return path


def test_interval_status_live_replayed_skipped():
    final = [(0, 0, "original"), (1, 5, "interpolated"), (2, 10, "original")]
    final += [(3, 15, "interpolated"), (4, 20, "original"), (5, 30, "original")]
    live = [(0, 0, "original"), (1, 5, "interpolated"), (2, 10, "original")]
    live += [(3, 20, "original"), (4, 30, "original")]
    skipped = [{"index": 2, "t0_us": 21, "t1_us": 29, "reason": "workers busy"}]
    got = intervals(final, live, skipped)
    assert [(i.status, i.first_row) for i in got] == [
        ("live", 0),
        ("replayed", 2),
        ("skipped", 4),
    ]
    assert got[2].reason == "workers busy"
    # without a fill-in, what the video has was interpolated live
    assert [i.status for i in intervals(final, None, [])] == ["live", "live", "skipped"]


def test_report_writes_the_page_and_never_overwrites(session: Path, tmp_path: Path):
    page = session / "report.html"
    page.unlink(missing_ok=True)
    proc = slomo("report", str(session))
    assert proc.returncode == 0, proc.stderr
    assert str(page) in proc.stdout and "opens offline" in proc.stdout
    before = page.read_bytes()
    proc = slomo("report", str(session))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--force" in proc.stderr
    assert page.read_bytes() == before
    assert slomo("report", str(session), "--force").returncode == 0

    # a big video is linked beside the page, not embedded
    other = tmp_path / "elsewhere.html"
    proc = slomo("report", str(session), "--out", str(other), "--embed-limit-mb", "0")
    assert proc.returncode == 0, proc.stderr
    src = re.search(r'<video[^>]* src="([^"]+)"', other.read_text()).group(1)
    assert (
        not src.startswith("data:")
        and (other.parent / src).resolve() == (session / "slowmo.mp4").resolve()
    )


def test_report_mistakes_are_one_line(tmp_path: Path, session: Path):
    proc = slomo("report", str(tmp_path))
    assert proc.returncode == 2 and "session.json" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    proc = slomo("report", str(session), "--out", str(tmp_path / "r.pdf"))
    assert proc.returncode == 2 and ".html" in proc.stderr
    assert not (tmp_path / "r.pdf").exists()


def test_report_is_self_contained(session: Path):
    page = session / "report.html"
    if not page.exists():
        assert slomo("report", str(session)).returncode == 0
    text = page.read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith("data:") for r in refs), [r[:40] for r in refs]
    assert "<link" not in text and "@import" not in text


@pytest.mark.slow
def test_report_in_headless_chromium(session: Path):
    from selenium.webdriver.common.by import By

    from tests.console_browser import chromium, wait

    page = session / "report.html"
    if not page.exists():
        assert slomo("report", str(session)).returncode == 0
    rows = (session / "timestamps.csv").read_text().splitlines()[1:]
    keyframes = sum(1 for r in rows if r.endswith(",original"))
    driver = chromium()
    try:
        driver.get(page.as_uri())
        wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")
        bars = driver.find_elements(By.CSS_SELECTOR, "#timeline rect.iv")
        assert len(bars) == keyframes - 1
        imgs = driver.find_elements(By.CSS_SELECTOR, ".thumbs img")
        assert len(imgs) >= 5
        wait(
            driver,
            lambda d: d.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            ),
            what="thumbnails decoded",
        )
        video = driver.find_element(By.TAG_NAME, "video")
        assert video.get_attribute("src").startswith("data:video/mp4;base64,")
        for section in ("counts", "rates", "drops", "clock", "thumbnails"):
            assert driver.find_element(By.ID, section).is_displayed()
        assert driver.find_elements(By.CSS_SELECTOR, "#clock circle")  # per-frame residuals
        if os.environ.get("SLOMO_SCREENSHOTS") == "1":
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1100, height + 40)
            driver.save_screenshot(str(ROOT / "docs" / "report.png"))
    finally:
        driver.quit()
