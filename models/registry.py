"""Build an interpolator from the name the operator gives on the command line."""

from __future__ import annotations

from models.interpolator import Interpolator

MODEL_NAMES = ("timelens", "timelens:PATH", "integration", "flow", "blend")
DEFAULT_MODEL = "integration"


class ModelError(RuntimeError):
    """A model that cannot be built; the message says what to do."""


def make_interpolator(spec: str) -> Interpolator:
    name, _, arg = spec.partition(":")
    if name == "blend" and not arg:
        from models.baselines import BlendInterpolator

        return BlendInterpolator()
    if name == "flow" and not arg:
        from models.baselines import FlowInterpolator

        return FlowInterpolator()
    if name == "integration":
        from models.baselines import IntegrationInterpolator

        return IntegrationInterpolator(float(arg)) if arg else IntegrationInterpolator()
    raise ModelError(f"unknown model {spec!r}; choose one of: {', '.join(MODEL_NAMES)}")
