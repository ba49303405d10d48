"""docker/: the images and the compose file, checked without a Docker engine.

No engine runs on the project's machines, so nothing here builds or starts a container.
What can go stale without one is checked instead: each Dockerfile is well formed, every
file it COPYs exists (and is not excluded by .dockerignore), every `slomo-rig` command
line in an ENTRYPOINT/CMD or a compose `command:` is accepted by the real argparse
parser, and the compose services agree with each other (ports, keys, volumes, GPUs).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

from pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = {
    "worker": DOCKER / "worker.Dockerfile",
    "capture": DOCKER / "capture.Dockerfile",
}
COMPOSE = DOCKER / "compose.yaml"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
    "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
    "HEALTHCHECK", "SHELL",
}  # fmt: skip


# -- helpers ---------------------------------------------------------------------------
def parse_dockerfile(path: Path) -> list[tuple[str, str, int]]:
    """(INSTRUCTION, arguments, line number) for each instruction; continuation lines
    (trailing backslash) joined, comments and blank lines dropped."""
    out: list[tuple[str, str, int]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are skipped by Docker too
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip(), start))
    assert not pending, f"{path.name}: the file ends inside a line continuation"
    return out


def exec_form(path: Path, keyword: str) -> list[str] | None:
    """The last ENTRYPOINT / CMD of the file, which must be in JSON (exec) form."""
    found = [args for kw, args, _ in parse_dockerfile(path) if kw == keyword]
    if not found:
        return None
    value = json.loads(found[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
        f"{path.name}: {keyword} must be a JSON list of strings (exec form), got {found[-1]}"
    )
    return value


def slomo_args(argv: list[str]) -> list[str]:
    """The arguments after the `slomo-rig` executable."""
    assert argv and argv[0] == "slomo-rig", f"expected a slomo-rig command line, got {argv}"
    return argv[1:]


def parse_cli(args: list[str]):
    """Parse with the real `slomo-rig` parser; a rejected command line fails the test."""
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on unknown commands or flags
        pytest.fail(f"slomo-rig rejects {shlex.join(args)!r} (exit {exc.code})")


_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value):
    """Compose's ${VAR:-default} with the environment unset: the default."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Enough of .dockerignore's matching for this repo: a pattern matches the path or
    one of its parent folders; `**/` matches at any depth."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        if pat.startswith("!"):
            continue
        pat = pat.rstrip("/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pat):
                return True
            if pat.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], pat[3:]):
                return True
    return False


@pytest.fixture(scope="module")
def compose() -> dict:
    import yaml  # a dev dependency: the compose tests must run, not skip

    return yaml.safe_load(COMPOSE.read_text())


def service_command(svc: dict) -> list[str]:
    cmd = svc.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def volume_mounts(svc: dict) -> dict[str, str]:
    """Container path -> source (volume name or host path), short syntax."""
    mounts = {}
    for spec in interpolate(svc.get("volumes", [])):
        parts = spec.split(":")
        mounts[parts[1]] = parts[0]
    return mounts


# -- Dockerfiles -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_parses(name):
    path = DOCKERFILES[name]
    instructions = parse_dockerfile(path)
    assert instructions, f"{path.name} is empty"
    for keyword, args, line in instructions:
        assert keyword in INSTRUCTIONS, f"{path.name}:{line}: unknown instruction {keyword!r}"
        assert args, f"{path.name}:{line}: {keyword} without arguments"
    non_arg = [kw for kw, _, _ in instructions if kw != "ARG"]
    assert non_arg[0] == "FROM", f"{path.name}: the first instruction after ARGs must be FROM"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_copies_exist_in_context(name):
    """The build context is the repository root (compose: context ..)."""
    path = DOCKERFILES[name]
    patterns = dockerignore_patterns()
    copies = [args for kw, args, _ in parse_dockerfile(path) if kw in ("COPY", "ADD")]
    assert copies, f"{path.name} copies nothing from the repository"
    for args in copies:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        *sources, _dest = words
        assert sources, f"{path.name}: COPY {args} has no source"
        for src in sources:
            assert (ROOT / src).exists(), f"{path.name}: COPY source {src} is not in the repo"
            assert not ignored(src, patterns), f"{path.name}: {src} is excluded by .dockerignore"


def test_images_install_what_pyproject_needs():
    """setuptools needs README.md (the readme field) and every package it finds."""
    for name, path in DOCKERFILES.items():
        copied = {
            w.rstrip("/")
            for kw, args, _ in parse_dockerfile(path)
            if kw == "COPY"
            for w in shlex.split(args)[:-1]
        }
        for needed in ("pyproject.toml", "README.md", "rig", "pipeline", "calibration", "models"):
            assert needed in copied, f"{name} image does not COPY {needed}"
        text = path.read_text()
        assert '"torch==2.13.0"' in text, f"{name} image must pin torch==2.13.0 as pyproject does"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_run_as_the_same_non_root_user(name):
    """The CurveZMQ secret keys are 0600: the image that makes them (capture) and the
    one that reads them (worker) must run as the same UID, and not as root."""
    instructions = parse_dockerfile(DOCKERFILES[name])
    users = [args for kw, args, _ in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{name} image runs as root"
    uids = {args.split("=", 1)[1] for kw, args, _ in instructions if kw == "ARG" and "UID=" in args}
    assert uids == {"10001"}, f"{name} image: default UID {uids}"
    assert any(kw == "RUN" and "mkdir -p /keys" in args for kw, args, _ in instructions)


def test_worker_entrypoint():
    path = DOCKERFILES["worker"]
    assert exec_form(path, "ENTRYPOINT") == ["slomo-rig", "worker"]
    base = [args for kw, args, _ in parse_dockerfile(path) if kw in ("FROM", "ARG")]
    assert any("nvidia/cuda:13." in a and "cudnn-runtime" in a for a in base), (
        "onnxruntime-gpu 1.31 needs CUDA 13 + cuDNN 9: the worker base must provide them"
    )
    # The worker's flags as the compose file and docs/docker.md use them.
    args = parse_cli(
        slomo_args(exec_form(path, "ENTRYPOINT"))
        + ["--jobs", "tcp://capture:5555", "--results", "tcp://capture:5556"]
        + ["--keys", "/keys", "--model", "timelens"]
    )
    assert args.command == "worker" and args.keys == Path("/keys")


def test_capture_entrypoint_and_default_cmd():
    path = DOCKERFILES["capture"]
    entry, cmd = exec_form(path, "ENTRYPOINT"), exec_form(path, "CMD")
    assert entry == ["slomo-rig"]
    args = parse_cli(slomo_args(entry + cmd))
    assert args.command == "record"
    assert args.workers == 0, "capture runs no local workers: the worker containers do"
    assert (args.job_port, args.result_port) == (5555, 5556)
    assert args.bind == "0.0.0.0" and args.keys == Path("/keys")
    assert args.out == Path("/sessions") and args.config == Path("/config/rig.toml")
    instructions = parse_dockerfile(path)
    assert ("STOPSIGNAL", "SIGINT") in [(kw, a) for kw, a, _ in instructions], (
        "docker stop must stop 'record' like Ctrl-C, so the raw file is closed cleanly"
    )
    exposed = {p for kw, a, _ in instructions if kw == "EXPOSE" for p in a.split()}
    assert {"5555", "5556"} <= exposed


def test_dockerignore_keeps_local_state_out():
    patterns = dockerignore_patterns()
    for path in (".venv", ".git", "sessions", "pipeline/__pycache__", ".pytest_cache"):
        assert ignored(path, patterns), f".dockerignore does not exclude {path}"
    for path in ("pipeline/cli.py", "pyproject.toml", "README.md", "models/registry.py"):
        assert not ignored(path, patterns), f".dockerignore excludes {path}"


# -- compose.yaml ------------------------------------------------------------------------
def test_compose_services(compose):
    assert {"keys", "capture", "worker"} <= set(compose["services"])
    assert {"keys", "sessions"} <= set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
            assert (COMPOSE.parent / build["context"]).resolve() == ROOT


def test_compose_keys_service_makes_keys_once(compose):
    svc = compose["services"]["keys"]
    script = " ".join(svc["entrypoint"] + service_command(svc))
    calls = re.findall(r"slomo-rig\s+([^;&|]+)", script)
    assert calls, "the keys service does not run slomo-rig"
    for call in calls:
        args = parse_cli(shlex.split(call))
        assert args.command == "keys" and args.folder == Path("/keys")
        assert not args.force, "keys must not be replaced on every start"
    assert "server.key_secret" in script, "keys must be made only when absent"
    assert volume_mounts(svc)["/keys"] == "keys"


def test_compose_capture_command(compose):
    svc = compose["services"]["capture"]
    entry = exec_form(DOCKERFILES["capture"], "ENTRYPOINT")
    args = parse_cli(slomo_args(entry + interpolate(service_command(svc))))
    assert args.command == "record" and args.workers == 0
    assert args.bind not in ("127.0.0.1", "localhost"), "workers in other containers connect"
    assert args.keys is not None, "a non-loopback bind needs --keys (pipeline.security)"
    mounts = volume_mounts(svc)
    assert mounts.get(str(args.keys)) == "keys"
    assert str(args.out) in mounts, "the sessions must outlive the container"
    assert str(args.config.parent) in mounts, "the rig configuration must be mounted"
    exposed = {str(p) for p in svc.get("expose", [])}
    assert {str(args.job_port), str(args.result_port)} <= exposed
    assert svc["depends_on"]["keys"]["condition"] == "service_completed_successfully"
    assert svc.get("stop_signal") == "SIGINT"


def test_compose_worker_connects_to_capture(compose):
    services = compose["services"]
    svc = services["worker"]
    entry = exec_form(DOCKERFILES["worker"], "ENTRYPOINT")
    args = parse_cli(slomo_args(entry + interpolate(service_command(svc))))
    assert args.command == "worker" and args.model == "timelens"
    capture_entry = exec_form(DOCKERFILES["capture"], "ENTRYPOINT")
    capture = parse_cli(slomo_args(capture_entry + service_command(services["capture"])))
    for endpoint, port in ((args.jobs, capture.job_port), (args.results, capture.result_port)):
        m = re.fullmatch(r"tcp://([\w.-]+):(\d+)", endpoint)
        assert m, f"worker endpoint {endpoint} is not tcp://HOST:PORT"
        assert m.group(1) == "capture", f"{endpoint} does not name the capture service"
        assert int(m.group(2)) == port, f"{endpoint}: capture listens on {port}"
    # Same keys volume as the capture node, at the path the worker is given.
    assert volume_mounts(svc)[str(args.keys)] == volume_mounts(services["capture"])["/keys"]
    assert svc["depends_on"]["keys"]["condition"] == "service_completed_successfully"


def test_compose_worker_scales_on_gpus(compose):
    deploy = compose["services"]["worker"]["deploy"]
    assert deploy["replicas"] == "${WORKERS:-2}"
    assert int(interpolate(deploy["replicas"])) == 2
    devices = deploy["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
