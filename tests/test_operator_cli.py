"""What a new operator trips over: every mistake ends in one line and exit 2, before
anything is created, and nothing already there is overwritten. Driven through the real
command line (a subprocess), as an operator would."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env=env,
        **kw,
    )


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _walk(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_of_every_command_has_help():
    missing = [
        f"{path}: {'/'.join(a.option_strings) or a.dest}"
        for path, a in _walk(build_parser(), "slomo-rig")
        if not a.help
    ]
    assert not missing, "options and arguments without help:\n" + "\n".join(missing)


SIM_RIG = """
wiring = "trigger"
[events]
backend = "sim"
[frames]
backend = "sim"
"""


def test_record_sim_with_a_missing_calibration_stops_before_anything(tmp_path):
    out = tmp_path / "sessions"
    proc = run_cli(
        "record", "--rig", "sim", "--calibration", str(tmp_path / "nope.json"), "--out", str(out)
    )
    one_line_error(proc, "nope.json", "not found")
    assert not out.exists()


def test_demo_with_an_unknown_model_leaves_no_session(tmp_path):
    out = tmp_path / "sessions"
    proc = run_cli("demo", "--model", "bogus", "--out", str(out), "--seconds", "1")
    one_line_error(proc, "bogus", "timelens")
    assert not out.exists()
    proc = run_cli("demo", "--model", "timelens:missing.onnx", "--out", str(out))
    one_line_error(proc, "missing.onnx")
    assert not out.exists()


def test_frame_camera_of_another_size_refused_before_the_session(tmp_path):
    cfg = tmp_path / "rig.toml"  # the simulator's event sensor is 346x260, its frames 320x240
    cfg.write_text(SIM_RIG)
    out = tmp_path / "sessions"
    proc = run_cli("record", "--config", str(cfg), "--out", str(out), "--seconds", "1")
    one_line_error(proc, "346x260", "320x240", "--calibration")
    assert not out.exists()


def test_worker_endpoint_without_scheme(tmp_path):
    proc = run_cli("worker", "--jobs", "localhost:5599", "--results", "tcp://localhost:5598")
    one_line_error(proc, "--jobs localhost:5599", "tcp://localhost:5599")
    proc = run_cli("worker", "--jobs", "tcp://localhost:5599", "--results", "tcp://localhost")
    one_line_error(proc, "--results tcp://localhost", "tcp://HOST:PORT")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lines:
    """A subprocess's stderr read on a thread, so the test waits on lines, not on time."""

    def __init__(self, stream) -> None:
        import queue
        import threading

        self.lines: queue.Queue[str] = queue.Queue()
        self.seen = ""
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in stream], daemon=True).start()

    def until(self, needle: str, timeout_s: float = 120) -> str:
        while needle not in self.seen:
            self.seen += self.lines.get(timeout=timeout_s)
        return self.seen


def test_worker_says_what_it_connects_to_and_when_nothing_answers():
    import signal

    import zmq

    jobs, results = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "pipeline.cli", "worker", "--model", "blend"]
    args += ["--jobs", f"tcp://127.0.0.1:{jobs}", "--results", f"tcp://127.0.0.1:{results}"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = _Lines(proc.stderr)
        endpoint = f"tcp://127.0.0.1:{jobs}"
        seen = lines.until(endpoint)
        assert "model blend" in seen and f"jobs from {endpoint}" in seen
        while lines.seen.count(endpoint) < 2:  # then a line saying nothing answers there
            lines.seen += lines.lines.get(timeout=120)
        ctx = zmq.Context()
        router, pull = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PULL)
        router.bind(endpoint)
        pull.bind(f"tcp://127.0.0.1:{results}")
        try:
            assert f"connected to {endpoint}" in lines.until(f"connected to {endpoint}")
        finally:
            router.close(0)
            pull.close(0)
            ctx.term()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0


def test_info_json_into_a_closed_pipe(tmp_path):
    from pipeline.session import Session

    session = Session.create(tmp_path, {"backend": "sim"})
    session.update(notes=["x" * 200_000])  # more than a pipe holds
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is gone before anything is written
    try:
        proc = run_cli("info", "--json", str(session.path), stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_info_on_the_out_folder_points_to_the_session(tmp_path):
    from pipeline.session import Session

    session = Session.create(tmp_path / "sessions", {"backend": "sim"})
    proc = run_cli("info", str(tmp_path / "sessions"))
    one_line_error(proc, str(session.path), f"slomo-rig info {session.path}")


def test_devices_without_cameras_does_not_ask_to_install_an_installed_sdk():
    import importlib.util

    assert importlib.util.find_spec("pypylon") is not None  # installed by make
    env = {k: v for k, v in os.environ.items() if k != "PYLON_CAMEMU"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "devices"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No cameras found; searched basler (pypylon)" in proc.stdout
    assert "pip install pypylon" not in proc.stdout + proc.stderr


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_sync_refuses_a_trigger_session_unless_forced_and_undo_restores_it(tmp_path):
    import json

    from pipeline.session import CLOCK_FILE, Session
    from tests.test_sync_command import record_session

    s = record_session(tmp_path, "wired")
    trig = {**s["live"], "method": "triggers", "residual_rms_us": 0.3}
    (s["path"] / CLOCK_FILE).write_text(json.dumps(trig, indent=2))
    Session(s["path"]).update(clock=trig)
    before = _files(s["path"])

    proc = run_cli("sync", str(s["path"]))
    one_line_error(proc, "trigger edges", "0.30 µs", "--force", "nothing changed")
    assert _files(s["path"]) == before

    proc = run_cli("sync", str(s["path"]), "--force")
    assert proc.returncode == 0, proc.stderr
    assert "--undo" in proc.stdout
    assert json.loads((s["path"] / CLOCK_FILE).read_text())["method"] == "software"

    proc = run_cli("sync", str(s["path"]), "--undo")
    assert proc.returncode == 0, proc.stderr
    assert "restored to the clock it was recorded with (triggers)" in proc.stdout
    assert json.loads((s["path"] / CLOCK_FILE).read_text()) == trig
    assert Session(s["path"]).read()["clock_correction"] is None

    proc = run_cli("sync", str(s["path"]), "--undo")  # nothing left to undo
    one_line_error(proc, "no clock correction", "to undo")


@pytest.mark.slow
def test_demo_raw_file_replays_with_the_calibration_saved_in_its_session(tmp_path):
    import json

    import numpy as np

    from calibration import load_calibration
    from calibration.mapping import EventToFrameMap
    from pipeline.inputs.session import sim_homography

    out = tmp_path / "sessions"
    proc = run_cli("demo", "--out", str(out), "--seconds", "1", "--quiet", "--model", "blend")
    assert proc.returncode == 0, proc.stderr
    (session,) = out.iterdir()
    calib = session / "calibration.json"
    assert f"--calibration {calib}" in proc.stdout  # the summary says how to use it
    assert f"slomo-rig report {session}" in proc.stdout
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["calibration"]["file"] == "calibration.json"
    # the saved calibration maps events where the live pipeline did
    h, event_size, frame_size = sim_homography(manifest["rig"])
    saved = load_calibration(calib).event_to_frame_map().luts()
    live = EventToFrameMap.from_homography(h, event_size, frame_size).luts()
    for a, b in zip(saved, live, strict=True):
        assert np.nanmax(np.abs(a - b)) < 1e-3

    replayed = tmp_path / "replay"
    proc = run_cli(
        "replay", str(session / "raw.aedat4"), "--calibration", str(calib),
        "--out", str(replayed), "--factor", "4", "--model", "blend", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (replayed / "slowmo.mp4").stat().st_size > 0

    # and the example configuration of the simulator records with it
    proc = run_cli(
        "record", "--config", str(ROOT / "examples" / "sim.toml"), "--calibration", str(calib),
        "--out", str(tmp_path / "rec"), "--seconds", "1", "--quiet", "--model", "blend",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_calibrate_writes_its_own_folder_reports_and_never_overwrites(tmp_path):
    import re

    from calibration import load_calibration

    args = ("calibrate", "--rig", "sim", "--auto", "--views", "12")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (folder,) = tmp_path.glob("calibration-*")  # the documented default folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # nothing else in cwd
    calib = load_calibration(folder / "calibration.json")
    out = proc.stdout
    assert re.search(r"^PASS: ", out, re.M), out
    # the values printed are the saved ones
    fx, fy = calib.rgb.focal
    assert f"f=({fx:.2f}, {fy:.2f})" in out and "as read back" in out
    assert (folder / "calibration.overlay.png").is_file()
    assert (folder / "views" / "live.jpg").is_file()
    assert len(list((folder / "views").glob("capture-*.jpg"))) >= 8
    assert f"--calibration {folder.name}/calibration.json" in out

    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    proc = run_cli(*args, "--out", folder.name, cwd=tmp_path)
    one_line_error(proc, "already there", "--force")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    proc = run_cli(*args, "--out", folder.name, "--force", "--seed", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "calibration.json").read_bytes() != before["calibration.json"]


@pytest.mark.slow
def test_calibrate_board_not_found_says_why_and_shows_what_the_camera_saw(tmp_path):
    out = tmp_path / "cal"
    proc = run_cli(
        "calibrate", "--rig", "sim", "--auto", "--board", "8x6", "--views", "1", "--out", str(out)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    picture = out / "views" / "board-not-found-rgb.png"
    assert "wrong board size" in proc.stderr and "--board 9x6" in proc.stderr
    # said while collecting, for each camera, with the size that is really there
    hints = [ln for ln in proc.stderr.splitlines() if ln.startswith("hint: ")]
    assert len(hints) == 2 and all("a 9x6 board is visible" in h for h in hints), hints
    assert "[RGB camera" in hints[0] and "[event camera" in hints[1]
    assert str(picture) in proc.stderr and picture.is_file()
    assert "Calibration NOT saved" in proc.stdout and "FAIL: " in proc.stdout
    assert not (out / "calibration.json").exists()


def test_calibrate_checks_arguments_before_anything(tmp_path):
    for bad, needle in (
        (["--views", "0"], "--views 0"),
        (["--square-mm", "-1"], "--square-mm"),
        (["--board", "nine"], "inner-corner"),
        (["--rig", str(tmp_path / "nope.toml")], "nope.toml"),
        (["--out", str(tmp_path / "calib.yaml")], "calib.yaml"),
    ):
        proc = run_cli("calibrate", "--auto", *bad, cwd=tmp_path)
        one_line_error(proc, needle)
    assert list(tmp_path.iterdir()) == []


def test_bench_prints_a_table_and_json_on_request():
    import json

    proc = run_cli("bench", "transport", "--seconds", "0.3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "## bench transport" in lines[0]
    assert any(ln.startswith("| events_per_s") for ln in lines)
    assert any(ln.startswith("| lost_events ") and ln.endswith("| 0 |") for ln in lines)
    proc = run_cli("bench", "transport", "--seconds", "0.3", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["lost_events"] == 0


def test_model_bench_table_is_labelled_like_its_sizes_option():
    from models.bench import format_table

    row = dict(height=240, width_px=320, model_width=0.25, backend="torch", provider="cpu")
    row.update(precision="fp32", batch=1, ms_per_frame=10.0, fps=100.0)
    table = format_table([row])
    assert table.startswith("| size (WxH)") and "| 320x240 |" in table  # as --sizes 320x240


def test_basler_of_another_size_refused_without_leaving_a_session(tmp_path):
    """A real frame camera (pylon's emulator) learns its size only when opened: the
    mismatch is found then, and the session folder made for it goes again."""
    cfg = tmp_path / "rig.toml"
    cfg.write_text(
        'wiring = "software"\n[events]\nbackend = "sim"\n'
        '[frames]\nbackend = "basler"\n[frames.settings]\npixel_format = "RGB8"\n'
    )
    out = tmp_path / "sessions"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYLON_CAMEMU": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "record", "--config", str(cfg), "--out", str(out)]
        + ["--seconds", "2", "--quiet", "--model", "blend"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    one_line_error(proc, "346x260", "differ", "--calibration")
    assert not out.exists() or not any(out.iterdir())


def test_bench_and_soak_refuse_impossible_numbers(tmp_path):
    for args, needle in (
        (("bench", "model", "--sizes", "64"), "WIDTHxHEIGHT"),
        (("bench", "sim", "--seconds", "-1"), "must be > 0"),
        (("soak", "--minutes", "-1", "--out", str(tmp_path / "soak")), "must be > 0"),
        (("soak", "--workers", "0", "--out", str(tmp_path / "soak")), "must be >= 1"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert needle in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "soak").exists()
