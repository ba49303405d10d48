"""The console entry point's Ctrl-C handling (pipeline/entry.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A command line whose first step takes the Ctrl-C inside a weakref callback (where
# the import machinery's module locks are released while `slomo-rig` is still
# importing): Python cannot raise from there, prints "Exception ignored" and drops the
# KeyboardInterrupt. The command then "runs" for up to two minutes.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time, weakref
    from pipeline import cli, entry

    def command(argv):
        class Lock:
            pass
        lock = Lock()
        def released(_):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):  # the handler runs here, inside the callback
                pass
        ref = weakref.ref(lock, released)
        del lock
        end = time.monotonic() + 120
        while time.monotonic() < end:
            time.sleep(0.01)
        print("ran on as if never interrupted", flush=True)
        return 0

    cli.main = command
    sys.exit(entry.main([]))
    """
)


def test_a_ctrl_c_lost_in_a_callback_still_interrupts() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300
    )
    assert "ran on" not in proc.stdout, proc.stderr
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr
    assert "KeyboardInterrupt" not in proc.stderr and "Traceback" not in proc.stderr
