"""Child processes that Ctrl-C does not reach, and a Ctrl-C that always stops cleanly.

A terminal sends SIGINT to the whole foreground process group. If the recorder and the
workers got it too, each would die on its own (tracebacks from every process, the
interval in flight lost, the video cut wherever the recorder was). So only the parent
hears Ctrl-C: children are started with SIGINT blocked (the mask is inherited through
fork and exec, and a blocked signal is never delivered), and the parent stops them in
order (pipeline/live.py). The parent keeps hearing SIGINT meanwhile: a signal that
arrives while the main thread blocks it stays pending or goes to another thread, and
Python runs the handler in the main thread either way.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Processes started inside inherit SIGINT blocked. A Ctrl-C (or SIGTERM) that
    arrives meanwhile is held and acted on right after (the handler in force then runs),
    so it can never cut a start in two: a child forked but not yet known to its parent
    would outlive it, holding the terminal's pipes open. A no-op off the main thread,
    where neither the mask nor the handlers decide who gets terminal signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in signals
    }
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])  # now the real handler runs


def start_shielded(process: mp.Process) -> None:
    """Start a child process that the terminal's Ctrl-C does not reach."""
    with sigint_blocked():
        process.start()


def run_child(what: str, fn: Callable[..., int], *args: Any, **kwargs: Any) -> int:
    """The body of a child process: an error ends it with one line on stderr and exit
    code 1 (the parent reports the exit: the session is failed, or the worker did not
    start), never a traceback; -v (DEBUG logging in the parent) is not seen here, so
    the traceback goes to the debug log only."""
    try:
        return int(fn(*args, **kwargs) or 0)
    except Exception as exc:  # the process boundary: report, do not crash noisily
        logging.getLogger(__name__).debug("%s failed", what, exc_info=True)
        print(f"slomo-rig {what}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        return 1


def recorder_entry(*args: Any) -> None:
    """The recorder process (see run_child)."""
    from pipeline.recorder import run_recorder

    sys.exit(run_child("recorder", run_recorder, *args))


def say(text: str) -> None:
    """One line on stderr, safe inside a signal handler (no buffered I/O)."""
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode())


class Interrupts:
    """Ctrl-C and SIGTERM during a live run, by phase: while "holding" (a step that must
    not be cut in two, like making the session folder) they are only counted; while
    starting, they abort the start (KeyboardInterrupt); while capturing, they set
    `stop` so capture ends and drains in order; while stopping, they only say that it
    is under way (a second Ctrl-C must not cut the teardown that keeps the recording
    safe)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.phase = "holding"
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.phase == "holding":
            return  # acted on when the step is done
        phase, self.phase = self.phase, "stopping"
        if phase == "starting":
            raise KeyboardInterrupt
        if phase == "running":
            self.stop.set()
            say("slomo-rig: stopping: closing the raw recording ...")
        else:
            say("slomo-rig: already stopping, please wait (the recording is being closed)")

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
