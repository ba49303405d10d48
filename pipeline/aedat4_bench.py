"""How fast the AEDAT4 writer goes: events/s and bytes/event per compression mode.

`python -m pipeline.aedat4_bench` prints the figures; `slomo-rig bench pipeline` and the
tests call `bench_writer`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.aedat4 import Aedat4Writer, Compression
from rig.types import EventBatch


def bench_writer(
    n_events: int = 20_000_000,
    directory: str | os.PathLike[str] | None = None,
    batch_events: int = 50_000,
    rate_ev_per_us: int = 20,
    size: tuple[int, int] = (1280, 720),
) -> dict[str, dict[str, float]]:
    """Events/s and bytes/event of Aedat4Writer: "lz4", "none", and "lz4_2threads"
    (compress_threads=2).

    Input: sorted timestamps at ``rate_ev_per_us`` events per µs, uniformly random pixel
    positions and polarities (near worst case for compression), fed in batches of
    ``batch_events`` as a driver would. Generating the input is not timed; close() is.
    Files go to ``directory`` (default: the system temp dir) and are deleted.
    """
    rng = np.random.default_rng(1)
    t = np.arange(n_events, dtype=np.int64) // rate_ev_per_us + 1_000_000
    x = rng.integers(0, size[0], n_events, dtype=np.int16)
    y = rng.integers(0, size[1], n_events, dtype=np.int16)
    p = rng.integers(0, 2, n_events, dtype=np.int8)
    modes: dict[str, tuple[Compression, int]] = {
        "lz4": ("lz4", 0),
        "none": ("none", 0),
        "lz4_2threads": ("lz4", 2),
    }
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for name, (comp, threads) in modes.items():
            path = Path(tmp) / f"bench_{name}.aedat4"
            t0 = time.perf_counter()
            with Aedat4Writer(
                path, "bench", event_size=size, compression=comp, compress_threads=threads
            ) as w:
                for i in range(0, n_events, batch_events):
                    j = i + batch_events
                    w.write_events(EventBatch(t[i:j], x[i:j], y[i:j], p[i:j]))
            dt = time.perf_counter() - t0
            out[name] = {
                "events_per_s": n_events / dt,
                "bytes_per_event": path.stat().st_size / n_events,
                "seconds": dt,
            }
            path.unlink()
    return out


if __name__ == "__main__":
    for name, r in bench_writer().items():
        print(f"{name}: {r['events_per_s'] / 1e6:.1f} M ev/s, {r['bytes_per_event']:.2f} B/ev")
