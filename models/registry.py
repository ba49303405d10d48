"""Build an interpolator from the name the operator gives on the command line.

- `fusion` (the default): DIS flow warping checked pixel by pixel against the events,
  event integration with thresholds fitted per interval where the flow fails
  (models.fusion). No weights, CPU only, keeps up live on a CPU.
- `timelens`: the shipped demo weights (models/weights/timelens_sim_small.onnx, trained
  on the simulated rig, see models/weights/README.md) on the onnxruntime engine.
- `timelens:PATH`: a user's model: an .onnx export (run as is), or a checkpoint
  (.pt/.pth/.bin: ours from `slomo-rig train`, or the official TimeLens checkpoint),
  run with PyTorch (on CUDA when available).
- `integration[:C]`, `flow`, `blend`: the classical baselines (no weights).
"""

from __future__ import annotations

from pathlib import Path

from models.interpolator import Interpolator

WEIGHTS_DIR = Path(__file__).with_name("weights")
SHIPPED_ONNX = WEIGHTS_DIR / "timelens_sim_small.onnx"
SHIPPED_CHECKPOINT = WEIGHTS_DIR / "timelens_sim_small.pt"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

MODEL_NAMES = ("fusion", "timelens", "timelens:PATH", "integration", "flow", "blend")
# The fusion beats the best classical method on the real DAVIS346 recording held out,
# on simulated fast and smooth scenes and on `slomo-rig eval` (docs/model.md), and runs
# at about 0.1 s per interval on a CPU. The shipped TimeLens weights (trained on CPU on
# the simulator) score below it and take about a second per interval on a CPU; a user's
# `timelens:PATH` (e.g. the official checkpoint, on a GPU) stays one flag away.
DEFAULT_MODEL = "fusion"


class ModelError(RuntimeError):
    """A model that cannot be built; the message says what to do."""


def make_interpolator(spec: str) -> Interpolator:
    name, _, arg = spec.partition(":")
    if name == "blend" and not arg:
        from models.baselines import BlendInterpolator

        return BlendInterpolator()
    if name == "fusion" and not arg:
        from models.fusion import FusionInterpolator

        return FusionInterpolator()
    if name == "flow" and not arg:
        from models.baselines import FlowInterpolator

        return FlowInterpolator()
    if name == "integration":
        from models.baselines import IntegrationInterpolator

        if not arg:
            return IntegrationInterpolator()
        try:
            return IntegrationInterpolator(float(arg))
        except ValueError:
            raise ModelError(
                f"integration:{arg}: the argument is the contrast threshold, a positive "
                "number such as integration:0.2"
            ) from None
    if name == "timelens":
        if not arg:
            if not SHIPPED_ONNX.is_file():
                raise ModelError(
                    f"the shipped TimeLens weights {SHIPPED_ONNX} are missing (incomplete "
                    "checkout?). Restore them from the repository, train your own with "
                    "'slomo-rig train', or give one with --model timelens:PATH"
                )
            return timelens_from_path(SHIPPED_ONNX)
        return timelens_from_path(Path(arg).expanduser())
    raise ModelError(f"unknown model {spec!r}; choose one of: {', '.join(MODEL_NAMES)}")


def timelens_from_path(path: Path, device: str | None = None) -> Interpolator:
    """A TimeLens interpolator for an .onnx file or a torch checkpoint; ModelError if the
    file is missing, of an unknown kind, or unreadable."""
    if not path.exists():
        raise ModelError(
            f"TimeLens model {path} does not exist; give an .onnx export or a checkpoint "
            f"({', '.join(CHECKPOINT_SUFFIXES)}) as --model timelens:PATH"
        )
    if not path.is_file():
        raise ModelError(f"TimeLens model {path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from models.engine import OnnxTimeLens, TimeLensInterpolator

        try:
            engine = OnnxTimeLens(path)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
            raise ModelError(
                f"cannot load ONNX model {path}: {exc}. Check the file is complete, or "
                "re-export it with 'slomo-rig model export CHECKPOINT'"
            ) from exc
        return TimeLensInterpolator(engine=engine)
    if suffix in CHECKPOINT_SUFFIXES:
        import torch

        from models.engine import TimeLensInterpolator
        from models.timelens import CheckpointError, TimeLens

        try:
            model = TimeLens.load(path)
        except CheckpointError as exc:
            raise ModelError(str(exc)) from exc
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return TimeLensInterpolator(model, backend="torch", device=dev)
    raise ModelError(
        f"TimeLens model {path}: unknown file type {suffix or '(none)'}; use an .onnx "
        f"export or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
    )
