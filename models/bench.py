"""Model throughput: ms per inserted frame and frames/s for eager torch and ONNX.

Random weights (speed does not depend on values), one inserted frame per run so the
figures compare directly with the facts file. Eager torch is measured fairly: under
torch.inference_mode with torch's default threads. ONNX GPU rows appear only when an
onnxruntime GPU provider really works (see models.engine.OnnxTimeLens). On the CPU
provider the int8 engine (models.quantize, calibrated on simulated-rig inputs) is
timed in the same interleaved loop, so its "vs eager" ratio comes from one run.

`bench_cpu_default` times the default model (models.registry.DEFAULT_MODEL, the CPU
fusion) on one DAVIS-like 8x interval at 346x260 (a spinning wheel over a panning
background, models.fastscenes: about 50k events): the CPU speed target of the default.
`bench_model` adds its row unless told not to.

`bench_torch_cuda` times eager PyTorch on a CUDA device (fp32 with cuDNN's TF32
convolutions, and fp16 U-Nets in channels-last layout): the GPU figures on machines
where torch has CUDA but onnxruntime has no GPU provider (the lent GPU machines hold a
CPU-only onnxruntime, and onnxruntime-gpu cannot be carried there).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from models.engine import GPU_PROVIDERS, OnnxTimeLens
from models.export import export_onnx, sample_inputs
from models.quantize import simulated_calibration_inputs
from models.timelens import TimeLens


def _time_interleaved(
    runs: Sequence[tuple[tuple[str, str, str], Callable[[], object]]], repeats: int
) -> list[tuple[tuple[str, str, str], float]]:
    """Median seconds per run, after one warm-up each (first runs pay allocation).

    Backends alternate within each repeat so background load on a shared machine hits
    them alike and their ratio stays meaningful.
    """
    for _, fn in runs:
        fn()
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(max(1, repeats)):
        for i, (_, fn) in enumerate(runs):
            start = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - start)
    return [(key, statistics.median(s)) for (key, _), s in zip(runs, samples, strict=True)]


def _row(
    size: tuple[int, int],
    width: float,
    backend: str,
    provider: str,
    precision: str,
    seconds: float,
    batch: int,
) -> dict:
    ms = seconds * 1000.0 / batch
    return {
        "height": size[0],
        "width_px": size[1],
        "model_width": width,
        "backend": backend,
        "provider": provider,
        "precision": precision,
        "batch": batch,
        "ms_per_frame": ms,
        "fps": 1000.0 / ms,
    }


def bench_model(
    sizes: Sequence[tuple[int, int]] = ((256, 256), (640, 480)),
    widths: Sequence[float] = (1.0, 0.25),
    backends: Sequence[str] = ("torch", "onnx"),
    repeats: int = 3,
    batch: int = 1,
    workdir: str | Path | None = None,
    cpu_precisions: Sequence[str] = ("fp32", "int8"),
    cpu_default: bool = True,
) -> list[dict]:
    """Time every (size, width, backend) and return one dict per measurement.

    sizes are (height, width) in pixels. For "onnx" the fp32 graph runs on the best
    working provider; when that is a GPU provider an fp16 graph is timed as well and
    CPU rows are not repeated. On the CPU provider every precision in `cpu_precisions`
    beyond fp32 gets its own engine (int8: quantized once per width, calibrated on
    simulated-rig inputs at the first size). Keys: height, width_px, model_width, backend,
    provider, precision, batch, ms_per_frame, fps. With cpu_default, the last row is
    `bench_cpu_default` (same keys plus ms_per_interval and factor).
    """
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for width in widths:
            torch.manual_seed(0)
            model = TimeLens(width=width).eval()
            engines: list[OnnxTimeLens] = []
            if "onnx" in backends:
                fp32 = export_onnx(model, Path(tmp) / f"w{width}.onnx")
                engines.append(OnnxTimeLens(fp32))
                if engines[0].provider in GPU_PROVIDERS:
                    fp16 = export_onnx(model, Path(tmp) / f"w{width}_fp16.onnx", fp16=True)
                    engines.append(OnnxTimeLens(fp16))
                else:
                    for precision in cpu_precisions:
                        if precision != "fp32":
                            # Speed does not depend on the ranges; simulated-rig inputs at
                            # the first size keep calibration short and realistic.
                            calib = simulated_calibration_inputs(*sizes[0], intervals=2)
                            engines.append(
                                OnnxTimeLens(fp32, precision=precision, calibration_inputs=calib)
                            )
            for size in sizes:
                args = sample_inputs(batch, size[0], size[1])
                feeds = [a.numpy() for a in args]
                runs: list[tuple[tuple[str, str, str], Callable[[], object]]] = []
                if "torch" in backends:

                    def eager(
                        args: tuple[torch.Tensor, ...] = args, model: TimeLens = model
                    ) -> None:
                        with torch.inference_mode():
                            model(*args)

                    runs.append((("torch", "cpu", "fp32"), eager))
                for engine in engines:
                    key = ("onnx", engine.provider, engine.precision)
                    runs.append((key, lambda e=engine, f=feeds: e.run(*f)))
                for key, secs in _time_interleaved(runs, repeats):
                    rows.append(_row(size, width, *key, secs, batch))
            del engines
    if cpu_default:
        rows.append(bench_cpu_default(repeats=max(5, repeats)))
    return rows


def bench_cpu_default(
    size: tuple[int, int] = (260, 346), factor: int = 8, repeats: int = 5, seed: int = 0
) -> dict:
    """The default model on one simulated DAVIS-like interval (models.fastscenes wheel
    scene, `size` = (height, width)): median wall ms per interval over `repeats` after a
    warm-up, with the factor-1 inserted frames of one interval per run. Also the median
    CPU time of this process per interval (all its threads): on a machine shared with
    other jobs the wall time measures the load, the CPU time the work."""
    from models.fastscenes import scene_intervals
    from models.registry import DEFAULT_MODEL, make_interpolator

    if tuple(size) != (260, 346):
        raise ValueError(f"bench_cpu_default: the DAVIS-like scene is 260x346, got {size}")
    job, _ = scene_intervals("wheel", seed, intervals=1, factor=factor)[0]
    interp = make_interpolator(DEFAULT_MODEL)
    interp.interpolate(job)
    wall, cpu = [], []
    for _ in range(max(1, repeats)):
        w0, c0 = time.perf_counter(), time.process_time()
        interp.interpolate(job)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    secs = statistics.median(wall)
    row = _row(size, 0.0, DEFAULT_MODEL, "cpu", "fp32", secs, factor - 1)
    row.update(
        ms_per_interval=secs * 1000.0,
        cpu_ms_per_interval=statistics.median(cpu) * 1000.0,
        factor=factor,
        events=len(job.events),
    )
    return row


def bench_torch_cuda(
    sizes: Sequence[tuple[int, int]] = ((256, 256), (480, 640)),
    widths: Sequence[float] = (1.0,),
    batch: int = 7,
    repeats: int = 10,
    precisions: Sequence[str] = ("fp32", "fp16"),
    device: str = "cuda",
) -> list[dict]:
    """ms per inserted frame for eager torch on `device`, every inserted frame of an
    interval in one batch (7 at 8x). Timed with CUDA events around each run after two
    warm-ups (cuDNN picks its algorithms in the first, `cudnn.benchmark`); the median of
    `repeats`. fp16 runs the U-Nets in half precision (warps and blending stay fp32, as
    the fp16 export does) with channels-last tensors, the layout tensor cores want."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"bench_torch_cuda: this torch ({torch.__version__}) sees no CUDA")
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = True
    rows: list[dict] = []
    for width in widths:
        for precision in precisions:
            torch.manual_seed(0)
            model = TimeLens(width=width).eval().to(dev)
            if precision == "fp16":
                model.half_unets()
                model = model.to(memory_format=torch.channels_last)
            elif precision != "fp32":
                raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
            for size in sizes:
                args = [a.to(dev) for a in sample_inputs(batch, size[0], size[1])]
                if precision == "fp16":
                    args = [
                        a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 else a
                        for a in args
                    ]
                times = []
                with torch.inference_mode():
                    for i in range(2 + max(1, repeats)):
                        start = torch.cuda.Event(enable_timing=True)
                        end = torch.cuda.Event(enable_timing=True)
                        start.record()
                        model(*args)
                        end.record()
                        torch.cuda.synchronize(dev)
                        if i >= 2:
                            times.append(start.elapsed_time(end) / 1000.0)
                row = _row(size, width, "torch", "cuda", precision, statistics.median(times), batch)
                row["device_name"] = torch.cuda.get_device_name(dev)
                row["max_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
                rows.append(row)
                torch.cuda.reset_peak_memory_stats(dev)
            del model
            torch.cuda.empty_cache()
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of bench_model rows, plus the ONNX/eager speed ratio per size and width."""
    lines = [
        "| size (WxH) | model width | backend | provider | precision | ms / frame | frames/s | vs eager |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    eager = {
        (r["height"], r["width_px"], r["model_width"]): r["fps"]
        for r in rows
        if r["backend"] == "torch" and r["provider"] == "cpu"
    }
    for r in rows:
        base = eager.get((r["height"], r["width_px"], r["model_width"]))
        ratio = f"{r['fps'] / base:.2f}x" if base else "-"
        if "ms_per_interval" in r:  # the CPU default: no model width, per interval too
            ratio = (
                f"{r['ms_per_interval']:.0f} ms / {r['factor']}x interval "
                f"(CPU {r['cpu_ms_per_interval']:.0f} ms)"
            )
        width = f"{r['model_width']:g}" if r["model_width"] else "-"
        lines.append(
            f"| {r['width_px']}x{r['height']} | {width} | {r['backend']} | "
            f"{r['provider']} | {r['precision']} | {r['ms_per_frame']:.1f} | {r['fps']:.2f} | {ratio} |"
        )
    return "\n".join(lines)
