"""The errors that are the user's to fix: the CLI prints them without a traceback."""

from __future__ import annotations

from calibration.errors import CalibrationError
from models.registry import ModelError
from pipeline.live import LiveError
from pipeline.outputs import OutputError
from pipeline.pool import PoolError
from pipeline.rawfile import RawWriteError
from pipeline.security import SecurityError
from pipeline.session import SessionError
from rig.base import SourceError
from rig.config import ConfigError
from rig.sync import SyncError


def _cli_error() -> type[Exception]:
    from pipeline.cli import CliError

    return CliError


USER_ERRORS: tuple[type[BaseException], ...] = (
    _cli_error(),
    LiveError,
    OutputError,
    RawWriteError,
    SessionError,
    SecurityError,
    PoolError,
    SourceError,
    SyncError,
    ModelError,
    CalibrationError,
    ConfigError,
    FileNotFoundError,
    ValueError,
)
