"""The prepared GPU-machine run (models.gpu_session): a CPU rehearsal of every phase
with only the packages the lent machine has, what comes back fitting its limits, the
assembly of the returned weights, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import gpu_session
from models.gpu_session import PART_BYTES, GpuSessionError, assemble
from models.timelens import TimeLens

ROOT = Path(__file__).resolve().parents[1]
#: Not on the lent GPU machine (see models/gpu_session.py): the run must not need them.
ABSENT_THERE = ("zmq", "dv_processing", "av", "lz4", "pypylon", "faery", "yaml")


def _rehearse(out: Path, work: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        "run",
        "--out", str(out), "--work", str(work), "--cache-dir", str(cache),
        "--device", "cpu", "--budget-s", "1500", "--eval-reserve-s", "25", "--max-steps", "14",
        "--width", "0.25", "--batch", "2", "--crop", "64", "--train-sequences", "3",
        "--eval-sequences", "1", "--frame-size", "96x64", "--data-workers", "2",
        "--probe-steps", "5", *extra,
    ]  # fmt: skip
    code = (
        "import sys\n"
        f"sys.modules.update({{m: None for m in {ABSENT_THERE!r}}})\n"
        "from models.gpu_session import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu_session")
    proc = _rehearse(base / "out", base / "work", base / "cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return base, proc


@pytest.mark.slow
def test_rehearsal_runs_every_phase_without_the_capture_packages(rehearsal):
    base, proc = rehearsal
    out = base / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["env"]["device"] == "cpu"
    train = report["train"]
    assert 10 <= train["steps_done"] <= train["steps_planned"]
    assert train["flow_steps"] > 0 and train["val_psnr"]
    # How well the budget holds is the machine's speed: docs/benchmarks.md, not a test.
    assert report["budget_s"] == 1500 and report["used_s"] > 0
    methods = set(report["eval"]["scores"])
    assert methods == {"timelens (this run)", "timelens (shipped)", "flow", "blend"}
    for per in report["eval"]["scores"].values():
        assert set(per) == {"4", "8"} and per["8"]["psnr"] > 10
    assert "| timelens (this run) |" in (out / "report.md").read_text()
    assert (out / "loss.csv").read_text().startswith("step,stage,loss")
    assert (
        "deadline" in (out / "run.log").read_text() or train["steps_done"] == train["steps_planned"]
    )
    # What comes back from the lent machine: at most 8 plain files of at most 16 MiB.
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size < 16 * 2**20 for f in files)


@pytest.mark.slow
def test_returned_weights_assemble_into_the_trained_model(rehearsal, tmp_path):
    base, _ = rehearsal
    ckpt = assemble(base / "out", tmp_path / "back.pt")
    back = TimeLens.load(ckpt)
    trained = TimeLens.load(base / "work" / "run" / "last.pt")
    assert back.width == trained.width == 0.25 and back.swap_refined is False
    for (k, a), (k2, b) in zip(
        back.state_dict().items(), trained.state_dict().items(), strict=True
    ):
        assert k == k2
        torch.testing.assert_close(a, b.half().float())  # fp16 on the way back, nothing else
    meta = torch.load(ckpt, weights_only=True)["metadata"]
    assert "gpu_session" in meta["trained_by"] and json.loads(meta["eval"])


@pytest.mark.slow
def test_damaged_or_missing_parts_are_reported(rehearsal, tmp_path):
    base, _ = rehearsal
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in (base / "out").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    part = sorted(copy.glob("weights.fp16.part*"))[0]
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(GpuSessionError, match="damaged"):
        assemble(copy, tmp_path / "x.pt")
    part.unlink()
    with pytest.raises(GpuSessionError, match="missing"):
        assemble(copy, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_assemble_needs_a_run_folder(tmp_path, capsys):
    assert gpu_session.main(["assemble", str(tmp_path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "report.json not found" in capsys.readouterr().err
    (tmp_path / "report.json").write_text(json.dumps({"weights": []}))
    with pytest.raises(GpuSessionError, match="lists no weights"):
        assemble(tmp_path, tmp_path / "x.pt")
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(GpuSessionError, match="not valid JSON"):
        assemble(tmp_path, tmp_path / "x.pt")


def test_a_width_whose_weights_cannot_come_back_is_refused_first(tmp_path, capsys):
    code = gpu_session.main(
        ["run", "--out", str(tmp_path / "o"), "--device", "cpu", "--width", "1.0"]
    )
    assert code == 2
    assert "could not come back" in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.json").exists()


def test_a_wrong_device_or_start_checkpoint_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "o"
    if not torch.cuda.is_available():
        assert gpu_session.main(["run", "--out", str(out), "--device", "cuda"]) == 2
        assert "sees no CUDA device" in capsys.readouterr().err
    missing = tmp_path / "nope.pt"
    code = gpu_session.main(["run", "--out", str(out), "--device", "cpu", "--init", str(missing)])
    assert code == 2
    assert str(missing) in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code = gpu_session.main(
        ["run", "--out", str(out), "--device", "cpu", "--init", str(tmp_path / "junk.pt")]
    )
    assert code == 2 and "junk.pt" in capsys.readouterr().err
    assert not (out / "report.json").exists()


def test_a_failed_training_is_reported_and_the_rest_still_runs(tmp_path, monkeypatch, capsys):
    def broken(*_args, **_kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(gpu_session, "_train", broken)
    out = tmp_path / "out"
    code = gpu_session.main(
        ["run", "--out", str(out), "--work", str(tmp_path / "w"), "--device", "cpu",
         "--train-sequences", "2", "--eval-sequences", "1", "--frame-size", "64x48",
         "--data-workers", "0"]
    )  # fmt: skip
    assert code == 1
    assert "train: RuntimeError: CUDA error" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["errors"] == [
        "train: RuntimeError: CUDA error: an illegal memory access was encountered"
    ]
    assert set(report["eval"]["scores"]) == {"timelens (shipped)", "flow", "blend"}
    assert "weights" not in report and "error: train" in (out / "report.md").read_text()


def test_parts_stay_under_the_returned_file_limit():
    assert PART_BYTES < 16 * 2**20


def test_bench_torch_cuda_measures_on_a_gpu_and_says_when_there_is_none():
    """One test for both machines: it runs (and can fail) with or without a GPU."""
    from models.bench import bench_torch_cuda

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="sees no CUDA"):
            bench_torch_cuda(sizes=((64, 64),))
        return
    rows = bench_torch_cuda(sizes=((64, 64),), widths=(0.25,), repeats=2)
    assert {r["precision"] for r in rows} == {"fp32", "fp16"}
    assert all(r["fps"] > 0 and r["provider"] == "cuda" for r in rows)


@pytest.mark.slow
def test_gpu_checks_rehearse_on_the_cpu():
    rows = {r["check"].split(":")[0]: r for r in gpu_session.gpu_checks(torch.device("cpu"))}
    assert len(rows) == 4 and all(r["passed"] for r in rows.values())
    fp16 = next(r for name, r in rows.items() if "fp16" in name)
    # Half precision really ran (frames differ from fp32) and stayed close (> 38 dB).
    assert 38.0 < fp16["value"] < 120.0
