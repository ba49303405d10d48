"""One error type for everything calibration can get wrong, so the CLI can print it and
exit non-zero, and callers can catch it without knowing which step failed."""

from __future__ import annotations


class CalibrationError(RuntimeError):
    """What went wrong, where (file or step), and what to do about it."""

    def __init__(self, what: str, where: str = "", todo: str = "") -> None:
        self.what = what
        self.where = where
        self.todo = todo
        msg = what
        if where:
            msg += f" [{where}]"
        if todo:
            msg += f" What to do: {todo}"
        super().__init__(msg)
