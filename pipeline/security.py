"""Who may talk to the pipeline's sockets.

Everything binds to loopback unless told otherwise. Binding to any other address
exposes camera data and accepts jobs from the network, so it requires CurveZMQ keys
(`slomo-rig keys DIR` makes them): traffic is encrypted and only clients whose public
key is in DIR/authorized/ are let in; everyone else is refused by the handshake.
"""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import zmq


class SecurityError(RuntimeError):
    """An unsafe or broken security set-up; the message says what to do."""


SERVER = "server"
CLIENT = "client"
AUTHORIZED = "authorized"


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
    auth.configure_curve(domain="*", location=str(authorized))
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
