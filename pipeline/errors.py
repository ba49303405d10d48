"""The errors that are the user's to fix: the CLI prints them without a traceback."""

from __future__ import annotations

from models.registry import ModelError
from pipeline.live import LiveError
from pipeline.outputs import OutputError
from pipeline.rawfile import RawWriteError
from pipeline.session import SessionError
from rig.base import SourceError
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
    SourceError,
    SyncError,
    ModelError,
    FileNotFoundError,
    ValueError,
)
