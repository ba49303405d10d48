"""The sessions folder as the console shows it, and replays started from the page.

Every name from the browser goes through `session_dir` / `session_file`, which refuse
anything that would leave the sessions folder (.., absolute paths, links out).
Replays are `pipeline.replay.run_replay`, the code behind `slomo-rig replay`, in a
child process each, reporting progress through a pipe.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.console.rig import CONSOLE_MODELS, NAME_RE, FormError

REPLAYS_DIR = "replays"
FORMATS = ("mp4", "mkv", "png")


class PathRefused(ValueError):
    """A name from the browser that would leave the sessions folder."""


def session_dir(root: Path, name: str) -> Path:
    if not NAME_RE.match(name or ""):
        raise PathRefused(f"{name!r} is not a session name")
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base or not (path / "session.json").is_file():
        raise PathRefused(f"no session named {name!r} in the sessions folder")
    return path


def session_file(root: Path, name: str, rel: str) -> Path:
    base = session_dir(root, name)
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or any(p in ("..", "") for p in parts):
        raise PathRefused(f"{rel!r} is not a file of session {name!r}")
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise PathRefused(f"{rel!r} is not a file of session {name!r}")
    return path


def _span_s(cap: dict[str, Any]) -> float | None:
    a, b = cap.get("first_event_us"), cap.get("last_event_us")
    return round((b - a) / 1e6, 2) if isinstance(a, int) and isinstance(b, int) else None


def summarize(info: dict[str, Any], name: str) -> dict[str, Any]:
    cap, out, live = info.get("capture", {}), info.get("output", {}), info.get("live", {})
    return {
        "name": name,
        "created": info.get("created"),
        "status": info.get("status"),
        "error": info.get("error"),
        "seconds": _span_s(cap),
        "events": cap.get("events"),
        "frames": cap.get("frames"),
        "output_frames": out.get("frames_written"),
        "drops": (cap.get("camera_skipped_frames") or 0) + (cap.get("live_events_dropped") or 0),
        "skipped": out.get("intervals_skipped"),
        "model": live.get("model") or ", ".join(out.get("models", [])) or None,
        "factor": live.get("factor"),
        "notes": info.get("operator_notes"),
    }


def list_sessions(root: Path) -> list[dict[str, Any]]:
    from pipeline.info import describe

    rows = []
    if not root.is_dir():
        return rows
    for path in sorted(root.iterdir(), key=lambda p: p.name, reverse=True):
        if not (path / "session.json").is_file() or not NAME_RE.match(path.name):
            continue
        try:
            info = describe(path)
        except Exception as exc:  # a damaged session is listed, not hidden
            rows.append({"name": path.name, "status": "unreadable", "error": str(exc)})
            continue
        rows.append(summarize(info, path.name))
    return rows


def session_details(root: Path, name: str) -> dict[str, Any]:
    from pipeline.info import describe, format_text

    path = session_dir(root, name)
    info = describe(path)
    files = []
    for f in sorted(path.rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            rel = f.relative_to(path).as_posix()
            if "/frames/" in f"/{rel}" or "/parts/" in f"/{rel}":
                continue  # PNG sequences and video parts: too many to list
            files.append({"path": rel, "bytes": f.stat().st_size})
    return {
        **summarize(info, name),
        "info_text": format_text(info),
        "files": files,
        "video": "slowmo.mp4" if (path / "slowmo.mp4").is_file() else None,
    }


def _replay_main(session: str, out: str, opts: dict[str, Any], conn: Any) -> None:
    """Child process: `slomo-rig replay SESSION --out OUT ...` with progress to a pipe."""
    from pipeline import replay
    from pipeline.inputs import open_input

    def report(p: dict[str, Any]) -> None:
        conn.send(("progress", {k: p.get(k) for k in ("done", "total", "frames", "eta_s")}))

    try:
        ropts = replay.ReplayOptions(out=Path(out), progress=False, on_progress=report, **opts)
        with open_input(Path(session)) as source:
            summary = replay.run_replay(source, ropts)
        conn.send(("done", {"status": summary.get("status"), "video": ropts.video_path.name}))
    except KeyboardInterrupt:  # Ctrl-C in the console's terminal: resumable later
        conn.send(("failed", "interrupted; start it again to resume"))
    except BaseException as exc:  # noqa: BLE001 - shown in the page
        conn.send(("failed", str(exc) or type(exc).__name__))


class ReplayJobs:
    """Replays started from the page, each in its own process; state polled by the page."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self._procs: dict[str, tuple[Any, Any]] = {}
        self._n = 0
        threading.Thread(target=self._watch, daemon=True).start()

    def start(
        self, name: str, model: str, factor: int | None, fps: float | None, fmt: str
    ) -> dict[str, Any]:
        path = session_dir(self.root, name)
        if model not in CONSOLE_MODELS:
            raise FormError(f"model {model!r}: choose one of {', '.join(CONSOLE_MODELS)}")
        if fmt not in FORMATS:
            raise FormError(f"format {fmt!r}: choose mp4, mkv or png")
        if (factor is None) == (fps is None):
            raise FormError("give either a slow-motion factor or an output fps, not both")
        if factor is not None and not 2 <= factor <= 64:
            raise FormError(f"factor {factor}: give 2 to 64")
        if fps is not None and not 1 <= fps <= 100_000:
            raise FormError(f"fps {fps}: give 1 to 100000 frames per second of capture time")
        rate = f"x{factor}" if factor is not None else f"{fps:g}fps"
        rel = f"{REPLAYS_DIR}/{model}-{rate}-{fmt}"
        with self._lock:
            for job in self.jobs.values():
                if job["session"] == name and job["out"] == rel and job["state"] == "running":
                    raise FormError(f"this replay is already running ({job['id']})")
            self._n += 1
            job_id = f"r{self._n}"
        opts = {"model": model, "factor": factor, "fps": fps, "format": fmt}
        parent, child = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(
            target=_replay_main, args=(str(path), str(path / rel), opts, child), daemon=True
        )
        p.start()
        child.close()
        job = {
            "id": job_id,
            "session": name,
            "out": rel,
            "state": "running",
            "progress": None,
            "started": time.time(),
            "error": None,
            "video": None,
            **opts,
        }
        with self._lock:
            self.jobs[job_id] = job
            self._procs[job_id] = (p, parent)
        return dict(job)

    def _watch(self) -> None:
        while True:
            with self._lock:
                procs = list(self._procs.items())
            for job_id, (p, conn) in procs:
                job = self.jobs[job_id]
                while conn.poll():
                    try:
                        what, arg = conn.recv()
                    except EOFError:
                        break
                    if what == "progress":
                        job["progress"] = arg
                    elif what == "done":
                        job["state"] = "complete" if arg["status"] == "complete" else arg["status"]
                        p_ = job["progress"] or {}
                        if job["state"] == "complete" and p_.get("total"):
                            job["progress"] = {**p_, "done": p_["total"]}
                        job["video"] = f"{job['out']}/{arg['video']}"
                    elif what == "failed":
                        job["state"], job["error"] = "failed", arg
                if not p.is_alive():
                    p.join()
                    if job["state"] == "running":
                        job["state"] = "failed"
                        job["error"] = f"the replay process died (exit code {p.exitcode})"
                    with self._lock:
                        self._procs.pop(job_id, None)
            time.sleep(0.2)

    def close(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for p, _ in procs:
            p.terminate()
            p.join(5)
