"""Who may use the console: loopback by default, a token beyond it, no cross-site
changes, no path out of the sessions folder, and clear errors for bad options."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

import pytest

from tests.console_browser import SLOMO, chromium, console, wait

pytestmark = pytest.mark.slow


def _request(port: int, method: str, path: str, headers=None, body=None):
    """Raw HTTP (no client-side path normalisation: '..' goes out as written)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def _token(port: int) -> str:
    status, _, page = _request(port, "GET", "/")
    assert status == 200
    return page.decode().split('name="slomo-token" content="')[1].split('"')[0]


def _make_session(root: Path, name: str) -> Path:
    """A minimal session folder (what `slomo-rig info` accepts)."""
    path = root / name
    path.mkdir(parents=True)
    (path / "session.json").write_text(
        json.dumps({"format": "slomo-rig-session", "format_version": 1, "status": "complete"})
    )
    (path / "timestamps.csv").write_text("index,timestamp_us,source\n")
    return path


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    _make_session(sessions, "s1")
    (tmp_path / "secret.txt").write_text("do not serve me")
    with console(sessions) as c:
        ok, _, data = _request(c.port, "GET", "/api/sessions/s1/files/timestamps.csv")
        assert ok == 200 and data.startswith(b"index")
        for path in (
            "/api/sessions/s1/files/../../secret.txt",
            "/api/sessions/s1/files/..%2F..%2Fsecret.txt",
            "/api/sessions/s1/files/%2e%2e/%2e%2e/secret.txt",
            "/api/sessions/..%2F/files/secret.txt",
            "/api/sessions/s1/files//etc/passwd",
            "/api/sessions/..",
        ):
            status, _, data = _request(c.port, "GET", path)
            assert status in (400, 403, 404), (path, status)
            assert b"do not serve me" not in data and b"root:" not in data
        token = _token(c.port)
        for name in ("..", "..%2F..%2Ftmp"):
            status, _, data = _request(
                c.port,
                "POST",
                f"/api/sessions/{name}/replay",
                {"X-Slomo-Token": token, "Content-Type": "application/json"},
                json.dumps({"model": "integration", "factor": 2, "format": "mp4"}),
            )
            assert status == 404, name
        assert b"refused" in data or b"Not Found" in data
        assert not (tmp_path / "replays").exists() and not (sessions / "replays").exists()


def test_changes_need_the_token_and_this_origin(tmp_path: Path) -> None:
    with console(tmp_path / "sessions") as c:
        body = json.dumps({"name": "x", "model": "integration", "factor": "abc"})
        status, _, data = _request(c.port, "POST", "/api/record/start", {}, body)
        assert status == 403 and b"token" in data
        token = _token(c.port)
        headers = {"X-Slomo-Token": token, "Origin": "http://evil.example"}
        status, _, data = _request(c.port, "POST", "/api/record/start", headers, body)
        assert status == 403 and b"another site" in data
        headers["Origin"] = f"http://127.0.0.1:{c.port}"
        status, _, data = _request(c.port, "POST", "/api/record/start", headers, body)
        assert status == 400 and b"not a whole number" in data  # got past the checks
        # DNS rebinding: another name pointing at loopback does not get the page.
        status, _, _ = _request(c.port, "GET", "/", {"Host": f"evil.example:{c.port}"})
        assert status == 403


def test_beyond_loopback_every_request_needs_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-long-enough-console-token-123\n")
    with console(tmp_path / "sessions", "--bind", "0.0.0.0", "--token-file", str(token_file)) as c:
        assert c.url.endswith("?token=a-long-enough-console-token-123")
        for path in ("/", "/api/state", "/api/sessions", "/api/preview/rgb.jpg"):
            status, _, data = _request(c.port, "GET", path)
            assert status == 401 and b"token" in data, path
        status, _, _ = _request(c.port, "GET", "/api/state?token=wrong-token-xxxxxxxx")
        assert status == 401
        driver = chromium()
        try:
            driver.get(c.base + "/")
            assert "refused" in driver.find_element("tag name", "body").text
            # The printed URL (its host part is this machine's name): token -> cookie -> page.
            driver.get(c.base + "/?" + c.url.split("?", 1)[1])
            wait(driver, lambda d: d.title == "slomo-rig console", 60, "page with token")
            assert "token=" not in driver.current_url
            wait(
                driver,
                lambda d: d.execute_script("return fetch('/api/state').then(r => r.status)") == 200,
                60,
                "state with the cookie",
            )
        finally:
            driver.quit()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SLOMO, "console", *args], capture_output=True, text=True, timeout=120)


def test_bad_options_exit_2_with_one_line(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    cases = [
        (("--bind", "0.0.0.0", "--token-file", str(short)), "too short"),
        (("--token-file", str(tmp_path / "missing")), "cannot read the token file"),
        (("--config", str(tmp_path / "nope.toml")), "not found"),
        (("--rig", "sim", "--config", str(short)), "not both"),
        (("--port", "70000"), "--port 70000"),
    ]
    for args, expected in cases:
        r = _run("--sessions", str(tmp_path / "s"), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert expected in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
