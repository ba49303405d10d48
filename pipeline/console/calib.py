"""The calibration wizard in the page: `calibration.wizard.run_wizard`, the code behind
`slomo-rig calibrate`, in a thread, with what the page needs on the side: the newest
view from each camera with the detected corners drawn, a coverage map of the views so
far, the status lines, and at the end the verification, the overlay and the files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.board import BoardSpec, detect
from calibration.errors import CalibrationError
from calibration.eventimage import blink_image
from calibration.wizard import Pair, Status, WizardOptions, run_wizard
from pipeline.console.hub import jpeg
from pipeline.console.rig import NAME_RE, FormError


@dataclass
class CalibForm:
    name: str = "calib"
    rig_type: str = "beam_splitter"
    board: str = "9x6"
    square_mm: float = 25.0
    views: int = 20
    min_views: int = 8
    working_distance_m: float | None = None
    blink_ms: float = 200.0

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise FormError(f"file name {self.name!r}: use letters, digits, '.', '_' or '-'")
        if self.rig_type not in ("beam_splitter", "side_by_side"):
            raise FormError(f"rig type {self.rig_type!r}: beam_splitter or side_by_side")
        if not 1 <= self.views <= 200:
            raise FormError(f"views {self.views}: give 1 to 200")
        if not 1 <= self.min_views <= 200:
            raise FormError(f"minimum views {self.min_views}: give 1 to 200")
        if not 1 <= self.square_mm <= 1000:
            raise FormError(f"square size {self.square_mm} mm: give 1 to 1000 mm")
        if self.working_distance_m is not None and not 0.05 <= self.working_distance_m <= 1000:
            raise FormError(f"working distance {self.working_distance_m} m: give 0.05 to 1000 m")
        if not 20 <= self.blink_ms <= 5000:
            raise FormError(f"blink period {self.blink_ms} ms: give 20 to 5000 ms")
        try:
            self.spec = BoardSpec.parse(self.board, self.square_mm)
        except CalibrationError as exc:
            raise FormError(str(exc)) from None


class _PageStatus(Status):
    """The wizard's status lines, kept for the page instead of a terminal."""

    def __init__(self, job: CalibrationJob) -> None:
        self.job = job
        self._live = False

    def live(self, text: str) -> None:
        self.job.live_line = text

    def say(self, text: str) -> None:
        self.job.lines.append(text)


class CalibrationJob:
    def __init__(self, form: CalibForm, out: Path, sizes: tuple[tuple[int, int], tuple[int, int]]):
        self.form = form
        self.out = out
        self.rgb_size, self.event_size = sizes
        self.state = "running"
        self.lines: list[str] = []
        self.live_line = ""
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.images: dict[str, bytes] = {}
        self.seq = 0
        self.views = {"seen": 0, "rgb": 0, "events": 0}
        self._coverage = {
            "rgb": np.zeros(self.rgb_size[::-1], np.float32),
            "events": np.zeros(self.event_size[::-1], np.float32),
        }
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def _feedback(self, pairs: Iterable[Pair]) -> Iterator[Pair]:
        """Pass pairs through to the wizard, drawing what the detector finds on the way."""
        for rgb, events in pairs:
            if self._cancel.is_set():
                return
            ev_img = cv2.cvtColor(blink_image(events, self.event_size), cv2.COLOR_GRAY2RGB)
            self.views["seen"] += 1
            for key, img in (("rgb", rgb.copy()), ("events", ev_img)):
                d = detect(img, self.form.spec)
                if d is not None:
                    self.views[key] += 1
                    pattern = (self.form.spec.cols, self.form.spec.rows)
                    cv2.drawChessboardCorners(img, pattern, d.corners.reshape(-1, 1, 2), True)
                    hull = cv2.convexHull(d.corners.astype(np.float32)).astype(np.int32)
                    mask = np.zeros(self._coverage[key].shape, np.uint8)
                    cv2.fillConvexPoly(mask, hull, 1)
                    self._coverage[key] += mask
                self.images[key] = jpeg(img)
                self.images[f"{key}_coverage"] = jpeg(_heat(self._coverage[key]))
            self.seq += 1
            yield rgb, events

    def run(self, pairs: Iterable[Pair], on_end=None) -> None:
        f = self.form
        opts = WizardOptions(
            board=f.spec,
            rig_type=f.rig_type,
            views=f.views,
            min_views=f.min_views,
            working_distance_m=f.working_distance_m,
            out=self.out,
        )
        try:
            res = run_wizard(
                self._feedback(pairs), self.rgb_size, self.event_size, opts, _PageStatus(self)
            )
            ver = res.verification
            self.result = {
                "exit_code": res.exit_code,
                "passed": res.exit_code == 0,
                "verdict": ver.verdict() if ver is not None else "FAIL: " + "; ".join(res.advice),
                "lines": ver.lines() if ver is not None else [],
                "advice": res.advice,
                "files": {k: p.name for k, p in res.files.items()},
                "view_errors_px": [round(e, 3) for e in ver.view_errors_px] if ver else [],
            }
            if "overlay" in res.files:
                self.images["overlay"] = Path(res.files["overlay"]).read_bytes()
            self.state = "saved" if res.exit_code == 0 else "failed"
        except Exception as exc:  # shown in the page; nothing saved
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            if self._cancel.is_set() and self.state == "running":
                self.state = "cancelled"
            if on_end is not None:
                on_end()

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "lines": self.lines[-40:],
            "live": self.live_line,
            "views": dict(self.views),
            "target_views": self.form.views,
            "result": self.result,
            "error": self.error,
            "seq": self.seq,
            "images": sorted(self.images),
            "file": self.out.name,
            "updated": time.time(),
        }


def _heat(cover: np.ndarray) -> np.ndarray:
    """Coverage map: how many views covered each pixel, dark blue (none) to yellow."""
    norm = np.clip(cover / max(float(cover.max()), 1.0) * 255, 0, 255).astype(np.uint8)
    heat = cv2.applyColorMap(norm, cv2.COLORMAP_VIRIDIS)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


def sim_pairs(form: CalibForm, seed: int = 0) -> tuple[Iterable[Pair], tuple]:
    """The simulated calibration rig of `slomo-rig calibrate --rig sim`."""
    from calibration.simrig import SimCalibRig, default_truth

    rig = SimCalibRig(default_truth(form.rig_type), form.spec, seed=seed)
    tr = rig.truth
    return rig.pairs(2 * form.views + 10), (tr.rgb.size, tr.events.size)
