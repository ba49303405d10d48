"""Calibration files: DV's CalibrationSet JSON (the primary file; DV tools read it), an
OpenCV FileStorage YAML next to it (for OpenCV users and as a readable record), and
the event-to-RGB lookup table (.npz) the pipeline loads instead of recomputing it.

The JSON carries what DV has fields for; rig type and mapping go into the stereo
entry's comment as key=value words, so the JSON alone is enough to reload.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from calibration.align import MappingSpec
from calibration.board import BoardSpec
from calibration.camera import CameraModel
from calibration.errors import CalibrationError
from calibration.mapping import LUT_FORMAT, EventToFrameMap
from calibration.model import RIG_TYPES, Calibration

_REDO = "re-run `slomo-rig calibrate` to write a new calibration."


def sidecars(path: str | Path) -> dict[str, Path]:
    p = Path(path)
    return {
        "yaml": p.with_suffix(".yaml"),
        "lut": p.with_suffix(".lut.npz"),
        "overlay": p.with_suffix(".overlay.png"),
    }


# ---- save -----------------------------------------------------------------------
def save_calibration(calib: Calibration, path: str | Path) -> dict[str, Path]:
    """Write JSON + YAML + LUT; returns the paths written. The LUT is computed from the
    JSON as read back, so table and file agree to the file's precision."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise CalibrationError(
            "The calibration file must end in .json (DV's format)",
            str(path),
            "use --out calib.json",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_dv_json(calib, path)
    written = {"json": path}
    back = _load_dv_json(path)
    back.mapping = calib.mapping
    side = sidecars(path)
    _write_yaml(back, calib, side["yaml"])
    written["yaml"] = side["yaml"]
    lut = back.event_to_frame_map()
    lx, ly = lut.luts()
    with open(side["lut"], "wb") as f:
        np.savez(
            f,
            format=np.array(LUT_FORMAT),
            lut_x=lx,
            lut_y=ly,
            frame_size=np.array(lut.frame_size, np.int64),
            digest=np.array(back.digest()),
        )
    written["lut"] = side["lut"]
    calib.path = path
    calib.lut = lut
    return written


def _write_dv_json(calib: Calibration, path: Path) -> None:
    import dv_processing as dv

    cal = dv.camera.calibrations
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    b = calib.board

    def meta(cam: CameraModel) -> object:
        if b is None:
            return None
        return cal.CameraCalibration.Metadata(
            (b.cols + 1, b.rows + 1),
            (b.cols, b.rows),
            "chessboard",
            float(b.square_m),
            0.0,
            float(cam.rms_px) if np.isfinite(cam.rms_px) else None,
            now,
            "",
            "slomo-rig calibrate",
            None,
        )

    def entry(cam: CameraModel, position: str, master: bool, to_c0: np.ndarray):
        return cal.CameraCalibration(
            cam.name,
            position,
            master,
            tuple(int(v) for v in cam.size),
            cam.principal_point,
            cam.focal,
            [float(v) for v in cam.dist[:5]],
            dv.camera.DistortionModel.RADIAL_TANGENTIAL,
            dv.kinematics.Transformationf(0, to_c0.astype(np.float32)),
            meta(cam),
        )

    to_c0 = np.eye(4)
    to_c0[:3, :3] = calib.r.T  # X_rgb = R^T (X_event - T): inverse of OpenCV's R, T
    to_c0[:3, 3] = -calib.r.T @ calib.t
    cset = dv.camera.CalibrationSet()
    cset.addCameraCalibration(entry(calib.rgb, "left", True, np.eye(4)))
    cset.addCameraCalibration(entry(calib.events, "right", False, to_c0))
    e, f = _essential_fundamental(calib)
    comment = (
        f"slomo-rig rig_type={calib.rig_type} mapping={calib.mapping.method} "
        f"depth_m={calib.mapping.depth_m or 0:g} rgb={calib.rgb.name} events={calib.events.name}"
    )
    rms = float(calib.stereo_rms_px) if np.isfinite(calib.stereo_rms_px) else None
    cset.addStereoCalibration(
        cal.StereoCalibration(
            calib.rgb.name,
            calib.events.name,
            [float(v) for v in f.ravel()],
            [float(v) for v in e.ravel()],
            cal.StereoCalibration.Metadata(rms, comment),
        )
    )
    tmp = path.with_name(path.stem + ".partial.json")
    cset.writeToFile(str(tmp))
    tmp.replace(path)


def _essential_fundamental(calib: Calibration) -> tuple[np.ndarray, np.ndarray]:
    t = calib.t.ravel()
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    e = tx @ calib.r
    f = np.linalg.inv(calib.events.k).T @ e @ np.linalg.inv(calib.rgb.k)
    return e, f


def _write_yaml(calib: Calibration, orig: Calibration, path: Path) -> None:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        fs.write("format", "slomo-rig/calibration/1")
        fs.write("rig_type", calib.rig_type)
        fs.write("mapping_method", calib.mapping.method)
        fs.write("mapping_depth_m", float(calib.mapping.depth_m or 0.0))
        for tag, cam in (("rgb", calib.rgb), ("event", calib.events)):
            fs.write(f"{tag}_name", cam.name)
            fs.write(f"{tag}_width", int(cam.size[0]))
            fs.write(f"{tag}_height", int(cam.size[1]))
            fs.write(f"{tag}_camera_matrix", cam.k)
            fs.write(f"{tag}_distortion", cam.dist.reshape(1, -1))
        fs.write("rgb_rms_px", float(orig.rgb.rms_px))
        fs.write("event_rms_px", float(orig.events.rms_px))
        fs.write("stereo_rms_px", float(orig.stereo_rms_px))
        fs.write("R_rgb_to_event", calib.r)
        fs.write("T_rgb_to_event_m", calib.t.reshape(3, 1))
        fs.write("H_event_to_rgb_undistorted", calib.homography())
        if calib.board is not None:
            fs.write("board", calib.board.label)
            fs.write("square_m", float(calib.board.square_m))
    finally:
        fs.release()


# ---- load -----------------------------------------------------------------------
def load_calibration(path: str | Path) -> Calibration:
    """Load a calibration (.json from `slomo-rig calibrate` or DV, or our .yaml) and its
    lookup table. Raises CalibrationError saying what is wrong, in which file, and what
    to do, for a missing, corrupt or inconsistent file."""
    path = Path(path)
    if not path.exists():
        raise CalibrationError(
            "Calibration file not found", str(path), "check the path, or " + _REDO
        )
    suffix = path.suffix.lower()
    if suffix == ".json":
        calib = _load_dv_json(path)
    elif suffix in (".yaml", ".yml"):
        calib = _load_yaml(path)
    else:
        raise CalibrationError(
            f"Unknown calibration file type '{suffix}'", str(path), "give the .json file."
        )
    _check(calib, path)
    lut_path = sidecars(path)["lut"]
    if suffix == ".json" and lut_path.exists():
        calib.lut = _load_lut(lut_path, calib)
    calib.path = path
    return calib


def _load_dv_json(path: Path) -> Calibration:
    import dv_processing as dv

    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"Calibration file unreadable ({e})", str(path), _REDO) from None
    except json.JSONDecodeError as e:
        raise CalibrationError(
            f"Calibration file is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg});"
            " it may be truncated or edited by hand",
            str(path),
            _REDO,
        ) from None
    if not isinstance(raw, dict) or "cameras" not in raw:
        raise CalibrationError(
            "JSON file is not a DV calibration (no 'cameras' section)", str(path), _REDO
        )
    try:
        cset = dv.camera.CalibrationSet.LoadFromFile(str(path))
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CalibrationError(
            f"DV could not read the calibration ({first})", str(path), _REDO
        ) from None
    cams = {c: cset.getCameraCalibration(c) for c in cset.getCameraList()}
    comment = ""
    for s in cset.getStereoList():
        md = cset.getStereoCalibration(s).metadata
        if md is not None and "slomo-rig" in md.comment:
            comment = md.comment
    info = dict(re.findall(r"(\w+)=(\S+)", comment))
    if len(cams) != 2:
        raise CalibrationError(
            f"Calibration has {len(cams)} camera(s); the frame + event rig needs exactly 2",
            str(path),
            "calibrate both cameras together with `slomo-rig calibrate`.",
        )
    by_name = {c.name: c for c in cams.values()}
    ev_name = info.get("events")
    if ev_name in by_name:
        ev = by_name[ev_name]
        rgb = next(c for c in cams.values() if c.name != ev_name)
    else:  # a DV file without our note: C0 / master is the RGB camera
        rgb = next((c for c in cams.values() if c.master), cams[sorted(cams)[0]])
        ev = next(c for c in cams.values() if c is not rgb)
    rgb_m, ev_m = _camera(rgb), _camera(ev)
    to_c0_ev = np.asarray(ev.transformationToC0.getTransform(), np.float64)
    to_c0_rgb = np.asarray(rgb.transformationToC0.getTransform(), np.float64)
    ev_to_rgb = np.linalg.inv(to_c0_rgb) @ to_c0_ev  # X_rgb = M X_event
    rgb_to_ev = np.linalg.inv(ev_to_rgb)
    rig_type = info.get("rig_type") or (
        "beam_splitter" if np.linalg.norm(rgb_to_ev[:3, 3]) < 1e-3 else "side_by_side"
    )
    try:
        depth = float(info.get("depth_m", "0"))
        method = info.get("mapping") or ("infinite" if rig_type == "beam_splitter" else "plane")
        spec = MappingSpec(method, depth if method == "plane" else None)
        if rig_type not in RIG_TYPES:
            raise ValueError(f"unknown rig_type {rig_type!r}")
    except ValueError as e:
        raise CalibrationError(f"Bad slomo-rig note in the file: {e}", str(path), _REDO) from None
    md = rgb.metadata
    board = None
    if md is not None and md.internalPatternShape[0] > 0 and md.patternSize > 0:
        shape = md.internalPatternShape
        board = BoardSpec(int(shape[0]), int(shape[1]), float(md.patternSize))
    st = cset.getStereoList()
    rms = float("nan")
    if st:
        smd = cset.getStereoCalibration(st[0]).metadata
        if smd is not None and smd.epipolarError is not None:
            rms = float(smd.epipolarError)
    return Calibration(
        rgb_m,
        ev_m,
        rgb_to_ev[:3, :3].copy(),
        rgb_to_ev[:3, 3].copy(),
        rig_type,
        spec,
        board,
        rms,
        path,
    )


def _camera(c) -> CameraModel:
    fx, fy = c.focalLength
    cx, cy = c.principalPoint
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    dist = np.zeros(5)
    d = list(c.distortion)[:5]
    dist[: len(d)] = d
    md = c.metadata
    rms = float(md.calibrationError) if md is not None and md.calibrationError else float("nan")
    return CameraModel(c.name, (int(c.resolution[0]), int(c.resolution[1])), k, dist, rms)


def _load_yaml(path: Path) -> Calibration:
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error as e:
        raise CalibrationError(f"Not a readable OpenCV YAML ({e.err})", str(path), _REDO) from None
    try:
        if not fs.isOpened() or fs.getNode("format").string() != "slomo-rig/calibration/1":
            raise CalibrationError("Not a slomo-rig calibration YAML", str(path), _REDO)

        def cam(tag: str) -> CameraModel:
            size = (int(fs.getNode(f"{tag}_width").real()), int(fs.getNode(f"{tag}_height").real()))
            return CameraModel(
                fs.getNode(f"{tag}_name").string(),
                size,
                fs.getNode(f"{tag}_camera_matrix").mat(),
                fs.getNode(f"{tag}_distortion").mat().ravel(),
            )

        method = fs.getNode("mapping_method").string()
        depth = fs.getNode("mapping_depth_m").real()
        return Calibration(
            cam("rgb"),
            cam("event"),
            fs.getNode("R_rgb_to_event").mat(),
            fs.getNode("T_rgb_to_event_m").mat().ravel(),
            fs.getNode("rig_type").string(),
            MappingSpec(method, depth if method == "plane" else None),
            stereo_rms_px=fs.getNode("stereo_rms_px").real(),
        )
    except (AttributeError, ValueError, TypeError, cv2.error) as e:
        raise CalibrationError(f"Calibration YAML is incomplete ({e})", str(path), _REDO) from None
    finally:
        fs.release()


def _check(c: Calibration, path: Path) -> None:
    """Values no real rig can have mean a damaged or hand-edited file."""
    problems = []
    for cam in (c.rgb, c.events):
        w, h = cam.size
        fx, fy = cam.focal
        cx, cy = cam.principal_point
        if w <= 0 or h <= 0:
            problems.append(f"{cam.name}: resolution {w}x{h}")
        if not (np.all(np.isfinite(cam.k)) and np.all(np.isfinite(cam.dist))):
            problems.append(f"{cam.name}: non-finite intrinsics")
        elif not (fx > 0 and fy > 0 and 0.2 < fx / fy < 5):
            problems.append(f"{cam.name}: focal length ({fx:g}, {fy:g})")
        elif not (0 <= cx < w and 0 <= cy < h):
            problems.append(f"{cam.name}: principal point ({cx:g}, {cy:g}) outside {w}x{h}")
    if c.rgb.name == c.events.name:
        problems.append(f"both cameras are named '{c.rgb.name}'")
    if not np.all(np.isfinite(c.r)) or np.abs(c.r @ c.r.T - np.eye(3)).max() > 1e-3:
        problems.append("the rotation between the cameras is not a rotation")
    if not np.all(np.isfinite(c.t)) or np.linalg.norm(c.t) > 1.0:
        problems.append(f"baseline {np.linalg.norm(c.t):.3g} m (more than 1 m)")
    if c.rig_type == "beam_splitter" and np.linalg.norm(c.t) > 0.01:
        problems.append(f"rig_type beam_splitter but baseline {np.linalg.norm(c.t) * 100:.1f} cm")
    if problems:
        raise CalibrationError(
            "Calibration is inconsistent: " + "; ".join(problems), str(path), _REDO
        )


def _load_lut(lut_path: Path, calib: Calibration) -> EventToFrameMap:
    lut = EventToFrameMap.load(lut_path)
    todo = f"delete {lut_path.name} (it is recomputed from the JSON) or " + _REDO
    try:
        with np.load(lut_path, allow_pickle=False) as z:
            digest = str(z["digest"]) if "digest" in z.files else ""
    except Exception:
        digest = ""
    if lut.event_size != calib.events.size or lut.frame_size != calib.rgb.size:
        raise CalibrationError(
            f"Lookup table is for a {lut.event_size} event / {lut.frame_size} RGB rig but the "
            f"calibration is {calib.events.size} / {calib.rgb.size}",
            str(lut_path),
            todo,
        )
    if digest and digest != calib.digest():
        raise CalibrationError(
            "Lookup table was made for a different calibration than the JSON next to it",
            str(lut_path),
            todo,
        )
    return lut
