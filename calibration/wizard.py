"""The calibration wizard: collect views of the board from both cameras, then
1 RGB intrinsics, 2 event intrinsics, 3 stereo extrinsics, 4 event-to-RGB mapping,
5 verification, 6 save. Sources are anything that yields (RGB image, events of one
blink) pairs: the simulated rig, live cameras, or a test's own list."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from calibration.align import MappingSpec
from calibration.board import (
    BLURRY,
    BoardSpec,
    Detection,
    detect,
    guess_board_size,
    image_sharpness,
)
from calibration.errors import CalibrationError
from calibration.eventimage import blink_image
from calibration.model import Calibration
from calibration.preview import LivePreview, capture_picture, write_image
from calibration.solve import calibrate_intrinsics, calibrate_stereo
from calibration.storage import load_calibration, save_calibration, sidecars
from calibration.verify import MIN_VIEWS, Verification, annotated_overlay, verify
from rig.base import EventSource, FrameSource
from rig.types import EventBatch

Pair = tuple[np.ndarray, EventBatch]  # RGB uint8 HxWx3, events of one blink cycle
HINT_AFTER = (10, 50, 200)  # captures after which a camera that found no board gets a hint


@dataclass
class WizardOptions:
    board: BoardSpec = field(default_factory=BoardSpec)
    rig_type: str = "beam_splitter"
    views: int = 20  # stereo views to collect
    min_views: int = MIN_VIEWS
    working_distance_m: float | None = None
    out: Path = Path("calib.json")
    min_shift_px: float = 0.0  # reject views this close to an accepted one (live use)
    interactive: bool = False
    max_captures: int | None = None  # None: 2 * views + 10 (live sources: set it higher)
    rgb_name: str = "rgb"
    events_name: str = "events"
    preview: LivePreview | None = None  # live pictures of both cameras with detections
    pictures: Path | None = None  # where pictures of failures go (None: nowhere)


@dataclass
class WizardResult:
    exit_code: int
    calibration: Calibration | None = None
    verification: Verification | None = None
    files: dict[str, Path] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)


class Status:
    """One live line on a terminal (rewritten in place), plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = False

    def live(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._live = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        if self._live:
            self.stream.write("\n")
            self._live = False
        self.stream.write(text + "\n")
        self.stream.flush()


@dataclass
class Views:
    rgb: list[Detection] = field(default_factory=list)
    events: list[Detection] = field(default_factory=list)
    stereo: list[tuple[Detection, Detection]] = field(default_factory=list)
    overlay_pair: Pair | None = None
    overlay_corners: np.ndarray | None = None
    seen: int = 0
    rejected_rgb: list[np.ndarray] = field(default_factory=list)
    rejected_events: list[np.ndarray] = field(default_factory=list)


def collect(
    pairs: Iterable[Pair], event_size: tuple[int, int], opts: WizardOptions, status: Status
) -> Views:
    """Detect the board in every pair until enough stereo views are in (or the source
    ends); each camera's own detections also feed its intrinsics."""
    from calibration.verify import coverage

    v = Views()
    max_tries = opts.max_captures or 2 * opts.views + 10
    for rgb, events in pairs:
        v.seen += 1
        ev_img = blink_image(events, event_size)
        a = detect(rgb, opts.board)
        b = detect(ev_img, opts.board)
        if a is not None and _distinct(a, v.rgb, opts.min_shift_px):
            if not opts.interactive or _confirm(status, "RGB", b is not None):
                v.rgb.append(a)
                if b is not None:
                    v.events.append(b)
                    v.stereo.append((a, b))
                    if v.overlay_pair is None:
                        v.overlay_pair = (rgb, events)
                        v.overlay_corners = a.corners
        elif b is not None and a is None:
            v.events.append(b)
        if opts.preview is not None and opts.preview.enabled:
            kept = (
                f"kept as stereo view {len(v.stereo)}/{opts.views}"
                if v.stereo and v.stereo[-1][0] is a
                else "not kept" + ("" if a is not None and b is not None else " (needs both)")
            )
            opts.preview.show(
                v.seen, capture_picture(rgb, ev_img, a, b, f"capture {v.seen}: {kept}")
            )
        if a is None and len(v.rejected_rgb) < 3:
            v.rejected_rgb.append(rgb)
        if b is None and len(v.rejected_events) < 3:
            v.rejected_events.append(ev_img)
        status.live(
            f"views: seen {v.seen}, stereo {len(v.stereo)}/{opts.views}, RGB {len(v.rgb)}, "
            f"events {len(v.events)} | coverage RGB "
            f"{coverage([d.corners for d in v.rgb], (rgb.shape[1], rgb.shape[0])):.0%} "
            f"events {coverage([d.corners for d in v.events], event_size):.0%}"
        )
        if v.seen in HINT_AFTER:
            for cam, found, rejected in (
                ("RGB", v.rgb, v.rejected_rgb),
                ("event", v.events, v.rejected_events),
            ):
                if not found:  # say why while the operator can still fix it
                    status.say(f"hint: {_nothing_found(v, opts, cam, rejected)}")
        if len(v.stereo) >= opts.views or v.seen >= max_tries:
            break
    status.say(f"collected {len(v.stereo)} stereo views from {v.seen} captures")
    return v


def _distinct(d: Detection, accepted: list[Detection], min_shift: float) -> bool:
    if min_shift <= 0:
        return True
    return all(np.abs(d.corners - a.corners).mean() > min_shift for a in accepted)


def _confirm(status: Status, what: str, both: bool) -> bool:
    status.say(f"board found in {'both cameras' if both else what + ' only'}")
    return input("keep this view? [Y/n] ").strip().lower() not in ("n", "no")


def run_wizard(
    pairs: Iterable[Pair],
    rgb_size: tuple[int, int],
    event_size: tuple[int, int],
    opts: WizardOptions,
    status: Status | None = None,
) -> WizardResult:
    st = status or Status()
    try:
        return _run(pairs, rgb_size, event_size, opts, st)
    except CalibrationError as e:
        st.say(f"calibration failed: {e}")
        return WizardResult(2, advice=[str(e)])


def _run(pairs, rgb_size, event_size, opts: WizardOptions, st: Status) -> WizardResult:
    st.say(f"collecting views of a {opts.board.label} board ({opts.board.square_m * 1000:g} mm)")
    v = collect(pairs, event_size, opts, st)
    if len(v.rgb) < 3:
        raise _nothing_found(v, opts, "RGB", v.rejected_rgb)
    if len(v.events) < 3:
        raise _nothing_found(v, opts, "event", v.rejected_events)
    st.say("step 1/6: RGB intrinsics")
    rgb = calibrate_intrinsics(opts.rgb_name, rgb_size, opts.board, [d.corners for d in v.rgb])
    st.say(_cam_line(rgb.camera) + " (first estimate; step 3 refines it)")
    st.say("step 2/6: event-camera intrinsics")
    ev = calibrate_intrinsics(
        opts.events_name, event_size, opts.board, [d.corners for d in v.events]
    )
    st.say(_cam_line(ev.camera) + " (first estimate; step 3 refines it)")
    st.say("step 3/6: stereo extrinsics")
    a = [p[0].corners for p in v.stereo]
    b = [p[1].corners for p in v.stereo]
    stereo = calibrate_stereo(opts.board, rgb.camera, ev.camera, a, b)
    st.say(
        f"  baseline {np.linalg.norm(stereo.t) * 1000:.1f} mm, rotation "
        f"{np.degrees(np.linalg.norm(cv2.Rodrigues(stereo.r)[0])):.2f} deg, "
        f"rms {stereo.rms_px:.3f} px"
    )
    st.say("step 4/6: event-to-RGB mapping")
    spec = MappingSpec.for_rig(opts.rig_type, opts.working_distance_m)
    calib = Calibration(
        stereo.rgb,
        stereo.events,
        stereo.r,
        stereo.t,
        opts.rig_type,
        spec,
        opts.board,
        stereo.rms_px,
    )
    st.say(f"  {opts.rig_type}: mapping {spec.label}")
    if opts.rig_type == "side_by_side":
        table = ", ".join(f"{d:g} m: {px:.1f} px" for d, px in calib.parallax_table())
        st.say(f"  expected parallax error f*B*|1/Z-1/Z0| at depth Z: {table}")
    st.say("step 5/6: verification")
    edge = float(np.median([d.sharpness_px for d in v.rgb + v.events]))
    ver = verify(
        calib,
        [d.corners for d in v.rgb],
        [d.corners for d in v.events],
        (a, b),
        edge,
        opts.min_views,
    )
    for line in ver.lines():
        st.say("  " + line)
    overlay = None
    if v.overlay_pair is not None:
        overlay = annotated_overlay(
            calib,
            *v.overlay_pair,
            ver,
            [d.corners for d in v.rgb],
            [d.corners for d in v.events],
            v.overlay_corners,
        )
    if not ver.passed:
        files = {}
        if overlay is not None and opts.pictures is not None:
            opts.pictures.mkdir(parents=True, exist_ok=True)
            files["overlay"] = opts.pictures / "overlay-FAILED.png"
            write_image(files["overlay"], overlay)
            st.say(f"  overlay of the failed calibration: {files['overlay']}")
        st.say("calibration NOT saved; fix the problems above and run again")
        return WizardResult(2, calib, ver, files, advice=ver.problems)
    st.say("step 6/6: save")
    files = save_calibration(calib, opts.out)
    if overlay is not None:
        files["overlay"] = sidecars(opts.out)["overlay"]
        write_image(files["overlay"], overlay)
    saved = load_calibration(opts.out)  # what the pipeline will use: report these values
    return WizardResult(0, saved, ver, files)


def _cam_line(cam) -> str:
    (fx, fy), (cx, cy) = cam.focal, cam.principal_point
    return f"  f=({fx:.2f}, {fy:.2f}) c=({cx:.2f}, {cy:.2f}) rms {cam.rms_px:.3f} px"


def _nothing_found(
    v: Views, opts: WizardOptions, cam: str, rejected: list[np.ndarray]
) -> CalibrationError:
    """(Almost) no board in one camera's images: say whether the size is wrong, the image blurred, or the
    board simply not in view."""
    n = len(v.rgb) if cam == "RGB" else len(v.events)
    where = f"{cam} camera, board found in {n} of {v.seen} captures"
    if rejected and opts.pictures is not None:
        opts.pictures.mkdir(parents=True, exist_ok=True)
        picture = opts.pictures / f"board-not-found-{cam.lower()}.png"
        write_image(
            picture, _rejected_picture(rejected, f"{cam} camera: no {opts.board.label} board")
        )
        where += f"; what it saw: {picture}"
    if v.seen == 0:
        return CalibrationError(
            "The cameras delivered no images", where, "check the rig is running."
        )
    guess = guess_board_size(rejected, opts.board)
    if guess is not None:
        return CalibrationError(
            f"No {opts.board.label} board found, but a {guess.label} board is visible: wrong "
            "board size",
            where,
            f"use --board {guess.label} (count INNER corners: a board of 10x7 squares is 9x6).",
        )
    sharp = [image_sharpness(im) for im in rejected]
    if sharp and max(sharp) < BLURRY:
        return CalibrationError(
            "No board found and the images are blurred (too much blur)",
            where,
            "refocus the lens on the board, hold it still, or shorten the exposure.",
        )
    return CalibrationError(
        f"No {opts.board.label} board found in any image",
        where,
        f"check --board {opts.board.label} counts inner corners, that the whole board is in "
        "view and well lit, and (events) that it blinks.",
    )


def _rejected_picture(images: list[np.ndarray], caption: str) -> np.ndarray:
    """The images in which the board was not found, side by side, captioned."""
    from calibration.preview import PANEL_HEIGHT

    panels = []
    for im in images[:3]:
        rgb = im if im.ndim == 3 else cv2.cvtColor(im, cv2.COLOR_GRAY2RGB)
        scale = PANEL_HEIGHT / rgb.shape[0]
        panels.append(cv2.resize(rgb, (max(1, int(rgb.shape[1] * scale)), PANEL_HEIGHT)))
    row = np.hstack(panels)
    bar = np.full((28, row.shape[1], 3), 30, np.uint8)
    cv2.putText(bar, caption, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 120, 120), 1)
    return np.vstack([row, bar])


def live_pairs(
    frames: FrameSource,
    events: EventSource,
    blink_period_us: int = 200_000,
    tick=None,
) -> Iterator[Pair]:
    """Pair each RGB frame with the events of the last blink period. The board is held
    still while it blinks, so frame-to-event sync only needs to be within a period."""
    buf: deque[EventBatch] = deque()
    while True:
        if tick is not None:
            tick()
        sl = events.read(0.01)
        if sl is not None and len(sl.events):
            buf.append(sl.events)
            t_end = int(sl.events.t[-1])
            while buf and int(buf[0].t[-1]) < t_end - blink_period_us:
                buf.popleft()
        frame = frames.read(0.01)
        if frame is None or not buf:
            continue
        batch = EventBatch.concat(list(buf))
        batch = batch.time_slice(int(batch.t[-1]) - blink_period_us, int(batch.t[-1]) + 1)
        yield frame.image, batch
