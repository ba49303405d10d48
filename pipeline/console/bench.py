"""`slomo-rig bench console`: does watching the previews cost capture anything?

One console on the simulated rig in real time records several sessions through the
page's API, cycling through "nobody watching", "two viewers without a browser" (the
page's request loop in threads: the server's own cost) and "two headless Chromium
windows on the Live part" (A B C A B C, so a machine that gets busier mid-run hits all
alike). For each: capture throughput (rig seconds per wall second: 1.0 is the rig's
full, real-time rate; events per wall second), drops (camera, live path, recorder
messages), the CPU of the server, the capture process, the rest of the recording
(recorder, workers) and the browsers; with viewers also the preview frame rate and
latency they measured (capture-side tap time to image decoded in the page).

"The simulated rig's full rate" is real time. Rendering the scene live costs the
capture process about a core at the default size, which a real camera never costs it;
so the rig renders a loop of `--loop-s` seconds once when a recording opens it and then
replays it in real time (`SimConfig.loop_s`; `--loop-s 0` renders live as before).
Should the rig still not keep real time unwatched, the bench steps down a ladder of
smaller rigs (or takes `--sim WxH@FPS`) until an unwatched probe recording does, and
measures the loss at that rate. What it used is in the result.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREVIEWS = ("rgb", "events", "overlay")
CASES = ("none", "two_http_viewers", "two_browsers")
# Largest first: the default simulated rig, then smaller ones a 2-core machine can run.
LADDER = (
    "320x240@50",
    "240x180@50",
    "160x120@50",
    "160x120@40",
    "160x120@30",
    "160x120@25",
    "128x96@25",
)
PROBE_REALTIME = 0.99  # an unwatched probe must keep this share of real time
REALTIME = 0.98  # and the run's unwatched cases on average, or the goal is not met
PROBE_S = 12.0
PROBES_PER_RUNG = 2
GOAL_LOSS_PERCENT = 5.0
LOOP_S = 4.0  # the simulated rig's render-ahead loop (0: render live)


def loop_s_arg(text: str) -> float:
    """--loop-s: 0 (render the scene live) or 0.2 to 60 seconds."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v == 0 or 0.2 <= v <= 60):
        raise ValueError(
            f"--loop-s {text!r}: give 0 (render the simulated scene live) or 0.2 to 60 seconds"
        )
    return v


@dataclass(frozen=True)
class SimRate:
    """The simulated rig's RGB size and frame rate (its event sensor sees the same
    grid, so no calibration is needed); real time, like real cameras."""

    width: int
    height: int
    fps: float

    @classmethod
    def parse(cls, text: str) -> SimRate:
        m = re.fullmatch(r"(\d+)x(\d+)@(\d+(?:\.\d+)?)", text.strip().lower())
        if not m:
            raise ValueError(f"--sim {text!r}: give WIDTHxHEIGHT@FPS, e.g. 160x120@25")
        rate = cls(int(m.group(1)), int(m.group(2)), float(m.group(3)))
        if not (16 <= rate.width <= 4096 and 16 <= rate.height <= 4096 and 1 <= rate.fps <= 500):
            raise ValueError(
                f"--sim {text!r}: sizes from 16 to 4096 pixels, 1 to 500 fps, e.g. 160x120@25"
            )
        return rate

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps:g}"

    def toml(self, loop_s: float = 0.0) -> str:
        """The rig file; loop_s > 0 renders that many seconds once and replays them."""
        return (
            'wiring = "trigger"\n[events]\nbackend = "sim"\n[frames]\nbackend = "sim"\n'
            f"[sim]\nfps = {self.fps}\nframe_size = [{self.width}, {self.height}]\n"
            'event_view = "same_sensor"\nrealtime = true\n'
            + (f"loop_s = {loop_s}\n" if loop_s else "")
        )


class _Server:
    def __init__(self, sessions: Path, config: Path) -> None:
        slomo = str(Path(sys.executable).parent / "slomo-rig")
        self.proc = subprocess.Popen(
            [slomo, "console", "--sessions", str(sessions), "--port", "0", "--config", str(config)],
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
    """A viewer without a browser: the page's request loop for the Live part (the next
    newer stacked image of the RGB, event and overlay previews, no rate cap) in a
    thread, so the server's own cost shows apart from a browser's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stats = {n: {"frames": 0, "latency_ms": None} for n in PREVIEWS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        seq = -1
        shown: dict[str, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self._stop.is_set():
            conn.request("GET", f"/api/preview/live.jpg?after={seq}&window=30")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                time.sleep(0.5)
                continue
            seq = int(r.getheader("X-Seq"))
            for part in json.loads(r.getheader("X-Layout")):
                name = part["name"]
                if name in self.stats and shown.get(name) != part["seq"]:
                    shown[name] = part["seq"]
                    st = self.stats[name]
                    st["frames"] += 1
                    st["latency_ms"] = 1000 * (time.time() - part["wall"])
        conn.close()

    def execute_script(self, script: str) -> dict:
        return {n: dict(v) for n, v in self.stats.items()}

    def quit(self) -> None:
        self._stop.set()
        self._thread.join(10)


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


class _Cpu:
    """CPU seconds of a set of processes between start() and percent() (100 % = one
    core); processes that end in between count up to their last sample."""

    def __init__(self, procs: list) -> None:
        self.procs = procs
        self._t0: dict[int, float] = {}
        self._wall0 = 0.0

    @staticmethod
    def _cpu(p) -> float | None:
        try:
            t = p.cpu_times()
            return t.user + t.system
        except Exception:  # gone: psutil.Error
            return None

    def start(self) -> _Cpu:
        self._wall0 = time.monotonic()
        self._t0 = {p.pid: c for p in self.procs if (c := self._cpu(p)) is not None}
        return self

    def percent(self) -> float | None:
        if not self.procs:
            return None
        wall = time.monotonic() - self._wall0
        used = 0.0
        for p in self.procs:
            c = self._cpu(p)
            if c is not None and p.pid in self._t0:
                used += c - self._t0[p.pid]
        return round(100 * used / wall, 1) if wall > 0 else None


def _busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores): what is not ours of it
    in a case is other jobs', reported so that a disturbed case shows as such."""
    import psutil

    t = psutil.cpu_times()._asdict()
    # Linux counts guest time inside user time; idle and iowait are not busy.
    return sum(v for k, v in t.items() if k not in ("idle", "iowait", "guest", "guest_nice"))


def _record(
    server: _Server, name: str, seconds: float, model: str, drivers: list
) -> dict[str, Any]:
    import psutil

    status, data = server.request(
        "POST", "/api/record/start", {"name": name, "model": model, "factor": 8}
    )
    if status != 200:
        raise RuntimeError(f"bench console: start refused: {data.decode()}")
    _until(lambda: server.state()["record"]["state"] == "recording", 300, "recording")
    # The sources open after that (a looping rig renders its loop first): measure
    # from capture's first health report on.
    _until(lambda: _capturing(server.state()), 300, "capture to run")
    srv = psutil.Process(server.proc.pid)
    children = [c for c in srv.children() if c.is_running()]
    rest = [g for c in children for g in c.children(recursive=True)]
    cpus = {
        "server": _Cpu([srv]).start(),
        "capture": [_Cpu([c]).start() for c in children],
        "recorder_workers": _Cpu(rest).start(),
        "browsers": _Cpu(_viewer_procs(drivers)).start(),
        "bench_client": _Cpu([psutil.Process()]).start(),
    }
    busy0 = _busy_s()
    lat: dict[str, list[float]] = {n: [] for n in PREVIEWS}
    tap: list[dict[str, Any]] = []
    frames0 = {n: [s.get("frames", 0) for s in v] for n, v in _preview_stats(drivers).items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.5)
        for n, per in _preview_stats(drivers).items():
            lat[n] += [s["latency_ms"] for s in per if s.get("latency_ms") is not None]
        counters = server.state()["health"]["counters"]
        if "preview" in counters:
            tap.append(counters["preview"])
    elapsed = time.monotonic() - t0
    frames1 = {n: [s.get("frames", 0) for s in v] for n, v in _preview_stats(drivers).items()}
    capture_cpu = max((c.percent() or 0.0 for c in cpus["capture"]), default=None)
    out: dict[str, Any] = {
        "server_cpu_percent": cpus["server"].percent(),
        "capture_cpu_percent": capture_cpu,
        "recorder_workers_cpu_percent": cpus["recorder_workers"].percent(),
        "browser_cpu_percent": cpus["browsers"].percent(),
        "bench_client_cpu_percent": cpus["bench_client"].percent(),
    }
    ours = sum(v for v in out.values() if v is not None)
    out["other_cpu_percent"] = round(max(0.0, 100 * (_busy_s() - busy0) / elapsed - ours), 1)
    server.request("POST", "/api/record/stop")
    _until(lambda: server.state()["record"]["state"] in ("idle", "failed"), 300, "stop")
    if drivers:
        out["preview_fps"] = {
            n: round(
                statistics.mean(b - a for a, b in zip(frames0[n], frames1[n], strict=True))
                / elapsed,
                1,
            )
            for n in PREVIEWS
        }
        out["preview_latency_ms_p50"] = {
            n: round(statistics.median(v), 1) for n, v in lat.items() if v
        }
    if tap:  # previews a second the tap sent: its pace while watched, else none
        out["tap_hz_mean"] = round(
            statistics.mean(t["hz"] if t.get("watched", True) else 0.0 for t in tap), 1
        )
        out["tap_lag_ms_max"] = round(max(1000 * t["lag_s"] for t in tap), 1)
    return out


def _capturing(state: dict[str, Any]) -> bool:
    """Capture reports health (its counters carry intervals) and has seen events."""
    c = state.get("health", {}).get("counters", {})
    return "intervals" in c and int(c.get("events") or 0) > 0


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


def _run_case(
    server: _Server, sessions: Path, case: str, name: str, seconds: float, model: str
) -> dict[str, Any]:
    drivers: list = []
    try:
        if case == "two_browsers":
            drivers = _browsers(server.url, 2)
        elif case == "two_http_viewers":
            drivers = [_HttpViewer(server.port) for _ in range(2)]
        if drivers:  # the pages show images before the run starts
            _until(lambda: _has_frames(drivers), 120, "previews")
        figures = _record(server, name, seconds, model, drivers)
    finally:
        for d in drivers:
            d.quit()
    return {**_capture_figures(sessions / name), **figures}


def _pick_rate(
    tmp: Path, sessions: Path, model: str, sim: SimRate | None, loop_s: float
) -> tuple[_Server, SimRate, list[dict]]:
    """The largest rig of the ladder that keeps real time unwatched in two probes in a
    row (or the given one, probed all the same so the result says whether it keeps
    up)."""
    ladder = [sim] if sim is not None else [SimRate.parse(s) for s in LADDER]
    probes: list[dict] = []
    for i, rate in enumerate(ladder):
        config = tmp / f"sim-{rate}.toml"
        config.write_text(rate.toml(loop_s))
        server = _Server(sessions, config)
        try:
            kept = True
            for j in range(PROBES_PER_RUNG):
                name = f"probe-{i}-{j}"
                figures = _run_case(server, sessions, "none", name, PROBE_S, model)
                probes.append({"sim": str(rate), "rig_s_per_wall_s": figures["rig_s_per_wall_s"]})
                kept = figures["rig_s_per_wall_s"] >= PROBE_REALTIME
                if not kept:
                    break
        except BaseException:
            server.close()
            raise
        if kept or i == len(ladder) - 1:
            return server, rate, probes
        server.close()
    raise AssertionError("unreachable: the ladder is not empty")


def bench_console(
    seconds: float = 20.0,
    model: str = "integration",
    rounds: int = 3,
    sim: str | None = None,
    loop_s: float = LOOP_S,
) -> dict[str, Any]:
    from pipeline.cli import CliError

    try:
        import selenium  # noqa: F401
    except ImportError:
        raise CliError(
            "bench console needs selenium and Chromium: pip install selenium; "
            "apt-get install chromium chromium-driver (make test installs them)"
        ) from None
    try:
        wanted = SimRate.parse(sim) if sim is not None else None
        loop_s = loop_s_arg(str(loop_s))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    load_start = [round(v, 2) for v in os.getloadavg()]
    runs: dict[str, list[dict]] = {c: [] for c in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = Path(tmp) / "sessions"
        server, rate, probes = _pick_rate(Path(tmp), sessions, model, wanted, loop_s)
        try:
            for r in range(rounds):
                for case in CASES:
                    name = f"bench-{case}-{r}"
                    runs[case].append(_run_case(server, sessions, case, name, seconds, model))
        finally:
            server.close()
    return {
        "sim": str(rate),
        "loop_s": loop_s,
        "probes": probes,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "model": model,
        "cpus": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        **summary(runs),
        "runs": runs,
    }


def _has_frames(drivers: list) -> bool:
    return all(s.get("frames", 0) > 0 for per in _preview_stats(drivers).values() for s in per)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _round(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def summary(runs: dict[str, list[dict]]) -> dict[str, Any]:
    """Means per case and the loss against nobody watching, from the same run: the
    loss in rig seconds per wall second (how far below the rig's real-time rate
    capture fell) and in events per wall second. The goal: nobody watching keeps real
    time (the rig's full rate), and with two browsers watching no drops and both
    losses under 5 %."""

    def mean(case: str, key: str) -> float | None:
        return _mean([r.get(key) for r in runs[case]])

    base_rig = mean("none", "rig_s_per_wall_s") or 0.0
    base_ev = mean("none", "events_per_wall_s") or 0.0
    out: dict[str, Any] = {
        "drops_total": {c: sum(sum(r["drops"].values()) for r in rs) for c, rs in runs.items()}
    }
    for case, rs in runs.items():
        rig = mean(case, "rig_s_per_wall_s") or 0.0
        ev = mean(case, "events_per_wall_s") or 0.0
        row: dict[str, Any] = {
            "rig_s_per_wall_s": round(rig, 3),
            "events_per_wall_s": round(ev),
            "loss_percent": round(100 * (1 - rig / base_rig), 2) if base_rig else None,
            "events_loss_percent": round(100 * (1 - ev / base_ev), 2) if base_ev else None,
        }
        for key in (
            "server_cpu_percent",
            "capture_cpu_percent",
            "recorder_workers_cpu_percent",
            "browser_cpu_percent",
            "bench_client_cpu_percent",
            "other_cpu_percent",
            "tap_hz_mean",
        ):
            row[key] = _round(mean(case, key))
        row["tap_lag_ms_max"] = max((r.get("tap_lag_ms_max") or 0.0 for r in rs), default=None)
        if case != "none":
            row["preview_fps"] = {
                n: _round(_mean([r.get("preview_fps", {}).get(n) for r in rs])) for n in PREVIEWS
            }
            row["preview_latency_ms_p50"] = {
                n: _round(_mean([r.get("preview_latency_ms_p50", {}).get(n) for r in rs]))
                for n in PREVIEWS
            }
        out[case] = row
    watched = out["two_browsers"]
    losses = [watched["loss_percent"], watched["events_loss_percent"]]
    worst = max((v for v in losses if v is not None), default=None)
    out["full_rate_unwatched"] = base_rig >= REALTIME
    out["goal_met"] = bool(
        out["full_rate_unwatched"]
        and worst is not None
        and worst < GOAL_LOSS_PERCENT
        and out["drops_total"]["two_browsers"] == 0
    )
    return out


_LABELS = {
    "none": "nobody",
    "two_http_viewers": "two viewers, no browser",
    "two_browsers": "two Chromium windows",
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} %"


def format_table(result: dict[str, Any]) -> str:
    """The result as the table in docs/benchmarks.md, with what the run used."""
    probes = ", ".join(f"{p['sim']}: {p['rig_s_per_wall_s']:.3f}" for p in result["probes"])
    lines = [
        f"simulated rig {result['sim']} (RGB WxH@fps, events on the same grid), real time, "
        + (
            f"a {result['loop_s']:g} s loop rendered once and replayed"
            if result.get("loop_s")
            else "rendered live in the capture process"
        )
        + f"; unwatched probes (rig s / wall s): {probes}",
        f"{result['rounds']} rounds x {result['seconds_per_run']:g} s per case, model "
        f"{result['model']}, {result['cpus']} CPUs, load average at start "
        f"{result['load_average_start'][0]:.2f}, at end {result['load_average_end'][0]:.2f}",
        "",
        "| watching | rig s / wall s | vs none | events / wall s | drops | capture CPU "
        "| recorder + workers CPU | server CPU | browsers' CPU | other jobs' CPU "
        "| tap previews / s "
        "| preview fps (RGB / events / overlay) | latency p50 (RGB / events / overlay) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for case in CASES:
        r = result[case]
        vs = "-" if case == "none" else f"{-r['loss_percent']:+.1f} %"
        fps = r.get("preview_fps") or {}
        lat = r.get("preview_latency_ms_p50") or {}
        fps_s = " / ".join("-" if fps.get(n) is None else f"{fps[n]:.1f}" for n in PREVIEWS)
        lat_s = " / ".join("-" if lat.get(n) is None else f"{lat[n]:.0f}" for n in PREVIEWS)
        lines.append(
            f"| {_LABELS[case]} | {r['rig_s_per_wall_s']:.3f} | {vs} "
            f"| {r['events_per_wall_s'] / 1000:.0f} k | {result['drops_total'][case]} "
            f"| {_pct(r['capture_cpu_percent'])} | {_pct(r['recorder_workers_cpu_percent'])} "
            f"| {_pct(r['server_cpu_percent'])} | {_pct(r['browser_cpu_percent'])} "
            f"| {_pct(r.get('other_cpu_percent'))} "
            f"| {'-' if r['tap_hz_mean'] is None else format(r['tap_hz_mean'], '.1f')} "
            f"| {fps_s if case != 'none' else '-'} | {lat_s if case != 'none' else '-'} |"
        )
    runs = result.get("runs")
    if runs:  # each case per round: a disturbed round shows as such
        n = max(len(rs) for rs in runs.values())
        lines += [
            "",
            "rig s / wall s per round (other jobs' CPU):",
            "",
            "| watching | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |",
            "| --- |" + " ---: |" * n,
        ]
        for case in CASES:
            cells = [
                f"{r['rig_s_per_wall_s']:.3f} ({_pct(r.get('other_cpu_percent'))})"
                for r in runs[case]
            ]
            lines.append(f"| {_LABELS[case]} | " + " | ".join(cells) + " |")
    verdict = "met" if result["goal_met"] else "NOT met"
    if not result["full_rate_unwatched"]:
        verdict += (
            f" (nobody watching kept {result['none']['rig_s_per_wall_s']:.3f} of real time, "
            f"under {REALTIME:g}: not the rig's full rate; rerun on a quieter machine or "
            "with a smaller --sim)"
        )
    lines += [
        "",
        f"goal (nobody watching at real time; with two browsers no drops and "
        f"< {GOAL_LOSS_PERCENT:g} % loss): {verdict}",
    ]
    return "\n".join(lines)
