"""The errors that are the user's to fix: the CLI prints them as one line, exit code 2.

Only named classes are listed, never ValueError, FileNotFoundError or other built-in
exceptions: those come from programming bugs as often as from input, and a bug must
show as one (exit 1, traceback with -v), not as a puzzling "error:" line. A new
user-facing error subclasses contracts.errors.UserError or is added here.

Classes are named, not imported: importing every package that defines one would
import torch on every command, and an error can only come from a module that ran.
"""

from __future__ import annotations

USER_ERROR_CLASSES: frozenset[str] = frozenset(
    {
        "contracts.errors.UserError",  # SessionError, ConfigError, OutputFolderError
        "contracts.errors.LiveError",
        "pipeline.cli.CliError",
        "pipeline.replay.ReplayError",
        "pipeline.outputs.OutputError",
        "pipeline.security.SecurityError",
        "pipeline.pool.PoolError",
        "pipeline.inputs.base.InputError",
        "pipeline.inputs.aedat4file.Aedat4FormatError",
        "pipeline.holdout.HoldoutError",
        "rig.base.SourceError",
        "rig.sync.SyncError",
        "models.registry.ModelError",
        "models.timelens.CheckpointError",
        "models.dataset.DatasetError",
        "calibration.errors.CalibrationError",
    }
)


def is_user_error(exc: BaseException) -> bool:
    """True for an error the user can fix (the message says how)."""
    return any(
        f"{cls.__module__}.{cls.__qualname__}" in USER_ERROR_CLASSES for cls in type(exc).__mro__
    )
