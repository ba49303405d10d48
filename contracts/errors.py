"""Error classes shared by every part of slomo-rig.

Two kinds of failure must never be confused (issue 15): a *user error* (bad input, a
path, a config key, a damaged session) is printed as one line with exit code 2, while
anything else that escapes a command is a *bug* and shows as one (exit 1, with a hint
to rerun with -v for the traceback). So a user-facing error is always raised as one of
the classes below (or one listed in pipeline/errors.py), never as a bare ValueError
or FileNotFoundError.

A *failed run* (a recording that stopped because a process died or the disk filled)
is neither: it is recorded in the session, summarised, and exits with code 1.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what, where and what to do."""


class SessionError(UserError, RuntimeError):
    """A session folder that cannot be used; the message says what to do."""


class ConfigError(UserError, ValueError):
    """The rig configuration is invalid; the message names the file and key."""


class OutputFolderError(UserError, RuntimeError):
    """An output folder that cannot be created or written to."""


class RawWriteError(RuntimeError):
    """The raw recording could not be written (disk full, device gone); the message
    says what happened and what was kept."""


class LiveError(RuntimeError):
    """The live pipeline could not start or stopped with an error."""


class ProcessDied(RuntimeError):
    """A thread or process of the pipeline ended unexpectedly; the session is failed."""
