"""Bad input on the command line: a clear message, exit status 2, nothing created."""

from __future__ import annotations

import os
import subprocess

import pytest

from pipeline.cli import main

SIM_RIG = """
wiring = "trigger"
[events]
backend = "sim"
[frames]
backend = "sim"
"""


def test_record_with_a_corrupt_calibration(tmp_path, capsys):
    cfg = tmp_path / "rig.toml"
    cfg.write_text(SIM_RIG)
    bad = tmp_path / "calib.json"
    bad.write_text('{"cameras": [ truncated')
    code = main(
        ["record", "--config", str(cfg), "--calibration", str(bad), "--out", str(tmp_path / "s")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "calib.json" in err
    assert not (tmp_path / "s").exists()


def test_record_with_a_missing_calibration(tmp_path, capsys):
    cfg = tmp_path / "rig.toml"
    cfg.write_text(SIM_RIG)
    code = main(
        [
            "record",
            "--config",
            str(cfg),
            "--calibration",
            str(tmp_path / "nope.json"),
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert code == 2 and "nope.json" in capsys.readouterr().err


def test_record_with_a_bad_config(tmp_path, capsys):
    cfg = tmp_path / "rig.toml"
    cfg.write_text(SIM_RIG.replace('backend = "sim"', 'backend = "webcam"', 1))
    assert main(["record", "--config", str(cfg), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "rig.toml" in err and "events.backend" in err
    cfg.write_text("wiring = [unclosed")
    assert main(["record", "--config", str(cfg), "--out", str(tmp_path / "s")]) == 2
    assert "rig.toml" in capsys.readouterr().err
    for bad in ("port = true", "host = 12", "path = 42"):
        cfg.write_text(SIM_RIG.replace("[frames]", f"{bad}\n[frames]"))
        assert main(["record", "--config", str(cfg), "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err
        assert "rig.toml" in err and f"'events.{bad.split()[0]}'" in err, err
    assert not (tmp_path / "s").exists()  # found before any folder or process


def test_record_needs_a_rig(tmp_path, capsys):
    assert main(["record", "--out", str(tmp_path / "s")]) == 2
    assert "--rig sim or --config" in capsys.readouterr().err


def test_replay_wrong_path_and_unknown_format(tmp_path, capsys):
    assert (
        main(["replay", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--factor", "4"])
        == 2
    )
    assert "missing" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 100)
    assert main(["replay", str(junk), "--out", str(tmp_path / "o"), "--factor", "4"]) == 2
    assert "junk.bin" in capsys.readouterr().err


def test_replay_of_a_session_with_a_corrupt_calibration(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--seconds", "1", "--quiet"]) == 0
    capsys.readouterr()
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all")
    code = main(
        [
            "replay",
            str(session),
            "--out",
            str(tmp_path / "o"),
            "--factor",
            "4",
            "--calibration",
            str(bad),
        ]
    )
    assert code == 2 and "bad.json" in capsys.readouterr().err


# -- damaged or edited sessions: `info` says what is wrong, exit 2, no traceback ----------


def _session(tmp_path, **manifest):
    """A session folder with a real (tiny) raw recording and the manifest given."""
    import json

    from pipeline.aedat4 import Aedat4Writer
    from pipeline.session import Session

    session = Session.create(tmp_path / "out", {"backend": "sim"}, name="s")
    with Aedat4Writer(session.raw_path, "cam", event_size=(8, 8), frame_size=(8, 8)):
        pass
    data = json.loads(session.manifest_path.read_text())
    data.update({"status": "complete", **manifest})
    session.manifest_path.write_text(json.dumps(data))
    return session


def _info_error(session, capsys) -> str:
    code = main(["info", str(session.path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    return err


def test_info_of_an_intact_session(tmp_path, capsys):
    session = _session(tmp_path)
    assert main(["info", str(session.path)]) == 0
    assert "status   complete" in capsys.readouterr().out


def test_info_refuses_wrong_types_naming_the_key(tmp_path, capsys):
    for manifest, key in (
        ({"files": "raw.aedat4"}, "'files'"),
        ({"format_version": "1"}, "'format_version'"),
        ({"capture": {"events": "many", "frames": 3}}, "'capture.events'"),
        ({"capture": "lots"}, "'capture'"),
        ({"status": ["complete"]}, "'status'"),
        ({"status": "finished"}, "'status'"),
        ({"output": {"skipped_intervals": [{"index": "3"}]}}, "skipped_intervals[0].index"),
        ({"clock": {"drift_ppm": "small"}}, "'clock.drift_ppm'"),
        ({"pool": {"workers_seen": 3}}, "'pool.workers_seen'"),
        ({"pool": {"restarts": "2"}}, "'pool.restarts'"),
        ({"workers": {"w": {"results_received": "9"}}}, "'workers.w.results_received'"),
        ({"output": {"latency_p50_ms": "fast"}}, "'output.latency_p50_ms'"),
    ):
        session = _session(tmp_path / key.strip("'[]."), **manifest)
        err = _info_error(session, capsys)
        assert "session.json" in err and key in err, (manifest, err)


def test_info_of_a_non_utf8_manifest_names_the_file(tmp_path, capsys):
    session = _session(tmp_path)
    session.manifest_path.write_bytes(b'{"format": "slomo-rig-session", "x": "\xff\xfe"}')
    err = _info_error(session, capsys)
    assert str(session.manifest_path) in err and "UTF-8" in err


def test_info_never_follows_a_path_out_of_the_session(tmp_path, capsys):
    for name in ("../../../../etc/passwd", "/etc/passwd", "sub/raw.aedat4", ".."):
        session = _session(tmp_path / str(abs(hash(name))), files={"raw": name})
        err = _info_error(session, capsys)
        assert "'files.raw'" in err and "inside its own folder" in err
        assert "root:" not in err


def test_info_of_a_complete_session_with_an_empty_raw_file(tmp_path, capsys):
    session = _session(tmp_path)
    session.raw_path.write_bytes(b"")
    err = _info_error(session, capsys)
    assert "raw.aedat4" in err and "empty" in err and "damaged" in err
    # a session that says it was cut off shows, and says the raw file is empty
    _session(tmp_path / "cut", status="recording").raw_path.write_bytes(b"")
    assert main(["info", str(tmp_path / "cut" / "out" / "s")]) == 0
    assert "empty (0 bytes)" in capsys.readouterr().out


def test_a_bug_is_not_reported_as_a_user_error(tmp_path, capsys, monkeypatch):
    """ValueError/FileNotFoundError from code are bugs: exit 1 and a hint, not exit 2."""
    import pipeline.info

    def broken(path):
        raise ValueError("some internal invariant")

    monkeypatch.setattr(pipeline.info, "describe", broken)
    session = _session(tmp_path)
    assert main(["info", str(session.path)]) == 1
    err = capsys.readouterr().err
    assert "internal error: ValueError" in err and "-v" in err and "Traceback" not in err


def test_every_listed_user_error_class_exists():
    import importlib

    from pipeline.errors import USER_ERROR_CLASSES

    for name in USER_ERROR_CLASSES:
        module, _, cls = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type), name


# -- output folders are checked before any work -------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write to, even root (CI runs as root): a read-only tmpfs."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_read_only_out_is_refused_before_any_work(read_only_dir, capsys):
    for argv in (
        ["demo", "--out", str(read_only_dir), "--seconds", "1", "--quiet"],
        ["demo", "--out", str(read_only_dir / "sub"), "--seconds", "1", "--quiet"],
        ["keys", str(read_only_dir / "keys")],
        [
            "replay",
            str(read_only_dir / "in.aedat4"),
            "--out",
            str(read_only_dir / "r"),
            "--factor",
            "4",
        ],
        ["calibrate", "--rig", "sim", "--auto", "--out", str(read_only_dir / "cal")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(read_only_dir) in err and "Traceback" not in err, err
    assert list(read_only_dir.iterdir()) == []


def test_replay_never_replaces_the_live_output_of_a_session(tmp_path, capsys):
    session = _session(tmp_path)
    (session.path / "slowmo.mp4").write_bytes(b"live video")
    argv = ["replay", str(session.path), "--out", str(session.path), "--factor", "4"]
    for extra in ([], ["--restart"]):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert "session folder" in err and "--force" in err and "Traceback" not in err
    assert (session.path / "slowmo.mp4").read_bytes() == b"live video"


def test_a_full_disk_is_refused_before_any_work(tmp_path, capsys):
    """A new session sets 2 MB aside for its final status; a disk without that room is
    refused at once (exit 2), not after the workers started."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        assert main(["demo", "--out", str(disk), "--seconds", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "no room for a recording" in err and str(disk) in err, err
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
