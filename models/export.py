"""ONNX export of TimeLens with dynamic batch, height and width.

torch 2.13's default (dynamo) exporter needs onnxscript, which is not a project
dependency, and the TorchScript-based exporter (`dynamo=False`) still works and gives a
correct graph with dynamic shapes: the per-U-Net padding to a multiple of 32 is traced
from the symbolic shape, so sizes that are not multiples of 32 run correctly (tested).

fp16 (for GPU providers) keeps the graph's inputs and output in float32 and runs only
the U-Nets in half precision; warps, softmax and blending stay float32 because pixel
coordinates lose sub-pixel precision in fp16 at video widths.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import onnx
import torch

from models.timelens import TimeLens

INPUT_NAMES = (
    "before_rgb",
    "after_rgb",
    "before_voxel",
    "before_reversed_voxel",
    "after_voxel",
    "tau",
)
OUTPUT_NAME = "frame"
DEFAULT_OPSET = 17  # GridSample needs >= 16; 17 is widely supported by ORT and TensorRT.


def sample_inputs(
    batch: int = 2, height: int = 40, width: int = 56, bins: int = 5, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random model inputs; the default size is deliberately not a multiple of 32 so the
    tracer records the padding arithmetic rather than a no-op."""
    g = torch.Generator().manual_seed(seed)
    rgb = [torch.rand(batch, 3, height, width, generator=g) for _ in range(2)]
    vox = [torch.randn(batch, bins, height, width, generator=g) for _ in range(3)]
    tau = torch.rand(batch, generator=g)
    return (*rgb, *vox, tau)


def export_onnx(
    model: TimeLens,
    path: str | Path,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    sample_size: tuple[int, int] = (40, 56),
) -> Path:
    """Write `model` as ONNX to `path` and return the path.

    Inputs (all float32): before_rgb, after_rgb [B,3,H,W]; before_voxel,
    before_reversed_voxel, after_voxel [B,5,H,W]; tau [B]. Output: frame [B,3,H,W]
    float32, unclamped. B, H and W are dynamic. The model's own weights are not
    modified (fp16 works on a copy). Metadata records width, precision and pairing so
    the engine can report what it runs.
    """
    if opset < 16:
        raise ValueError(f"opset {opset} has no GridSample; use 16 or later")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).float().eval()
    if fp16:
        net.half_unets()
    args = sample_inputs(2, *sample_size)
    dims = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes = {name: dims for name in INPUT_NAMES[:-1]}
    dynamic_axes["tau"] = {0: "batch"}
    dynamic_axes[OUTPUT_NAME] = dims
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The legacy exporter warns that it is deprecated and about shape-dependent
        # Python arithmetic (the padding), which it does trace symbolically.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    meta = {
        "producer": "slomo-rig",
        "model": "timelens",
        "width": repr(model.width),
        "precision": "fp16" if fp16 else "fp32",
        "swap_refined": str(model.swap_refined),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path
