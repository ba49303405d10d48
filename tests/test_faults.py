"""Faults on the live path: Ctrl-C at any moment, a source that raises, a killed
recorder, a full disk. Each must end in an honest status ("interrupted", "failed"),
the matching exit code, no traceback from any process, and a session whose raw file
holds every event that was received (read back with dv-processing).

Waits are on conditions with generous timeouts, never on the machine's speed. The one
schedule is the Ctrl-C moments themselves, which are the input of the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import dv_processing as dv
import pytest

from calibration.mapping import EventToFrameMap
from pipeline.cli import _live_exit_code
from pipeline.info import describe, format_text
from pipeline.live import LiveOptions, run_live
from rig.sim.config import SimConfig
from rig.sim.rig import SimulatedRig

pytestmark = pytest.mark.slow

SLOMO_RIG = str(Path(sys.executable).with_name("slomo-rig"))  # the console script users run


def raw_events(path: Path) -> int:
    rec = dv.io.MonoCameraRecording(str(path))
    n = 0
    while (b := rec.getNextEventBatch()) is not None:
        n += b.size()
    return n


def wait_until(condition: Callable[[], bool], timeout_s: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.01)


def demo(out: Path, *extra: str) -> subprocess.Popen:
    """`slomo-rig demo` in a process group of its own, like a shell job: a signal to the
    group reaches every process of the pipeline, as a terminal's Ctrl-C does."""
    return subprocess.Popen(
        [SLOMO_RIG, "demo", "--out", str(out), "--quiet", "--model", "integration", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def has_handler(pid: int, sig: int) -> bool:
    """The process has installed a handler for sig (from /proc: SigCgt)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except OSError:
        pass
    return False


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def check_session(session: Path, statuses: tuple[str, ...], disk_full: bool = False) -> dict:
    """Opens, has one of the statuses, and its raw file holds every event received (on
    a full disk: every event of its whole packets, as many as session.json says)."""
    info = describe(session)
    assert info["status"] in statuses, info
    format_text(info)
    cap = info.get("capture")
    if cap is not None:
        on_disk = raw_events(session / "raw.aedat4")
        assert on_disk == info["raw"]["events"]
        assert on_disk <= cap["events"] if disk_full else on_disk == cap["events"]
    return info


# -- Ctrl-C ------------------------------------------------------------------------------


def _keyframes_written(out: Path) -> int:
    """Keyframes in the session's timestamps.csv so far (0 before capture runs)."""
    for stamps in out.glob("*/timestamps.csv"):
        return sum(1 for line in stamps.read_text().splitlines() if "original" in line)
    return 0


def _ctrl_c_batch(
    tmp_path: Path, delays: list[float], ready: Callable[[subprocess.Popen, Path], bool]
) -> list[tuple[float, Path, str]]:
    """One demo per delay, all at once; each gets Ctrl-C (to its whole process group)
    `delay` seconds after ready(proc, out) first holds. Returns (delay, out, stderr)."""
    runs = [(d, tmp_path / f"at-{d:.2f}") for d in delays]
    procs = [demo(out, "--seconds", "60") for _, out in runs]
    t0: dict[int, float] = {}  # when ready() first held for each run

    def all_ready() -> bool:
        for proc, (_, out) in zip(procs, runs, strict=True):
            if proc.pid not in t0 and ready(proc, out):
                t0[proc.pid] = time.monotonic()
        return len(t0) == len(procs)

    wait_until(all_ready, 300, "every run to be ready")
    order = sorted(zip(runs, procs, strict=True), key=lambda r: t0[r[1].pid] + r[0][0])
    for (delay, _), proc in order:
        time.sleep(max(0.0, t0[proc.pid] + delay - time.monotonic()))
        os.killpg(proc.pid, signal.SIGINT)
    done = []
    for (delay, out), proc in zip(runs, procs, strict=True):
        _, err = proc.communicate(timeout=180)
        wait_until(lambda p=proc: group_gone(p.pid), 30, "every process to exit")
        assert proc.returncode == 130, (delay, err)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        assert "interrupted" in err, (delay, err)
        done.append((delay, out, err))
    return done


def test_ctrl_c_at_every_moment_of_the_first_two_seconds(tmp_path):
    """Ctrl-C at 0.05 s steps from the moment slomo-rig has control (its first
    statement installs the handlers; before that the interpreter itself is starting):
    exit 130, one line, no traceback from any process, no session left half-made. The
    41 runs go in parallel batches to keep the test affordable."""
    steps = [round(0.05 * i, 2) for i in range(41)]

    def started(proc: subprocess.Popen, out: Path) -> bool:
        return has_handler(proc.pid, signal.SIGTERM)

    for first in range(0, len(steps), 8):
        for _, out, _ in _ctrl_c_batch(tmp_path, steps[first : first + 8], started):
            for session in out.glob("*/"):
                check_session(session, ("interrupted",))


def test_ctrl_c_during_capture(tmp_path):
    """Once capture runs (the first keyframe is in the video), Ctrl-C at 0.05 s steps
    and later stops it in order: "interrupted", exit 130, the stop said on stderr, the
    raw file holds every event received, every interval is interpolated or listed as
    skipped, and the video plays every frame the session counts."""

    def capturing(proc: subprocess.Popen, out: Path) -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        return _keyframes_written(out) >= 1

    for delay, out, err in _ctrl_c_batch(tmp_path, [0.0, 0.05, 0.1, 0.15, 0.2, 1.0], capturing):
        assert "stopping" in err, (delay, err)
        (session,) = out.glob("*/")
        info = check_session(session, ("interrupted",))
        cap, written = info["capture"], info["output"]
        assert written["intervals_interpolated"] + written["intervals_skipped"] == cap["intervals"]
        assert written["original_frames"] == cap["keyframes"]
        with av.open(str(session / "slowmo.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == written["frames_written"]


def test_ctrl_c_after_the_run_finished_is_harmless(tmp_path):
    proc = demo(tmp_path, "--seconds", "1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (session,) = tmp_path.glob("*/")
    check_session(session, ("complete",))


# -- a source that raises, a killed recorder ---------------------------------------------


class _Faulty:
    """The simulated event camera, whose driver raises a RuntimeError (as dv does when
    a camera is unplugged) after `good` batches."""

    def __init__(self, source, good: int) -> None:
        self._source, self._good, self.delivered = source, good, 0

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def __enter__(self):
        self._source.__enter__()
        return self

    def __exit__(self, *exc):
        return self._source.__exit__(*exc)

    def read(self, timeout_s: float | None = None):
        item = self._source.read(timeout_s=timeout_s)
        if item is not None:
            if self._good == 0:
                raise RuntimeError("Device disconnected (libcaer: USB transfer failed)")
            self._good -= 1
            self.delivered += len(item.events)
        return item


def _sim(duration_s: float | None = None):
    cfg = SimConfig(realtime=True)
    rig = SimulatedRig(cfg)
    events, frames = rig.sources(duration_s=duration_s)
    mapper = EventToFrameMap.from_homography(rig.h_event_to_frame, cfg.event_size, cfg.frame_size)
    return rig, events, frames, mapper


def test_a_source_that_raises_fails_the_session(tmp_path):
    _, events, frames, mapper = _sim()
    faulty = _Faulty(events, good=40)
    result = run_live(
        faulty, frames, mapper, {"backend": "sim"}, LiveOptions(tmp_path, model="integration")
    )
    m = result.manifest
    assert m["status"] == "failed"
    assert "RuntimeError" in m["error"] and "Device disconnected" in m["error"]
    info = check_session(result.session.path, ("failed",))
    assert info["capture"]["events"] == faulty.delivered > 0
    assert "Device disconnected" in format_text(info)


class _Args:
    command = "demo"


def test_a_killed_recorder_fails_the_session(tmp_path, capsys):
    rig, events, frames, mapper = _sim(duration_s=3.0)

    def kill_recorder_once_it_wrote(processes):
        recorder = processes["recorder"][0]

        def kill():
            wait_until(lambda: any(tmp_path.glob("*/timestamps.csv")), 300, "the video")
            wait_until(lambda: next(tmp_path.glob("*/timestamps.csv")).stat().st_size > 200)
            os.kill(recorder.pid, signal.SIGKILL)

        threading.Thread(target=kill, daemon=True).start()

    result = run_live(
        events,
        frames,
        mapper,
        {"backend": "sim"},
        LiveOptions(tmp_path, progress=False, model="integration"),
        on_started=kill_recorder_once_it_wrote,
    )
    m = result.manifest
    assert m["status"] == "failed" and "recorder" in m["error"] and "signal 9" in m["error"]
    assert _live_exit_code(_Args(), m) == 1
    assert "failed" in capsys.readouterr().err
    info = check_session(result.session.path, ("failed",))
    assert info["capture"]["events"] == rig.events_emitted
    assert any("video ends where it stopped" in n for n in info["notes"])
    with av.open(str(result.session.video_path)) as c:  # fragmented MP4: plays up to the cut
        assert sum(1 for _ in c.decode(video=0)) > 0


# -- a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 30 MB tmpfs (CI runs as root, so it runs there)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_disk_full_keeps_the_first_error_and_every_file_valid(small_disk):
    proc = demo(small_disk, "--seconds", "120")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "raw recording" in err and "Free disk space" in err, err
    (session,) = small_disk.glob("*/")
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["status"] == "failed"
    assert "raw recording" in manifest["error"] and "Free disk space" in manifest["error"]
    clock = json.loads((session / "clock.json").read_text())  # never 0 bytes
    assert clock["n"] > 0
    info = check_session(session, ("failed",), disk_full=True)  # readable to its last packet
    assert info["raw"]["events"] > 0
    assert not list(session.glob("*.tmp")) and not list(session.glob(".*.tmp"))


class _KillsWorkerAtTheEnd:
    """The simulated event camera; when its stream ends, the (busy) worker is killed."""

    def __init__(self, source) -> None:
        self._source, self.worker_pid = source, None

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def __enter__(self):
        self._source.__enter__()
        return self

    def __exit__(self, *exc):
        return self._source.__exit__(*exc)

    def read(self, timeout_s: float | None = None):
        try:
            return self._source.read(timeout_s=timeout_s)
        except EOFError:
            if self.worker_pid is not None:
                os.kill(self.worker_pid, signal.SIGKILL)
                self.worker_pid = None
            raise


def test_a_worker_killed_at_the_end_does_not_hold_the_run(tmp_path):
    """With a job timeout of 10 minutes, the run still ends as soon as the pool notices
    the dead worker (heartbeat): its interval is re-sent or listed as lost, never left
    to time out. TimeLens on the CPU keeps the worker busy, so it dies mid-interval."""
    _, events, frames, mapper = _sim(duration_s=2.0)
    source = _KillsWorkerAtTheEnd(events)

    def remember_worker(processes):
        source.worker_pid = processes["workers"][0].pid

    result = run_live(
        source,
        frames,
        mapper,
        {"backend": "sim"},
        LiveOptions(tmp_path, progress=False, model="timelens", job_timeout_s=600),
        on_started=remember_worker,
    )
    m = result.manifest
    assert source.worker_pid is None, "the event stream never ended"
    assert m["status"] == "complete", m.get("error")
    assert m["pool"]["workers_lost"] >= 1 or m["pool"]["restarts"] >= 1
    reasons = [s["reason"] for s in m["output"]["skipped_intervals"]]
    assert not [r for r in reasons if "no result within" in r], reasons
    check_session(result.session.path, ("complete",))


def test_atomic_writes_on_a_full_disk(tmp_path):
    """The old file stays whole when the new one does not fit; the session's reserve
    lets the final write through once."""
    from pipeline.session import RESERVE_BYTES, RESERVE_FILE, write_atomic

    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        target = disk / "session.json"
        target.write_text('{"status": "recording"}')
        (disk / RESERVE_FILE).write_bytes(b"\0" * RESERVE_BYTES)
        filler = disk / "raw.aedat4"
        with open(filler, "wb", buffering=0) as f:  # fill the disk, as the raw writer does
            try:
                while True:
                    f.write(b"\1" * 4096)
            except OSError:
                pass
        big = json.dumps({"status": "failed", "pad": "x" * 500_000})
        with pytest.raises(OSError):
            write_atomic(target, big)
        assert json.loads(target.read_text()) == {"status": "recording"}
        assert sorted(p.name for p in disk.iterdir()) == [RESERVE_FILE, "raw.aedat4", target.name]
        write_atomic(target, big, use_reserve=True)
        assert json.loads(target.read_text())["status"] == "failed"
        assert not (disk / RESERVE_FILE).exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
