"""The operator console in a real browser (headless Chromium via Selenium) on the
simulated rig: previews, recording, calibration wizard, sessions and replay."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dv_processing as dv
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.console_browser import SLOMO, chromium, click_fresh, console, screenshot, wait

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("console") / "sessions"


@pytest.fixture(scope="module")
def server(sessions: Path):
    with console(sessions) as c:
        yield c


@pytest.fixture(scope="module")
def driver(server):
    d = chromium()
    d.get(server.url)
    yield d
    d.quit()


def _tab(driver, part: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'button.tab[data-part="{part}"]').click()
    wait(driver, lambda d: d.find_element(By.ID, f"part-{part}").is_displayed(), 30, part)


def _frames(driver, element_id: str) -> int:
    value = driver.find_element(By.ID, element_id).get_attribute("data-frames")
    return int(value or 0)


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _fill(driver, form_id: str, **values: str) -> None:
    form = driver.find_element(By.ID, form_id)
    for name, value in values.items():
        el = form.find_element(By.NAME, name)
        if el.tag_name == "select":
            Select(el).select_by_visible_text(value)
        else:
            el.clear()
            el.send_keys(value)


@pytest.fixture(scope="module")
def recorded(driver, sessions: Path) -> str:
    """A session recorded from the page: start, wait until it records, stop."""
    _tab(driver, "record")
    _fill(driver, "record-form", name="from-page", notes="console test", factor="4")
    _fill(driver, "record-form", model="integration")
    driver.find_element(By.ID, "record-start").click()
    wait(driver, lambda d: _text(d, "record-state") == "recording", 240, "recording")
    _tab(driver, "live")
    # While recording, the previews come from run_live's tap, interpolated frames too.
    wait(driver, lambda d: _frames(d, "preview-interpolated") >= 1, 240, "interpolated frames")
    n = _frames(driver, "preview-rgb")
    wait(driver, lambda d: _frames(d, "preview-rgb") >= n + 3, 120, "RGB preview while recording")
    # The raw writer's queue is in the health while recording (capture's own figure).
    wait(driver, lambda d: "waiting for the disk" in _text(d, "health"), 120, "raw writer queue")
    screenshot(driver, "recording")
    _tab(driver, "record")
    screenshot(driver, "record")
    driver.find_element(By.ID, "record-stop").click()
    wait(driver, lambda d: _text(d, "record-state") in ("idle", "failed"), 300, "stop")
    assert _text(driver, "record-state") == "idle", _text(driver, "record-reason")
    return "from-page"


def test_page_loads_and_previews_update(driver) -> None:
    assert driver.title == "slomo-rig console"
    _tab(driver, "live")
    wait(driver, lambda d: "camera live" in _text(d, "camera-state"), 120, "camera live")
    for name in ("preview-rgb", "preview-events", "preview-overlay"):
        wait(driver, lambda d, n=name: _frames(d, n) >= 3, 120, f"{name} updates")
    assert driver.find_element(By.ID, "preview-rgb").get_attribute("width") == "320"
    health = driver.find_element(By.ID, "health").text
    assert "Event rate" in health and "Disk free" in health
    wait(driver, lambda d: "ev/s" in d.find_element(By.ID, "health").text, 60, "event rate")
    screenshot(driver, "live")


def test_bad_form_values_get_a_message(driver) -> None:
    _tab(driver, "record")
    _fill(driver, "record-form", name="x", factor="abc")
    driver.find_element(By.ID, "record-start").click()
    wait(driver, lambda d: "not a whole number" in _text(d, "record-msg"), 60, "message")
    _fill(driver, "record-form", name="../escape", factor="4")
    driver.find_element(By.ID, "record-start").click()
    wait(driver, lambda d: "session name" in _text(d, "record-msg"), 60, "name message")
    assert _text(driver, "record-state") == "idle"


def test_camera_settings_apply_or_say_why_not(driver) -> None:
    _tab(driver, "live")
    form = driver.find_element(By.ID, "camera-form")
    assert not form.find_element(By.NAME, "gain_db").is_enabled()  # the sim has no gain
    assert not form.find_element(By.NAME, "event_biases").is_enabled()  # nor named biases
    _fill(driver, "camera-form", exposure_us="abc")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: "not a number" in _text(d, "camera-msg"), 60, "message")
    _fill(driver, "camera-form", exposure_us="3000", frame_rate="40", contrast_threshold="9")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: "0.05 to 2" in _text(d, "camera-msg"), 60, "bias message")
    _fill(driver, "camera-form", contrast_threshold="0.3")  # an event-camera bias
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: _text(d, "camera-msg") == "applied", 120, "applied")
    wait(driver, lambda d: "camera live" in _text(d, "camera-state"), 120, "camera back")
    n = _frames(driver, "preview-rgb")
    wait(driver, lambda d: _frames(d, "preview-rgb") > n, 120, "previews after the change")


def test_start_stop_records_a_complete_session(recorded: str, sessions: Path) -> None:
    out = subprocess.run(
        [SLOMO, "info", "--json", str(sessions / recorded)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["status"] == "complete"
    assert info["capture"]["events"] > 0 and info["capture"]["frames"] > 0
    assert info["operator_notes"] == "console test"
    assert info["live"]["model"] == "integration" and info["live"]["factor"] == 4


def test_replay_from_the_page_finishes_and_plays(driver, recorded: str) -> None:
    _tab(driver, "sessions")
    row = f'#sessions-table tr[data-session="{recorded}"]'
    click_fresh(driver, row, text="complete")
    wait(driver, lambda d: "status   complete" in _text(d, "session-info"), 60, "info")
    _fill(driver, "replay-form", model="integration", format="mp4")
    _fill(driver, "replay-form", factor="2")
    driver.find_element(By.ID, "replay-start").click()
    seen_progress = []

    def finished(d) -> bool:
        state = _text(d, "replay-state")
        if "intervals" in state:
            seen_progress.append(state)
        assert "failed" not in state, _text(d, "replay-msg")
        return "complete" in state

    wait(driver, finished, 600, "replay complete")
    assert seen_progress, "progress was never shown"
    bar = driver.find_element(By.ID, "replay-progress")
    assert float(bar.get_attribute("value")) == float(bar.get_attribute("max"))
    video = driver.find_element(By.ID, "replay-video")
    duration = wait(
        driver,
        lambda d: d.execute_script(
            "const v = arguments[0]; return v.readyState >= 1 && isFinite(v.duration) && "
            "v.duration > 0 ? v.duration : null",
            video,
        ),
        120,
        "video duration",
    )
    assert duration > 0
    links = "return Array.from(document.querySelectorAll('#session-files a'), a => a.textContent)"
    wanted = "replays/integration-x2-mp4/slowmo.mp4"
    wait(driver, lambda d: any(wanted in t for t in d.execute_script(links)), 60, "download")
    driver.execute_script("window.scrollTo(0, 0)")
    screenshot(driver, "sessions")
    driver.execute_script("arguments[0].scrollIntoView()", video)
    screenshot(driver, "replay")


def test_calibration_wizard_saves_files_dv_loads(driver, sessions: Path) -> None:
    _tab(driver, "calibration")
    _fill(driver, "calib-form", name="page-calib", views="15", blink_ms="200")
    driver.find_element(By.ID, "show-pattern").click()
    canvas = driver.find_element(By.ID, "pattern-canvas")
    phases = set()
    wait(
        driver,
        lambda d: phases.add(canvas.get_attribute("data-phase")) or len(phases) == 2,
        30,
        "the pattern blinks",
    )
    screenshot(driver, "calibration-pattern")
    driver.find_element(By.ID, "pattern").click()
    wait(driver, lambda d: not d.find_element(By.ID, "pattern").is_displayed(), 30, "closed")
    driver.find_element(By.ID, "calib-start").click()
    wait(driver, lambda d: "board in RGB" in _text(d, "calib-views"), 120, "live feedback")
    wait(driver, lambda d: _text(d, "calib-state") in ("saved", "failed"), 600, "wizard")
    assert _text(driver, "calib-state") == "saved", _text(driver, "calib-msg")
    assert _text(driver, "calib-verdict").startswith("PASS")
    assert "reprojection rms" in _text(driver, "calib-lines")
    overlay = driver.find_element(By.ID, "calib-overlay")
    wait(driver, lambda d: d.execute_script("return arguments[0].naturalWidth", overlay), 60, "ov")
    driver.execute_script("window.scrollTo(0, 0)")
    screenshot(driver, "calibration")
    driver.execute_script(
        "arguments[0].scrollIntoView()", driver.find_element(By.ID, "calib-result")
    )
    screenshot(driver, "calibration-result")
    path = sessions / "calibration" / "page-calib.json"
    cset = dv.camera.CalibrationSet.LoadFromFile(str(path))
    assert len(cset.getCameraList()) == 2
    names = {cset.getCameraCalibration(c).name for c in cset.getCameraList()}
    assert names == {"rgb", "events"}
    assert (sessions / "calibration" / "page-calib.lut.npz").exists()
