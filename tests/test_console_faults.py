"""A camera unplugged while the console's page is open: the page says so, and a
recording cut by it fails with the reason and keeps everything recorded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dv_processing as dv
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.console_browser import SLOMO, chromium, console, wait

pytestmark = pytest.mark.slow


def test_unplugged_camera_is_shown_and_nothing_recorded_is_lost(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    # The simulated event camera raises like an unplugged one after 150 deliveries
    # (1.5 s of rig time), each time the cameras are opened.
    with console(sessions, "--sim-unplug-after", "150") as c:
        driver = chromium()
        try:
            driver.get(c.url)
            state = lambda d: d.find_element(By.ID, "camera-state").text  # noqa: E731
            wait(driver, lambda d: "camera disconnected" in state(d), 240, "disconnected")
            assert "USB transfer failed" in state(driver)
            driver.find_element(By.CSS_SELECTOR, 'button.tab[data-part="record"]').click()
            form = driver.find_element(By.ID, "record-form")
            form.find_element(By.NAME, "name").send_keys("unplugged")
            Select(form.find_element(By.NAME, "model")).select_by_visible_text("integration")
            driver.find_element(By.ID, "record-start").click()
            record = lambda d: d.find_element(By.ID, "record-state").text  # noqa: E731
            wait(driver, lambda d: record(d) == "failed", 300, "the recording fails")
            reason = driver.find_element(By.ID, "record-reason").text
            assert "disconnected" in reason, reason
        finally:
            driver.quit()
    out = subprocess.run(
        [SLOMO, "info", "--json", str(sessions / "unplugged")], capture_output=True, text=True
    )
    info = json.loads(out.stdout)
    assert info["status"] == "failed" and "disconnected" in info["error"]
    assert info["capture"]["events"] > 0
    reader = dv.io.MonoCameraRecording(str(sessions / "unplugged" / "raw.aedat4"))
    n = 0
    while reader.isRunning():
        batch = reader.getNextEventBatch()
        if batch is not None:
            n += batch.size()
    assert n == info["capture"]["events"]
