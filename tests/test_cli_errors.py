"""Bad input on the command line: a clear message, exit status 2, nothing created."""

from __future__ import annotations

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
