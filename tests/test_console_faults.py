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


def test_a_failed_replay_shows_its_reason(tmp_path: Path) -> None:
    import http.client
    import time

    sessions = tmp_path / "sessions"
    broken = sessions / "broken"
    broken.mkdir(parents=True)
    (broken / "session.json").write_text(
        json.dumps({"format": "slomo-rig-session", "format_version": 1, "status": "complete"})
    )
    (broken / "raw.aedat4").write_bytes(b"not an AEDAT4 file")
    with console(sessions) as c:
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
        conn.request("GET", "/")
        page = conn.getresponse().read().decode()
        token = page.split('name="slomo-token" content="')[1].split('"')[0]
        body = json.dumps({"model": "integration", "factor": "2", "format": "mp4"})
        headers = {"X-Slomo-Token": token, "Content-Type": "application/json"}
        conn.request("POST", "/api/sessions/broken/replay", body, headers)
        r = conn.getresponse()
        job = json.loads(r.read())
        assert r.status == 200, job
        deadline = time.monotonic() + 300
        while True:
            conn.request("GET", "/api/state")
            jobs = json.loads(conn.getresponse().read())["replays"]
            (state,) = [j for j in jobs if j["id"] == job["id"]]
            if state["state"] != "running":
                break
            assert time.monotonic() < deadline, "the replay never ended"
            time.sleep(0.2)  # polling the server's state, not timing anything
        assert state["state"] == "failed"
        assert "raw.aedat4" in state["error"], state["error"]
        conn.close()
