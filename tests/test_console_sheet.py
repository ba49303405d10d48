"""The Live part's previews as one stacked image: each part where the layout says,
starting on 16-pixel rows (JPEG blocks never mix two parts), with its own sequence
number, and a newer sheet whenever the capture tap's frame or events are newer (the
interpolated frame rides along)."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline import wire
from pipeline.console.hub import PreviewHub


def _frame(hub: PreviewHub, value: int, wall: float) -> None:
    image = np.full((30, 40, 3), value, np.uint8)
    hub._handle(wire.Message("frame", {"kind": "rgb", "wall": wall}, {"image": image}))


def _events(hub: PreviewHub, t0: int) -> None:
    n = 50
    t = t0 + np.arange(n, dtype=np.int64)
    x = np.arange(n, dtype=np.int16) % 20
    y = np.full(n, 5, np.int16)
    p = np.ones(n, np.int8)
    arrays = {"t": t, "x": x, "y": y, "p": p, "mt": t, "mx": x, "my": y, "mp": p}
    hub._handle(wire.Message("events", {"kind": "events", "size": [24, 18]}, arrays))


def test_live_sheet_stacks_the_three_previews_with_their_layout() -> None:
    hub = PreviewHub()
    try:
        assert hub.live_jpeg(30.0, (24, 18)) is None  # nothing yet
        _frame(hub, 200, 12.5)
        seq, wall, data, layout = hub.live_jpeg(30.0, (24, 18))
        assert [p["name"] for p in layout] == ["rgb"]  # no events yet: the frame alone
        assert seq == hub.seq("live") == 1 and wall == 12.5
        _events(hub, 1000)
        seq, _, data, layout = hub.live_jpeg(30.0, hub.event_size)
        assert seq == hub.seq("live") == 2
        assert [(p["name"], p["y"], p["w"], p["h"]) for p in layout] == [
            ("rgb", 0, 40, 30),
            ("events", 32, 24, 18),
            ("overlay", 64, 40, 30),
        ]
        assert [p["seq"] for p in layout] == [1, 1, 1]
        sheet = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert sheet.shape == (96, 40, 3)
        rgb = sheet[2:28, 2:38]
        assert abs(int(np.median(rgb)) - 200) <= 3  # the frame, where the layout says
        assert np.median(sheet[32 + 10 : 32 + 16, 2:20]) < 80  # the event image's grey
        # Cached while nothing is newer; a new frame alone makes a newer sheet.
        assert hub.live_jpeg(30.0, hub.event_size)[2] is data
        _frame(hub, 100, 13.0)
        seq2, _, _, layout2 = hub.live_jpeg(30.0, hub.event_size)
        assert seq2 == 3 and hub.wait_newer("live", 2, 0.0) == 3
        assert [p["seq"] for p in layout2] == [2, 1, 1]
        # The newest interpolated frame rides along with the next round of the tap.
        image = np.full((30, 40, 3), 50, np.uint8)
        hub._handle(wire.Message("frame", {"kind": "interpolated", "wall": 14.0}, {"image": image}))
        assert hub.seq("live") == 3
        _events(hub, 2000)
        _, _, _, layout3 = hub.live_jpeg(30.0, hub.event_size)
        assert [(p["name"], p["seq"], p["y"]) for p in layout3][1:] == [
            ("events", 2, 32),
            ("overlay", 2, 64),
            ("interpolated", 1, 96),
        ]
    finally:
        hub.close()
