"""The console's web server (Starlette on uvicorn): one page, a JSON API, previews.

Every request handler is quick: waiting for a preview frame and JPEG encoding run in
worker threads, recordings, replays and the monitor in child processes, the
calibration wizard in a thread, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.console.calib import CalibForm, CalibrationJob, sim_pairs
from pipeline.console.hub import PreviewHub, lower_thread_priority
from pipeline.console.rig import (
    CONSOLE_MODELS,
    CameraSettings,
    FormError,
    RigController,
    RigSpec,
    parse_biases,
)
from pipeline.console.security import Access, AccessMiddleware
from pipeline.console.sessions import (
    PathRefused,
    ReplayJobs,
    list_sessions,
    session_details,
    session_dir,
    session_file,
)

STATIC = Path(__file__).parent / "static"
PREVIEWS = ("rgb", "events", "overlay", "interpolated", "live")  # live: the first three in one
CALIB_DIR = "calibration"
STALE_S = 3.0  # no preview data for this long: the camera is shown as silent


@dataclass
class ConsoleConfig:
    sessions: Path
    spec: RigSpec
    access: Access
    monitor: bool = True  # previews while idle (off in tests that need none)


def _form_number(data: dict[str, Any], key: str, kind: type, label: str, default=None):
    value = data.get(key, default)
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise FormError(f"{label}: {value!r} is not {what}") from None


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise FormError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise FormError("the request is not a JSON object")
    return data


class Console:
    def __init__(self, cfg: ConsoleConfig) -> None:
        self.cfg = cfg
        cfg.sessions.mkdir(parents=True, exist_ok=True)
        self.hub = PreviewHub()
        # Rendering previews (event images, JPEG) in threads of lower priority: on a
        # busy machine the recording's processes get the CPU first.
        self.render_pool = ThreadPoolExecutor(
            2, thread_name_prefix="preview-render", initializer=lower_thread_priority
        )
        self.rig = RigController(cfg.spec, cfg.sessions, self.hub.endpoint, self.hub.reset)
        self.replays = ReplayJobs(cfg.sessions)
        self.calibration: CalibrationJob | None = None
        self.index_html = (STATIC / "index.html").read_text(encoding="utf-8")

    def start(self) -> None:
        if self.cfg.monitor:
            self.rig.start()

    def close(self) -> None:
        self.rig.close()
        self.replays.close()
        if self.calibration is not None:
            self.calibration.cancel()
        self.hub.close()
        self.render_pool.shutdown(wait=False, cancel_futures=True)

    # -- pages -------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        html = self.index_html.replace("{{TOKEN}}", self.cfg.access.token)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    # -- live --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        h = dict(self.hub.health)
        rates = dict(self.hub.stats.rates)
        age = time.time() - self.hub.last_message_wall if self.hub.last_message_wall else None
        try:
            disk = shutil.disk_usage(self.cfg.sessions).free
        except OSError:
            disk = None
        return {
            "counters": h,
            "event_rate": rates.get("events"),
            "frame_rate": rates.get("frames"),
            "skip_rate": rates.get("intervals_skipped"),
            "data_age_s": round(age, 2) if age is not None else None,
            "stale": age is None or age > STALE_S,
            "disk_free_bytes": disk,
            "bad_preview_messages": self.hub.stats.bad_messages,
        }

    async def state(self, request: Request) -> Response:
        rig = self.rig
        supported = rig.spec.supported_settings()
        return JSONResponse(
            {
                "record": rig.state,
                "camera": rig.camera,
                "health": self.health(),
                "settings": {
                    "current": rig.spec.settings.__dict__,
                    "supported": supported,
                    # read from the rig file only where the event camera takes biases
                    "configured_biases": (
                        rig.spec.configured_biases() if "event_biases" in supported else None
                    ),
                },
                "rig": "sim" if rig.spec.config is None else str(rig.spec.config),
                "calibration": str(rig.spec.calibration) if rig.spec.calibration else None,
                "models": list(CONSOLE_MODELS),
                "replays": list(self.replays.jobs.values()),
                "time": time.time(),
            }
        )

    async def preview(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in PREVIEWS:
            return JSONResponse({"error": f"no preview named {name!r}"}, status_code=404)
        try:
            after = int(request.query_params.get("after", "-1"))
            window = float(request.query_params.get("window", "30"))
        except ValueError:
            return JSONResponse({"error": "after and window must be numbers"}, status_code=400)
        window = min(max(window, 1.0), 2000.0)
        await run_in_threadpool(self.hub.wait_newer, name, after, 5.0)

        def render():
            size = self.hub.event_size or (346, 260)
            if name == "live":
                return self.hub.live_jpeg(window, size)
            if name in ("events", "overlay"):
                return self.hub.events_jpeg(name, window, size)
            return self.hub.frame_jpeg(name)

        got = await asyncio.get_running_loop().run_in_executor(self.render_pool, render)
        if got is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        seq, wall, data = got[:3]
        headers = {"Cache-Control": "no-store", "X-Seq": str(seq), "X-Wall": f"{wall:.4f}"}
        if name == "live":
            headers["X-Layout"] = json.dumps(got[3], separators=(",", ":"))
        return Response(data, media_type="image/jpeg", headers=headers)

    # -- record ------------------------------------------------------------------------
    async def record_start(self, request: Request) -> Response:
        data = await _json_body(request)
        factor = _form_number(data, "factor", int, "factor", 8)
        name = await run_in_threadpool(
            self.rig.start_recording,
            str(data.get("name", "")),
            str(data.get("notes", "")),
            str(data.get("model", "")),
            factor,
        )
        return JSONResponse({"ok": True, "session": name})

    async def record_stop(self, request: Request) -> Response:
        self.rig.stop_recording()
        return JSONResponse({"ok": True})

    async def camera_settings(self, request: Request) -> Response:
        data = await _json_body(request)
        supported = self.rig.spec.supported_settings()
        values = {}
        for key, label in (
            ("exposure_us", "exposure"),
            ("frame_rate", "frame rate"),
            ("gain_db", "gain"),
            ("contrast_threshold", "event contrast threshold"),
        ):
            v = _form_number(data, key, float, label)
            if v is not None and key not in supported:
                raise FormError(f"{label} cannot be set on this rig's camera")
            values[key] = v
        text = data.get("event_biases")
        if text is not None and str(text).strip():
            if "event_biases" not in supported:
                raise FormError(
                    "event biases cannot be set on this rig's event camera (iniVation and "
                    "Prophesee cameras take them; the simulated one has a contrast threshold)"
                )
            values["event_biases"] = parse_biases(str(text))
        settings = CameraSettings(**values)
        await run_in_threadpool(self.rig.apply_settings, settings)
        return JSONResponse({"ok": True})

    async def camera_reconnect(self, request: Request) -> Response:
        await run_in_threadpool(self.rig.stop_monitor)
        self.rig.start_monitor()
        return JSONResponse({"ok": True})

    # -- sessions ----------------------------------------------------------------------
    async def sessions(self, request: Request) -> Response:
        rows = await run_in_threadpool(list_sessions, self.cfg.sessions)
        return JSONResponse({"sessions": rows})

    async def session(self, request: Request) -> Response:
        name = request.path_params["name"]
        details = await run_in_threadpool(session_details, self.cfg.sessions, name)
        details["replays"] = [j for j in self.replays.jobs.values() if j["session"] == name]
        return JSONResponse(details)

    async def session_file(self, request: Request) -> Response:
        p = request.path_params
        path = session_file(self.cfg.sessions, p["name"], p["path"])
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def replay_start(self, request: Request) -> Response:
        name = request.path_params["name"]
        session_dir(self.cfg.sessions, name)
        data = await _json_body(request)
        job = self.replays.start(
            name,
            str(data.get("model", "")),
            _form_number(data, "factor", int, "factor"),
            _form_number(data, "fps", float, "fps"),
            str(data.get("format", "mp4")),
        )
        return JSONResponse(job)

    # -- calibration -------------------------------------------------------------------
    async def calib_start(self, request: Request) -> Response:
        data = await _json_body(request)
        if self.calibration is not None and self.calibration.state == "running":
            raise FormError("the calibration wizard is already running")
        form = CalibForm(
            name=str(data.get("name", "calib")),
            rig_type=str(data.get("rig_type", "beam_splitter")),
            board=str(data.get("board", "9x6")),
            square_mm=_form_number(data, "square_mm", float, "square size", 25.0),
            views=_form_number(data, "views", int, "views", 20),
            min_views=_form_number(data, "min_views", int, "minimum views", 8),
            working_distance_m=_form_number(data, "working_distance_m", float, "distance"),
            blink_ms=_form_number(data, "blink_ms", float, "blink period", 200.0),
        )
        out_dir = self.cfg.sessions / CALIB_DIR
        out_dir.mkdir(exist_ok=True)
        out = out_dir / f"{form.name}.json"
        if self.rig.spec.config is None:
            pairs, sizes = sim_pairs(form, self.rig.spec.seed)
            job = CalibrationJob(form, out, sizes)
            threading.Thread(target=job.run, args=(pairs,), daemon=True).start()
        else:
            job = self._live_calibration(form, out)
        self.calibration = job
        return JSONResponse(job.snapshot())

    def _live_calibration(self, form: CalibForm, out: Path) -> CalibrationJob:
        """A real rig: the wizard takes the cameras from the monitor until it ends."""
        from calibration.wizard import live_pairs
        from pipeline.console.rig import open_rig

        if self.rig.state["state"] in ("starting", "recording", "stopping"):
            raise FormError("stop the recording before calibrating")
        self.rig.busy_reason = "the calibration wizard is running"
        self.rig.stop_monitor()
        events, frames, _, _, _ = open_rig(self.rig.spec)
        job = CalibrationJob(form, out, (frames.resolution, events.resolution))

        def run() -> None:
            try:
                with frames, events:
                    pairs = live_pairs(frames, events, int(form.blink_ms * 1000))
                    job.run(pairs)
            except Exception as exc:
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
            finally:
                self.rig.busy_reason = None
                self.rig.start_monitor()

        threading.Thread(target=run, daemon=True).start()
        return job

    async def calib_state(self, request: Request) -> Response:
        job = self.calibration
        return JSONResponse(job.snapshot() if job else {"state": "none"})

    async def calib_cancel(self, request: Request) -> Response:
        if self.calibration is None:
            raise FormError("the calibration wizard is not running")
        self.calibration.cancel()
        return JSONResponse({"ok": True})

    async def calib_image(self, request: Request) -> Response:
        job = self.calibration
        key = request.path_params["key"]
        data = job.images.get(key) if job else None
        if data is None:
            return Response(status_code=204)
        media = "image/png" if key == "overlay" else "image/jpeg"
        return Response(data, media_type=media, headers={"Cache-Control": "no-store"})

    async def calib_file(self, request: Request) -> Response:
        job = self.calibration
        name = request.path_params["name"]
        files = set((job.result or {}).get("files", {}).values()) if job else set()
        if name not in files:
            raise PathRefused(f"{name!r} is not a file the wizard saved")
        return FileResponse(self.cfg.sessions / CALIB_DIR / name)


async def _form_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _refused(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"refused: {exc}"}, status_code=404)


def build_app(console: Console) -> Starlette:
    c = console
    routes = [
        Route("/", c.index),
        Route("/api/state", c.state),
        Route("/api/preview/{name}.jpg", c.preview),
        Route("/api/record/start", c.record_start, methods=["POST"]),
        Route("/api/record/stop", c.record_stop, methods=["POST"]),
        Route("/api/camera/settings", c.camera_settings, methods=["POST"]),
        Route("/api/camera/reconnect", c.camera_reconnect, methods=["POST"]),
        Route("/api/sessions", c.sessions),
        Route("/api/sessions/{name}", c.session),
        Route("/api/sessions/{name}/files/{path:path}", c.session_file),
        Route("/api/sessions/{name}/replay", c.replay_start, methods=["POST"]),
        Route("/api/calibration", c.calib_state),
        Route("/api/calibration/start", c.calib_start, methods=["POST"]),
        Route("/api/calibration/cancel", c.calib_cancel, methods=["POST"]),
        Route("/api/calibration/image/{key}", c.calib_image),
        Route("/api/calibration/files/{name}", c.calib_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        c.start()
        try:
            yield
        finally:
            await run_in_threadpool(c.close)

    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessMiddleware, access=c.cfg.access)],
        exception_handlers={FormError: _form_error, PathRefused: _refused},
        lifespan=lifespan,
        max_body_size=1 << 20,
    )
