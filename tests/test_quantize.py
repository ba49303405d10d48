"""int8 CPU engine: quantization of a small TimeLens, what stays float32, accuracy bound,
the engine's precision option and the bench rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.engine import OnnxTimeLens
from models.export import INPUT_NAMES, export_onnx, sample_inputs
from models.quantize import (
    UNET_PREFIXES,
    psnr,
    quantize_onnx,
    simulated_calibration_inputs,
    unet_nodes_to_quantize,
)
from models.timelens import TimeLens

H, W = 64, 80


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """fp32 and int8 graphs of a default-init width-0.25 model, plus held-out inputs."""
    tmp = tmp_path_factory.mktemp("q")
    torch.manual_seed(0)
    fp32 = export_onnx(TimeLens(width=0.25).eval(), tmp / "tl.onnx")
    calib = simulated_calibration_inputs(H, W, intervals=2, seed=0)
    int8 = quantize_onnx(fp32, tmp / "tl_int8.onnx", calib)
    held_out = simulated_calibration_inputs(H, W, intervals=2, seed=1)
    return fp32, int8, held_out


def _cpu(path: Path, **kw: object) -> OnnxTimeLens:
    return OnnxTimeLens(path, providers=["CPUExecutionProvider"], **kw)


def _run(engine: OnnxTimeLens, feeds: dict) -> np.ndarray:
    return engine.run(*(feeds[name] for name in INPUT_NAMES))


def test_simulated_inputs_look_like_model_inputs() -> None:
    feeds = simulated_calibration_inputs(48, 64, intervals=2, taus=(0.5,), seed=3)
    assert len(feeds) == 2
    f = feeds[0]
    assert list(f) == list(INPUT_NAMES)
    assert f["before_rgb"].shape == (1, 3, 48, 64) and f["after_voxel"].shape == (1, 5, 48, 64)
    assert f["tau"].tolist() == [0.5]
    assert 0.0 <= f["before_rgb"].min() and f["before_rgb"].max() <= 1.0
    assert np.abs(f["before_voxel"]).sum() > 0 and np.abs(f["after_voxel"]).sum() > 0
    np.testing.assert_array_equal(f["before_reversed_voxel"], -f["before_voxel"][:, ::-1])
    assert all(a.dtype == np.float32 for a in f.values())


def test_only_unet_internals_are_quantized(graphs: tuple[Path, Path, list[dict]]) -> None:
    fp32, int8, _ = graphs
    names = unet_nodes_to_quantize(onnx.load(str(fp32)))
    assert names and all(n.startswith(UNET_PREFIXES) for n in names)
    # Stem and output convs stay float32; inner convs (down*/conv1 too) are quantized.
    assert not any(n.startswith(tuple(p + "conv1/" for p in UNET_PREFIXES)) for n in names)
    assert not any("/conv3/" in n for n in names)
    assert "/fusion_network/down1/conv1/Conv" in names
    q = onnx.load(str(int8))
    quantized_inputs = {n.output[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    dq_outputs = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    for node in q.graph.node:
        if node.op_type == "GridSample" or node.op_type == "Softmax":
            # Warps and blending read float tensors that were never rounded to 8 bits.
            assert not set(node.input) & (quantized_inputs | dq_outputs), node.name
    meta = {p.key: p.value for p in q.metadata_props}
    assert meta["precision"] == "int8" and float(meta["width"]) == 0.25
    assert len(meta["source_sha256"]) == 64


def test_int8_close_to_fp32(graphs: tuple[Path, Path, list[dict]]) -> None:
    fp32, int8, held_out = graphs
    a, b = _cpu(fp32), _cpu(int8)
    assert b.precision == "int8" and b.provider == "CPUExecutionProvider"
    for feeds in held_out:
        ref, out = _run(a, feeds), _run(b, feeds)
        assert out.shape == ref.shape and out.dtype == np.float32
        # Measured ~50-60 dB on these inputs; 40 dB is the "fast engine" acceptance bound.
        assert psnr(ref, out) > 40.0
        assert np.abs(out - ref).mean() < 5e-3
    # Random inputs (outside the calibrated range) still give bounded error.
    rnd = dict(zip(INPUT_NAMES, (t.numpy() for t in sample_inputs(1, H, W, seed=5)), strict=True))
    assert psnr(_run(a, rnd), _run(b, rnd)) > 30.0


def test_engine_precision_option_quantizes_and_caches(
    graphs: tuple[Path, Path, list[dict]], tmp_path: Path
) -> None:
    fp32, int8, held_out = graphs
    src = tmp_path / "m.onnx"
    src.write_bytes(fp32.read_bytes())
    calib = simulated_calibration_inputs(H, W, intervals=1, seed=0)
    eng = _cpu(src, precision="int8", calibration_inputs=calib)
    assert eng.precision == "int8" and eng.path == tmp_path / "m.int8.onnx"
    mtime = eng.path.stat().st_mtime_ns
    # Second open reuses the cached copy (no calibration inputs needed).
    again = _cpu(src, precision="int8", calibration_inputs=iter(()))
    assert again.path.stat().st_mtime_ns == mtime
    assert psnr(_run(_cpu(src), held_out[0]), _run(again, held_out[0])) > 40.0
    # fp32 keeps the old behaviour; an int8 graph opens as is; mismatches are refused.
    assert _cpu(src, precision="fp32").precision == "fp32"
    assert _cpu(int8, precision="int8").path == int8
    with pytest.raises(ValueError, match="int8 graph"):
        _cpu(int8, precision="fp32")
    with pytest.raises(ValueError, match="precision"):
        _cpu(src, precision="int4")


def test_int8_skips_gpu_providers(graphs: tuple[Path, Path, list[dict]]) -> None:
    _, int8, _ = graphs
    eng = OnnxTimeLens(int8, precision="int8")
    assert eng.provider == "CPUExecutionProvider" and not eng.on_gpu
    reasons = dict(eng.skipped)
    assert "CPU provider only" in reasons["CUDAExecutionProvider"]


def test_empty_calibration_is_an_error(
    graphs: tuple[Path, Path, list[dict]], tmp_path: Path
) -> None:
    fp32, _, _ = graphs
    with pytest.raises(ValueError):
        quantize_onnx(fp32, tmp_path / "x.onnx", [])


def test_bench_has_int8_rows(tmp_path: Path) -> None:
    from models.bench import bench_model, format_table

    rows = bench_model(
        sizes=((32, 48),), widths=(0.25,), repeats=1, workdir=tmp_path, cpu_default=False
    )
    got = {(r["backend"], r["precision"]) for r in rows}
    assert got == {("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    table = format_table(rows)
    int8_line = next(line for line in table.splitlines() if "| int8 |" in line)
    assert int8_line.endswith("x |")  # its speed ratio against eager from the same run


def test_model_export_int8_runs_as_a_model_spec(tmp_path):
    """`slomo-rig model export --int8` writes a CPU int8 model that `--model
    timelens:FILE.int8.onnx` runs, close to its fp32 export."""
    import numpy as np

    from contracts.jobs import IntervalJob, inserted_timestamps
    from models.registry import make_interpolator
    from pipeline.cli import main
    from rig.types import EventBatch

    torch.manual_seed(0)
    TimeLens(width=0.25).save(tmp_path / "w.pt")
    assert main(["model", "export", str(tmp_path / "w.pt"), "--int8"]) == 0
    rng = np.random.default_rng(0)
    n = 3000
    ev = EventBatch(
        np.sort(rng.integers(0, 20_000, n)).astype(np.int64),
        rng.uniform(0, 63, n).astype(np.float32),
        rng.uniform(0, 47, n).astype(np.float32),
        rng.integers(0, 2, n).astype(np.int8),
    )
    f0 = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    job = IntervalJob(
        0, f0, np.roll(f0, 2, axis=1), 0, 20_000, ev, inserted_timestamps(0, 20_000, 4)
    )
    fp32 = make_interpolator(f"timelens:{tmp_path / 'w.onnx'}").interpolate(job)
    int8 = make_interpolator(f"timelens:{tmp_path / 'w.int8.onnx'}").interpolate(job)
    assert int8.shape == fp32.shape == (3, 48, 64, 3)
    assert np.abs(int8.astype(int) - fp32.astype(int)).mean() < 3.0
