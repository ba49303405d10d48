"""int8 static quantization of an exported TimeLens graph for the CPU engine.

Why: the four U-Nets are ~99% of the work (214 GFLOP per inserted frame at 256x256)
and fp32 convolution on a 2-core AVX-512 machine is close to its FMA limit, so the
fp32 ONNX graph is only ~1.3x faster than eager torch. Quantizing the U-Net
convolutions to uint8 activations x int8 per-channel weights lets onnxruntime's CPU
provider run them as QLinearConv with VNNI / AMX integer kernels.

What is quantized (QDQ format, static ranges from calibration):
- inside the four U-Nets only: Conv, LeakyReLU, AveragePool, Resize, Concat;
- NOT the stem conv (`conv1`) and its padding: its input is the raw voxel grids and
  images, whose long-tailed event counts lose sub-event precision in 8 bits;
- NOT the output conv (`conv3`): flows, residual flows, fusion RGB and attention
  scores stay float32 (an 8-bit flow would move warps by ~0.1 px steps);
- nothing outside the U-Nets: warps (GridSample), masks, softmax and blending run
  in float32 exactly as in the fp32 graph.

Calibration inputs should look like real inputs (see `simulated_calibration_inputs`):
random normal voxels have far wider ranges than event grids and waste the 8 bits.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from models.export import INPUT_NAMES
from models.timelens import interval_voxel_grids

#: Prefixes of the U-Net nodes in graphs written by models.export (module paths).
UNET_PREFIXES = (
    "/fusion_network/",
    "/flow_network/",
    "/flow_refinement_network/",
    "/attention_network/",
)
#: Operator types quantized inside the U-Nets (all have int8 CPU kernels in onnxruntime).
QUANT_OP_TYPES = ("Conv", "LeakyRelu", "AveragePool", "Resize", "Concat")
#: U-Net layers kept in float32 (module path inside the U-Net): the stem conv reads raw
#: voxels/images, the output conv produces flows and scores.
FLOAT_LAYERS = ("conv1/", "conv3/")

Feeds = Mapping[str, np.ndarray]


def unet_nodes_to_quantize(
    model: onnx.ModelProto,
    op_types: Sequence[str] = QUANT_OP_TYPES,
    float_layers: Sequence[str] = FLOAT_LAYERS,
) -> list[str]:
    """Names of the nodes that get Q/DQ: U-Net ops of `op_types` outside `float_layers`.

    `float_layers` match directly under a U-Net prefix, so "conv1/" keeps the stem conv
    in float32 but not `down1/conv1`. Raises ValueError when the graph has no U-Net
    nodes (not a models.export graph, or renamed nodes).
    """
    keep_float = tuple(p + layer for p in UNET_PREFIXES for layer in float_layers)
    names = [
        n.name
        for n in model.graph.node
        if n.op_type in op_types
        and n.name.startswith(UNET_PREFIXES)
        and not n.name.startswith(keep_float)
    ]
    if not names:
        raise ValueError(
            "no U-Net nodes found to quantize; expected node names starting with "
            f"{UNET_PREFIXES} as written by models.export.export_onnx"
        )
    return names


class _FeedsReader(CalibrationDataReader):
    def __init__(self, feeds: Iterable[Feeds]) -> None:
        self._it: Iterator[Feeds] = iter(feeds)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._it, None)
        if item is None:
            return None
        self.count += 1
        return {name: np.ascontiguousarray(item[name], np.float32) for name in INPUT_NAMES}


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_inputs: Iterable[Feeds],
    *,
    per_channel: bool = True,
    float_layers: Sequence[str] = FLOAT_LAYERS,
) -> Path:
    """Write an int8 (QDQ) copy of the fp32 TimeLens graph at `fp32_path` to `out_path`.

    calibration_inputs: dicts of model inputs (names in models.export.INPUT_NAMES,
    float32 arrays); a handful of realistic batches (e.g. `simulated_calibration_inputs`)
    is enough. Ranges are the calibration min/max. Activations are uint8 (asymmetric),
    weights int8 symmetric, per output channel by default: symmetric int8 weights take
    onnxruntime's symmetric (indirect) int8 convolution with AVX512-VNNI, measured the
    fastest here (asymmetric weights take the generic int8 GEMM path: ~17% slower;
    uint8 weights: slower than fp32). `float_layers`: U-Net layers left in float32.
    The graph keeps float32 inputs and output and the fp32 graph's metadata, with
    precision "int8" and the fp32 file's sha256. Returns `out_path`.
    """
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    feeds = iter(calibration_inputs)
    first = next(feeds, None)
    if first is None:
        raise ValueError("calibration_inputs is empty; give at least one batch of model inputs")
    proto = onnx.load(str(fp32_path))
    nodes = unet_nodes_to_quantize(proto, float_layers=float_layers)
    # MinMax calibration reduces every tensor to its min and max inside the graph, so
    # memory stays that of one inference. (CalibMaxIntermediateOutputs is not used: in
    # onnxruntime 1.31 it drops the collected ranges instead of merging them.)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The calibrator writes an augmented copy of the model next to it; keep that out
        # of the user's folders.
        src = Path(tmp) / "fp32.onnx"
        onnx.save(proto, str(src))
        reader = _FeedsReader(itertools.chain([first], feeds))
        quantize_static(
            str(src),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANT_OP_TYPES),
            nodes_to_quantize=nodes,
            per_channel=per_channel,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    out = onnx.load(str(out_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    meta["precision"] = "int8"
    meta["source_sha256"] = source_digest(fp32_path)
    meta["quantization"] = (
        f"QDQ u8 activations / s8 weights, per_channel={per_channel}, "
        f"calibration=minmax, float layers={','.join(float_layers)}"
    )
    del out.metadata_props[:]
    for key, value in meta.items():
        out.metadata_props.add(key=key, value=value)
    onnx.save(out, str(out_path))
    return out_path


def source_digest(path: str | Path) -> str:
    """sha256 of a graph file: an int8 copy records its fp32 source's, to spot stale copies."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ calibration data


def simulated_calibration_inputs(
    height: int = 256,
    width: int = 256,
    intervals: int = 3,
    taus: Sequence[float] = (0.25, 0.5, 0.75),
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Realistic model inputs from the simulated rig: one batch per interval.

    A DAVIS-style simulated sensor (events on the RGB pixel grid) watches a moving
    scene; for consecutive keyframes (mid-exposure times) the interval's events become
    the model's voxel grids at each tau, exactly as the pipeline builds them. Returns
    dicts of float32 arrays keyed by models.export.INPUT_NAMES, batch = len(taus).
    """
    from rig.sim import SimConfig, SimulatedRig  # the simulator is only needed here

    if intervals < 1:
        raise ValueError(f"intervals must be >= 1, got {intervals}")
    cfg = SimConfig(frame_size=(width, height), event_view="same_sensor", seed=seed)
    rig = SimulatedRig(cfg)
    period = cfg.frame_period_us
    until = rig.exposure_start_us(intervals + 1) + cfg.exposure_us + 1
    chunks, frames = [], []
    while rig.time_us < until:
        step = rig.advance(min(until, rig.time_us + 10_000))
        chunks.append(step.events)
        frames.extend(step.frames)
    t = np.concatenate([c.t for c in chunks])
    x = np.concatenate([c.x for c in chunks]).astype(np.float32)
    y = np.concatenate([c.y for c in chunks]).astype(np.float32)
    p = np.concatenate([c.p for c in chunks])
    tau_arr = np.asarray(taus, np.float64)
    half = cfg.exposure_us // 2
    out = []
    for i in range(min(intervals, len(frames) - 1)):
        t0 = rig.exposure_start_us(frames[i].index) + half
        t1 = rig.exposure_start_us(frames[i + 1].index) + half
        assert math.isclose(t1 - t0, period, abs_tol=2)
        before, rev, after = interval_voxel_grids(x, y, t, p, t0, t1, tau_arr, height, width)
        rgb0 = frames[i].image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        rgb1 = frames[i + 1].image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        n = len(tau_arr)
        arrays = (
            np.repeat(rgb0, n, 0),
            np.repeat(rgb1, n, 0),
            before,
            rev,
            after,
            tau_arr.astype(np.float32),
        )
        out.append(
            {
                k: np.ascontiguousarray(a, np.float32)
                for k, a in zip(INPUT_NAMES, arrays, strict=True)
            }
        )
    return out


# ------------------------------------------------------------------ accuracy


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two frames in [0,1] after clamping, as the pipeline outputs them."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
