"""`slomo-rig bench console`: does watching the previews cost capture anything?

One run of the console on the simulated rig in real time records several sessions
through the page's API, cycling through "nobody watching", "two viewers without a
browser" (the page's request loop in threads: the server's own cost) and "two headless
Chromium windows on the Live part" (A B C A B C, so a machine that gets busier
mid-run hits all alike). For each: capture throughput (events per wall second, rig seconds per wall
second), drops (camera, live path, recorder messages), the server's and the
recording process's CPU use; with browsers also the preview frame rate and latency
the pages measured (capture-side tap time to image decoded in the page).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PREVIEWS = ("rgb", "events", "overlay")


class _Server:
    def __init__(self, sessions: Path) -> None:
        slomo = str(Path(sys.executable).parent / "slomo-rig")
        self.proc = subprocess.Popen(
            [slomo, "console", "--sessions", str(sessions), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"http://[^/]+:(\d+)/", line)
        if not m:
            self.close()
            raise RuntimeError(f"the console did not start: {line!r}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"
        self.token = ""
        try:
            page = self.get("/").decode()
            self.token = page.split('name="slomo-token" content="')[1].split('"')[0]
        except BaseException:
            self.close()
            raise

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"X-Slomo-Token": self.token, "Content-Type": "application/json"}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def get(self, path: str) -> bytes:
        return self.request("GET", path)[1]

    def state(self) -> dict[str, Any]:
        return json.loads(self.get("/api/state"))

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def _until(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench console: waited {timeout_s:g} s for {what}")
        time.sleep(0.2)


def _browsers(url: str, n: int) -> list:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []
    for _ in range(n):
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            opts.add_argument(arg)
        opts.add_argument("--window-size=1400,1000")
        d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        d.get(url + "#live")
        drivers.append(d)
    return drivers


class _HttpViewer:
    """A viewer without a browser: the page's request loop (next newer image of each
    preview) in threads, so the server's own cost shows apart from a browser's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stats = {n: {"frames": 0, "latency_ms": None} for n in PREVIEWS}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(n,), daemon=True) for n in PREVIEWS
        ]
        for t in self._threads:
            t.start()

    def _loop(self, name: str) -> None:
        seq = -1
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self._stop.is_set():
            conn.request("GET", f"/api/preview/{name}.jpg?after={seq}&window=30")
            r = conn.getresponse()
            r.read()
            if r.status == 200 and int(r.getheader("X-Seq")) != seq:
                seq = int(r.getheader("X-Seq"))
                st = self.stats[name]
                st["frames"] += 1
                st["latency_ms"] = 1000 * (time.time() - float(r.getheader("X-Wall")))
            elif r.status != 200:
                time.sleep(0.5)
        conn.close()

    def execute_script(self, script: str) -> dict:
        return {n: dict(v) for n, v in self.stats.items()}

    def quit(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def _preview_stats(drivers: list) -> dict[str, list[dict]]:
    script = "return window.previewStats"
    return {name: [d.execute_script(script).get(name, {}) for d in drivers] for name in PREVIEWS}


def _viewer_procs(drivers: list) -> list:
    import psutil

    procs = []
    for d in drivers:
        service = getattr(d, "service", None)
        if service is not None:
            root = psutil.Process(service.process.pid)
            procs += [root, *root.children(recursive=True)]
    return procs


def _record(server: _Server, name: str, seconds: float, model: str, drivers: list) -> dict:
    import psutil

    status, data = server.request(
        "POST", "/api/record/start", {"name": name, "model": model, "factor": 8}
    )
    if status != 200:
        raise RuntimeError(f"bench console: start refused: {data.decode()}")
    _until(lambda: server.state()["record"]["state"] == "recording", 300, "recording")
    srv = psutil.Process(server.proc.pid)
    children = [c for c in srv.children() if c.is_running()]
    srv.cpu_percent(None)
    for c in children:
        c.cpu_percent(None)
    viewers = _viewer_procs(drivers)
    for v in viewers:
        v.cpu_percent(None)
    lat: dict[str, list[float]] = {n: [] for n in PREVIEWS}
    frames0 = {n: [s.get("frames", 0) for s in v] for n, v in _preview_stats(drivers).items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.5)
        for n, per in _preview_stats(drivers).items():
            lat[n] += [s["latency_ms"] for s in per if s.get("latency_ms") is not None]
    elapsed = time.monotonic() - t0
    frames1 = {n: [s.get("frames", 0) for s in v] for n, v in _preview_stats(drivers).items()}
    server_cpu = srv.cpu_percent(None)
    capture_cpu = max((c.cpu_percent(None) for c in children if c.is_running()), default=None)
    browser_cpu = sum(v.cpu_percent(None) for v in viewers if v.is_running())
    server.request("POST", "/api/record/stop")
    _until(lambda: server.state()["record"]["state"] in ("idle", "failed"), 300, "stop")
    return {
        "server_cpu_percent": round(server_cpu, 1),
        "recording_process_cpu_percent": capture_cpu,
        "browser_cpu_percent": round(browser_cpu, 1) if viewers else None,
        "preview_fps": {
            n: round(
                statistics.mean(b - a for a, b in zip(frames0[n], frames1[n], strict=True))
                / elapsed,
                1,
            )
            for n in PREVIEWS
        }
        if drivers
        else None,
        "preview_latency_ms_p50": {n: round(statistics.median(v), 1) for n, v in lat.items() if v}
        or None,
    }


def _capture_figures(session: Path) -> dict[str, Any]:
    m = json.loads((session / "session.json").read_text())
    cap, wall = m["capture"], m.get("wall_seconds") or 0.0
    span = (cap["last_event_us"] - cap["first_event_us"]) / 1e6
    return {
        "status": m["status"],
        "events": cap["events"],
        "frames": cap["frames"],
        "events_per_wall_s": round(cap["events"] / wall) if wall else None,
        "rig_s_per_wall_s": round(span / wall, 3) if wall else None,
        "drops": {
            "camera_frames": cap.get("camera_skipped_frames", 0),
            "live_events": cap.get("live_events_dropped", 0),
            "recorder_messages": cap.get("recorder_messages_dropped", 0),
        },
    }


def bench_console(seconds: float = 20.0, model: str = "integration", rounds: int = 2) -> dict:
    from pipeline.cli import CliError

    try:
        import selenium  # noqa: F401
    except ImportError:
        raise CliError(
            "bench console needs selenium and Chromium: pip install selenium; "
            "apt-get install chromium chromium-driver (make test installs them)"
        ) from None
    runs: dict[str, list[dict]] = {"none": [], "two_http_viewers": [], "two_browsers": []}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = Path(tmp) / "sessions"
        server = _Server(sessions)
        try:
            for r in range(rounds):
                for case in runs:
                    drivers: list = []
                    if case == "two_browsers":
                        drivers = _browsers(server.url, 2)
                    elif case == "two_http_viewers":
                        drivers = [_HttpViewer(server.port) for _ in range(2)]
                    try:
                        if drivers:  # the pages show images before the run starts
                            _until(lambda d=drivers: _has_frames(d), 120, "previews")
                        name = f"bench-{case}-{r}"
                        figures = _record(server, name, seconds, model, drivers)
                    finally:
                        for d in drivers:
                            d.quit()
                    runs[case].append({**_capture_figures(sessions / name), **figures})
        finally:
            server.close()
    return {"seconds_per_run": seconds, "model": model, **_summary(runs), "runs": runs}


def _has_frames(drivers: list) -> bool:
    return all(s.get("frames", 0) > 0 for per in _preview_stats(drivers).values() for s in per)


def _summary(runs: dict[str, list[dict]]) -> dict[str, Any]:
    def mean(case: str, key: str) -> float:
        return statistics.mean(r[key] for r in runs[case])

    base = mean("none", "events_per_wall_s")
    out: dict[str, Any] = {
        "drops_total": {c: sum(sum(r["drops"].values()) for r in rs) for c, rs in runs.items()}
    }
    for case in runs:
        rate = mean(case, "events_per_wall_s")
        out[case] = {
            "events_per_wall_s": round(rate),
            "rig_s_per_wall_s": round(mean(case, "rig_s_per_wall_s"), 3),
            "throughput_loss_percent": round(100 * (1 - rate / base), 2),
            "server_cpu_percent": round(mean(case, "server_cpu_percent"), 1),
        }
        if case != "none":
            rs = runs[case]
            cpu = [r["browser_cpu_percent"] for r in rs if r["browser_cpu_percent"] is not None]
            out[case]["browser_cpu_percent"] = round(statistics.mean(cpu), 1) if cpu else None
            out[case]["preview_fps"] = {
                n: round(statistics.mean(r["preview_fps"][n] for r in rs), 1) for n in PREVIEWS
            }
            out[case]["preview_latency_ms_p50"] = {
                n: round(statistics.median(r["preview_latency_ms_p50"][n] for r in rs), 1)
                for n in PREVIEWS
                if all(r["preview_latency_ms_p50"] and n in r["preview_latency_ms_p50"] for r in rs)
            }
    return out
