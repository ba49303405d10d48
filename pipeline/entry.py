"""The `slomo-rig` console entry point: Ctrl-C is handled before anything else runs.

Importing the command line (numpy, zmq, torch for some commands) and building its
parser take most of a second; a Ctrl-C in that time used to print a KeyboardInterrupt
traceback and exit -2. This module imports nothing heavy: it installs the handlers
first, then imports and runs the command line inside one try. The first Ctrl-C (or
SIGTERM) raises KeyboardInterrupt once; later ones only say that slomo-rig is
stopping, so the teardown that keeps a recording safe is never cut short
(pipeline/live.py installs its own handler while recording). A first Ctrl-C that lands
in a callback Python cannot raise from is delivered again (`_lost`).
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT, what shells expect after Ctrl-C


def _say(text: str) -> None:
    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass


_interrupted = False
_redeliver = False


def _again(signum: int, frame: object) -> None:
    global _redeliver
    if _redeliver:  # the first Ctrl-C's KeyboardInterrupt was lost: raise it now
        _redeliver = False
        raise KeyboardInterrupt
    _say("slomo-rig: already stopping, please wait")


def _lost(unraisable) -> None:
    """sys.unraisablehook. A signal handler runs wherever the main thread happens to be,
    and when that is a callback Python cannot raise from (a weakref callback of the
    import machinery while the command line is still importing, a __del__) the first
    Ctrl-C's KeyboardInterrupt is printed as "Exception ignored" and dropped: the
    command would then run on as if never interrupted. Deliver it again from outside
    that callback (another thread interrupts the main one)."""
    global _redeliver
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _interrupted:
        import _thread

        _redeliver = True
        # A bare thread (threading.Thread.start would wait here, and the interrupt
        # would land in this hook again); it lets the callback finish first, and if
        # the interrupt is lost once more this hook runs again and so does the thread.
        _thread.start_new_thread(_interrupt_soon, ())
        return
    sys.__unraisablehook__(unraisable)


def _interrupt_soon() -> None:
    global _redeliver
    import _thread
    import time

    time.sleep(0.05)
    if signal.getsignal(signal.SIGINT) is not _again:
        _redeliver = False  # a command's own handler took over (a recording's): it decides
    _thread.interrupt_main()


def interrupted() -> bool:
    """A Ctrl-C (or SIGTERM) arrived. The KeyboardInterrupt it raised may reach the
    caller as another exception: an import cut short in C code becomes an ImportError
    (numpy: "PyCapsule_Import could not import module"); that is still a Ctrl-C."""
    return _interrupted


def _first(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True
    signal.signal(signal.SIGINT, _again)
    signal.signal(signal.SIGTERM, _again)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    sys.unraisablehook = _lost
    signal.signal(signal.SIGINT, _first)
    signal.signal(signal.SIGTERM, _first)
    try:
        from pipeline.cli import main as cli_main

        code = cli_main(argv)
    except BaseException as exc:
        if not (isinstance(exc, KeyboardInterrupt) or _interrupted):
            raise
        _say("slomo-rig: interrupted")
        code = INTERRUPTED
    # Interpreter shutdown (joining child processes, flushing files) must not be cut by
    # a late Ctrl-C into a traceback: from here on, signals are ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main())
