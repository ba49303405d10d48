"""Running TimeLens: an onnxruntime engine and the `Interpolator` the pipeline uses.

The engine picks TensorRT -> CUDA -> CPU among the providers that onnxruntime lists AND
that actually work here (onnxruntime-gpu lists GPU providers even on machines without a
GPU and silently falls back), logging why each one was skipped. All inserted frames of
an interval run as one batch: the U-Nets dominate and batching keeps the device busy.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch

from contracts.jobs import IntervalJob
from models.export import INPUT_NAMES, OUTPUT_NAME
from models.interpolator import Interpolator
from models.timelens import TimeLens, interval_voxel_grids, interval_voxel_grids_torch

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: Values of OnnxTimeLens(precision=...): None runs the graph as exported.
PRECISIONS = ("fp32", "int8")


def cpu_session_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options tuned for the CPU provider.

    Full graph optimisation (constant folding, Conv+activation fusion, the NCHWc blocked
    layout for AVX2/AVX-512 convolutions); intra-op threads default to the cores this
    process may use, which is what onnxruntime would pick too but explicit here so the
    bench reports it.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    so.inter_op_num_threads = 1
    # No busy-waiting after a run: the worker builds voxel grids and encodes between
    # runs on the same cores, and spinning threads would steal them (measured: no loss
    # in ONNX speed on 2 cores, and eager torch next to it no longer slowed 3x).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _provider_options(provider: str, device_id: int, cache_dir: Path | None) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":
        opts = {"device_id": str(device_id)}
        if cache_dir is not None:
            # Engines take minutes to build for the full model; cache them per shape.
            cache_dir.mkdir(parents=True, exist_ok=True)
            opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(cache_dir))
        return opts
    if provider == "CUDAExecutionProvider":
        return {"device_id": str(device_id), "cudnn_conv_algo_search": "HEURISTIC"}
    return {}


class OnnxTimeLens:
    """An onnxruntime session over an exported TimeLens graph (see models.export).

    `providers`: candidates in order of preference (default TensorRT, CUDA, CPU); the
    first that loads and passes a tiny probe inference is used. `self.provider` says
    which; `self.skipped` lists (provider, reason) for the others.

    `precision`: None (default) runs the graph as it is. "fp32" insists on an fp32
    graph. "int8" is the fast CPU engine (see models.quantize): an int8 graph runs as
    is; an fp32 graph is quantized once, with `calibration_inputs` or, by default,
    inputs from the simulated rig, into `<name>.int8.onnx` beside it (reused while it
    matches the fp32 file). int8 runs on the CPU provider only; GPU providers are
    skipped with that reason.
    """

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        device_id: int = 0,
        threads: int | None = None,
        trt_cache_dir: str | Path | None = None,
        probe: bool = True,
        precision: str | None = None,
        calibration_inputs: Iterable[Mapping[str, np.ndarray]] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"ONNX model {self.path} does not exist; export one with "
                "models.export.export_onnx (or `slomo-rig` export) first."
            )
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be None or one of {PRECISIONS}, got {precision!r}")
        self.device_id = device_id
        self.skipped: list[tuple[str, str]] = []
        wanted = list(providers or PREFERRED_PROVIDERS)
        if precision is not None:
            self.path = _graph_for_precision(self.path, precision, calibration_inputs)
        if precision == "int8":
            for provider in [p for p in wanted if p != "CPUExecutionProvider"]:
                self._skip(provider, "int8 graphs run on the CPU provider only")
            wanted = ["CPUExecutionProvider"]
        available = set(ort.get_available_providers())
        cache = Path(trt_cache_dir) if trt_cache_dir else self.path.parent / "trt_cache"
        self.session: ort.InferenceSession | None = None
        driver = _cuda_driver_present()
        for provider in wanted:
            if provider not in available:
                self._skip(provider, "not in this onnxruntime build")
                continue
            if provider in GPU_PROVIDERS and not driver:
                # onnxruntime-gpu lists GPU providers everywhere; without a driver it only
                # prints errors and falls back, so skip it quietly with the reason.
                self._skip(provider, "no NVIDIA driver (libcuda.so.1 not loadable)")
                continue
            try:
                session = self._open(provider, threads, cache)
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next one
                self._skip(provider, f"session creation failed: {exc}")
                continue
            if session.get_providers()[0] != provider:
                self._skip(
                    provider,
                    "onnxruntime fell back (driver/CUDA/cuDNN/TensorRT libraries missing?)",
                )
                continue
            if probe and provider in GPU_PROVIDERS:
                try:
                    self._probe(session, provider)
                except Exception as exc:  # noqa: BLE001
                    self._skip(provider, f"probe inference failed: {exc}")
                    continue
            self.session = session
            self.provider = provider
            break
        if self.session is None:
            reasons = "; ".join(f"{p}: {r}" for p, r in self.skipped)
            raise RuntimeError(f"no usable onnxruntime provider for {self.path} ({reasons})")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.precision = meta.get("precision", "fp32")
        self.width = float(meta.get("width", "nan"))
        self.on_gpu = self.provider in GPU_PROVIDERS
        log.info("TimeLens ONNX %s on %s (%s)", self.path.name, self.provider, self.precision)

    def _skip(self, provider: str, reason: str) -> None:
        self.skipped.append((provider, reason))
        log.info("onnxruntime provider %s skipped: %s", provider, reason)

    def _open(self, provider: str, threads: int | None, cache: Path) -> ort.InferenceSession:
        so = cpu_session_options(threads)
        chain = [(provider, _provider_options(provider, self.device_id, cache))]
        if provider != "CPUExecutionProvider":
            chain.append(("CPUExecutionProvider", {}))
        names = [p for p, _ in chain]
        opts = [o for _, o in chain]
        return ort.InferenceSession(
            str(self.path), sess_options=so, providers=names, provider_options=opts
        )

    def _probe(self, session: ort.InferenceSession, provider: str) -> None:
        """A 32x32 inference: GPU providers can load and still fail at the first run."""
        feeds = {name: np.zeros(_probe_shape(name), np.float32) for name in INPUT_NAMES}
        session.run(None, feeds)

    def run(
        self,
        before_rgb: np.ndarray,
        after_rgb: np.ndarray,
        before_voxel: np.ndarray,
        before_reversed_voxel: np.ndarray,
        after_voxel: np.ndarray,
        tau: np.ndarray,
    ) -> np.ndarray:
        """One batched inference; numpy float32 in (see export), [B,3,H,W] float32 out."""
        arrays = [before_rgb, after_rgb, before_voxel, before_reversed_voxel, after_voxel, tau]
        feeds = {
            name: np.ascontiguousarray(a, dtype=np.float32)
            for name, a in zip(INPUT_NAMES, arrays, strict=True)
        }
        assert self.session is not None
        if not self.on_gpu:
            return self.session.run([OUTPUT_NAME], feeds)[0]
        # IO binding: inputs are copied to the GPU once and the output is allocated there
        # by onnxruntime, avoiding its per-run host staging copies.
        binding = self.session.io_binding()
        for name, a in feeds.items():
            binding.bind_ortvalue_input(
                name, ort.OrtValue.ortvalue_from_numpy(a, "cuda", self.device_id)
            )
        binding.bind_output(OUTPUT_NAME, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def _graph_precision(path: Path) -> str:
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}.get("precision", "fp32")


def _graph_for_precision(
    path: Path, precision: str, calibration_inputs: Iterable[Mapping[str, np.ndarray]] | None
) -> Path:
    """The graph file that runs `precision`: `path` itself, or its cached int8 copy."""
    have = _graph_precision(path)
    if have == precision:
        return path
    if precision == "fp32" or have != "fp32":
        raise ValueError(
            f"{path} is a {have} graph and cannot run as {precision}; export an fp32 graph "
            "with models.export.export_onnx and pass that."
        )
    from models.quantize import quantize_onnx, simulated_calibration_inputs, source_digest

    out = path.with_name(f"{path.stem}.int8.onnx")
    digest = source_digest(path)
    if out.is_file():
        proto = onnx.load(str(out), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        if meta.get("precision") == "int8" and meta.get("source_sha256") == digest:
            return out
    if calibration_inputs is None:
        calibration_inputs = simulated_calibration_inputs()
    log.info("quantizing %s to int8 (%s)", path.name, out.name)
    return quantize_onnx(path, out, calibration_inputs)


def _cuda_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _probe_shape(name: str) -> list[int]:
    return [1] if name == "tau" else [1, 3 if name.endswith("rgb") else 5, 32, 32]


class TimeLensInterpolator(Interpolator):
    """TimeLens behind the pipeline's Interpolator interface, on ONNX or eager torch.

    backend="onnx" needs `engine` (an OnnxTimeLens) or `onnx_path`; backend="torch"
    needs `model` (a TimeLens) and runs it under inference_mode on `device`.
    Voxel grids are built with numpy on CPU, with torch when the compute is on a GPU.
    `max_batch` splits very long intervals to bound memory; by default every inserted
    frame of an interval is one batch.
    """

    name = "timelens"

    def __init__(
        self,
        model: TimeLens | None = None,
        *,
        backend: Literal["onnx", "torch"] = "onnx",
        engine: OnnxTimeLens | None = None,
        onnx_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        max_batch: int | None = None,
    ) -> None:
        self.backend = backend
        self.max_batch = max_batch
        if backend == "torch":
            if model is None:
                raise ValueError("backend='torch' needs a TimeLens model")
            self.device = torch.device(device)
            self.model = model.to(self.device).eval()
            self.engine = None
        elif backend == "onnx":
            if engine is None:
                if onnx_path is None:
                    raise ValueError("backend='onnx' needs an OnnxTimeLens engine or onnx_path")
                engine = OnnxTimeLens(onnx_path)
            self.engine = engine
            self.model = None
            gpu = engine.on_gpu and torch.cuda.is_available()
            self.device = torch.device("cuda", engine.device_id) if gpu else torch.device("cpu")
        else:
            raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")

    def interpolate(self, job: IntervalJob) -> np.ndarray:
        """Frames at job.timestamps_us: [N, H, W, 3] uint8 RGB."""
        taus = np.asarray(job.taus, np.float64)
        n, h, w = len(taus), job.height, job.width
        if n == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        step = self.max_batch or n
        out = [self._batch(job, taus[i : i + step]) for i in range(0, n, step)]
        return np.concatenate(out, 0)

    def _batch(self, job: IntervalJob, taus: np.ndarray) -> np.ndarray:
        n, h, w = len(taus), job.height, job.width
        ev = job.events
        if self.device.type == "cuda":
            dev = self.device
            before, rev, after = interval_voxel_grids_torch(
                torch.as_tensor(np.asarray(ev.x, np.float32), device=dev),
                torch.as_tensor(np.asarray(ev.y, np.float32), device=dev),
                torch.as_tensor(np.asarray(ev.t, np.int64), device=dev),
                torch.as_tensor(np.asarray(ev.p), device=dev),
                job.t0_us,
                job.t1_us,
                taus,
                h,
                w,
            )
        else:
            before, rev, after = (
                torch.from_numpy(g)
                for g in interval_voxel_grids(
                    ev.x, ev.y, ev.t, ev.p, job.t0_us, job.t1_us, taus, h, w
                )
            )
        f0 = _to_chw(job.frame0).expand(n, -1, -1, -1)
        f1 = _to_chw(job.frame1).expand(n, -1, -1, -1)
        tau_t = torch.as_tensor(taus, dtype=torch.float32)
        if self.backend == "torch":
            assert self.model is not None
            d = self.device
            with torch.inference_mode():
                frames = self.model(
                    f0.to(d), f1.to(d), before.to(d), rev.to(d), after.to(d), tau_t.to(d)
                ).cpu()
            frames = frames.numpy()
        else:
            assert self.engine is not None
            frames = self.engine.run(
                f0.numpy(),
                f1.numpy(),
                before.cpu().numpy(),
                rev.cpu().numpy(),
                after.cpu().numpy(),
                tau_t.numpy(),
            )
        return to_uint8_frames(frames)


def _to_chw(frame: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 RGB -> float32 [1,3,H,W] in [0,1] (no mean/std, as the official model)."""
    return (
        torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div_(255.0)[None]
    )


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """[N,3,H,W] float -> [N,H,W,3] uint8 as the released script does: clamp, x255, truncate."""
    clipped = np.clip(frames, 0.0, 1.0) * 255.0
    return np.ascontiguousarray(clipped.astype(np.uint8).transpose(0, 2, 3, 1))
