"""Who may talk to the pipeline's sockets.

Everything binds to loopback unless told otherwise. Binding to any other address
exposes camera data and accepts jobs from the network, so it requires CurveZMQ keys
(`slomo-rig keys DIR` makes them): traffic is encrypted and only clients whose public
key is in DIR/authorized/ are let in; everyone else is refused by the handshake.

Each remote worker gets its own key pair (`slomo-rig keys DIR --worker NAME` makes
DIR/workers/NAME/, the folder to copy to that machine, and authorises its public key
as DIR/authorized/NAME.key). The folder is read at every handshake, so deleting a
worker's public key revokes it for every new connection without a restart.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import zmq


class SecurityError(RuntimeError):
    """An unsafe or broken security set-up; the message says what to do."""


SERVER = "server"
CLIENT = "client"
AUTHORIZED = "authorized"
WORKERS = "workers"
WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HANDSHAKE_TIMEOUT_S = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def generate_keys(folder: Path, overwrite: bool = False) -> dict[str, Path]:
    """A server key pair, one client key pair, and the client's public key authorised."""
    import zmq.auth

    folder = Path(folder)
    if (folder / f"{SERVER}.key_secret").exists() and not overwrite:
        raise SecurityError(f"{folder} already holds keys; pass --force to replace them")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / AUTHORIZED).mkdir(exist_ok=True)
    server_pub, server_sec = zmq.auth.create_certificates(folder, SERVER)
    client_pub, client_sec = zmq.auth.create_certificates(folder, CLIENT)
    shutil.copyfile(client_pub, folder / AUTHORIZED / Path(client_pub).name)
    for secret in (server_sec, client_sec):
        Path(secret).chmod(0o600)
    return {
        "server_public": Path(server_pub),
        "server_secret": Path(server_sec),
        "client_public": Path(client_pub),
        "client_secret": Path(client_sec),
        "authorized": folder / AUTHORIZED,
    }


def add_worker_key(folder: Path, name: str, overwrite: bool = False) -> dict[str, Path]:
    """One worker's own key pair in folder/workers/NAME (with the server's public key:
    the whole folder to give that worker), its public key authorised."""
    import zmq.auth

    folder = Path(folder)
    if not WORKER_NAME.fullmatch(name):
        raise SecurityError(
            f"worker name {name[:80]!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    _load(folder, SERVER, secret=True)  # the rig's keys come first
    target = folder / WORKERS / name
    authorised = folder / AUTHORIZED / f"{name}.key"
    if (target.exists() or authorised.exists()) and not overwrite:
        raise SecurityError(
            f"{target} or {authorised} already exists; pass --force to replace that worker's keys"
        )
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    public, secret = zmq.auth.create_certificates(target, CLIENT)
    Path(secret).chmod(0o600)
    shutil.copyfile(folder / f"{SERVER}.key", target / f"{SERVER}.key")
    (folder / AUTHORIZED).mkdir(exist_ok=True)
    shutil.copyfile(public, authorised)
    return {"worker_folder": target, "authorized": authorised}


class _FolderAuthoriser:
    """ZAP credentials callback: a client key is let in while some *.key file in the
    folder holds it; read at each handshake, so removing the file revokes it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def callback(self, domain: str, key: bytes) -> bool:
        import zmq.auth

        try:
            allowed = zmq.auth.load_certificates(str(self.folder))
        except (OSError, ValueError):
            return False
        return key in allowed


def _load(folder: Path, name: str, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = Path(folder) / (f"{name}.key_secret" if secret else f"{name}.key")
    if not path.exists():
        raise SecurityError(
            f"{path} is missing: create keys with 'slomo-rig keys {folder}' and copy the "
            "folder to every machine of the rig"
        )
    try:
        return zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise SecurityError(f"{path} is not a valid CurveZMQ key file: {exc}") from None


def check_bind(host: str, keys: Path | None) -> None:
    """Refuse, before anything starts, to expose unauthenticated sockets."""
    if keys is None and not is_loopback(host):
        raise SecurityError(
            f"binding to {host} would expose the pipeline to the network without "
            "authentication: create keys with 'slomo-rig keys DIR' and pass --keys DIR "
            "(or bind to 127.0.0.1)"
        )
    if keys is not None:
        _load(keys, SERVER, secret=True)


def configure_server(sock: zmq.Socket, ctx: zmq.Context, host: str, keys: Path | None):
    """Call before bind. Returns the authenticator to stop at close (or None)."""
    check_bind(host, keys)
    if keys is None:
        return None
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = _load(keys, SERVER, secret=True)
    authorized = Path(keys) / AUTHORIZED
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise SecurityError(f"{authorized} holds no client public keys: nobody could connect")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_FolderAuthoriser(authorized))
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True
    return auth


def configure_client(sock: zmq.Socket, keys: Path | None) -> None:
    """Call before connect, when the server uses keys."""
    if keys is None:
        return
    server_public, _ = _load(keys, SERVER, secret=False)
    public, secret = _load(keys, CLIENT, secret=True)
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = server_public


_FAILED = {
    "EVENT_HANDSHAKE_FAILED_AUTH": (
        "refused this worker's key {client}: it is not (or no longer) among the capture "
        "side's authorized keys; on the capture machine run 'slomo-rig keys DIR --worker "
        "NAME' and give this worker the folder DIR/workers/NAME"
    ),
    "EVENT_HANDSHAKE_FAILED_NO_DETAIL": (
        "did not accept the handshake: {server} is not the capture side's server key; "
        "use the key folder made on the capture machine"
    ),
    "EVENT_HANDSHAKE_FAILED_PROTOCOL": (
        "speaks another security mechanism: pass --keys if the capture side uses keys, "
        "drop it if it does not"
    ),
}


def check_handshake(
    ctx: zmq.Context,
    endpoint: str,
    sock_type: int,
    keys: Path | None,
    stop: threading.Event | None = None,
    timeout_s: float = HANDSHAKE_TIMEOUT_S,
    say: Callable[[str], None] | None = None,
) -> bool:
    """Connect a throw-away socket and wait for the security handshake, so that wrong
    keys are reported in seconds instead of ZeroMQ retrying silently forever.

    Returns True once a handshake succeeded, False if stop was set first; raises
    SecurityError when the peer refuses, or answers but completes no handshake within
    timeout_s. Waits as long as it takes for the peer to start listening."""
    names = {getattr(zmq, n): n for n in _FAILED}
    probe = ctx.socket(sock_type)
    probe.setsockopt(zmq.LINGER, 0)
    configure_client(probe, keys)
    addr = f"inproc://handshake-{uuid.uuid4().hex}"
    probe.monitor(addr, zmq.EVENT_ALL)
    monitor = ctx.socket(zmq.PAIR)
    monitor.connect(addr)
    from zmq.utils.monitor import recv_monitor_message

    probe.connect(endpoint)
    connected_at: float | None = None
    waiting_said = False
    try:
        while stop is None or not stop.is_set():
            if monitor.poll(100):
                event = recv_monitor_message(monitor)["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    return True
                if event in names:
                    # Without keys any failure means the other side uses them.
                    kind = "EVENT_HANDSHAKE_FAILED_PROTOCOL" if keys is None else names[event]
                    reason = _FAILED[kind].format(
                        client=f"{keys}/{CLIENT}.key", server=f"{keys}/{SERVER}.key"
                    )
                    raise SecurityError(f"{endpoint} {reason}")
                if event == zmq.EVENT_CONNECTED and connected_at is None:
                    connected_at = time.monotonic()
                continue
            if connected_at is not None and time.monotonic() - connected_at > timeout_s:
                raise SecurityError(
                    f"{endpoint} accepted the connection but completed no handshake within "
                    f"{timeout_s:g} s: is it a slomo-rig pipeline socket, and is "
                    f"{keys}/{SERVER}.key the capture side's server key?"
                )
            if connected_at is None and not waiting_said and say is not None:
                waiting_said = True
                say(f"waiting for {endpoint} to listen")
        return False
    finally:
        probe.disable_monitor()
        probe.close(0)
        monitor.close(0)
