"""Who may use the console.

- Loopback only by default. Any other address needs a token (from --token-file, or
  made up and printed at start), and then every request must carry it: the URL
  printed at start has it once (?token=...), which sets a cookie (HttpOnly,
  SameSite=Strict) for the rest of the visit.
- State-changing requests (POST) always need the token in the X-Slomo-Token header,
  loopback included: a page from another site cannot set that header without a CORS
  preflight, which this server never grants, so it cannot forge them. Their Origin,
  when sent, must be this server's.
- On loopback, the Host header must be a loopback name (DNS rebinding: another site's
  name pointing at 127.0.0.1 would otherwise read the page and its token).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "slomo_token"
HEADER = "x-slomo-token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class ConsoleSecurityError(ValueError):
    """The console cannot start with these security settings."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConsoleSecurityError(
            f"cannot read the token file {path}: {exc.strerror}; give a readable file"
        ) from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConsoleSecurityError(
            f"the token in {path} is too short or has spaces: use 16 or more characters, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))' > FILE"
        )
    return token


@dataclass(frozen=True)
class Access:
    bind: str
    token: str

    @classmethod
    def make(cls, bind: str, token_file: Path | None) -> Access:
        token = read_token(token_file) if token_file else secrets.token_urlsafe(24)
        return cls(bind, token)

    @property
    def open_reads(self) -> bool:
        """Loopback: pages and previews without a token (the machine's own users)."""
        return is_loopback(self.bind)

    def check(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


class AccessMiddleware:
    """ASGI middleware applying the rules in the module docstring to every request."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refuse(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and self.access.check(given) and request.method == "GET":
            # Trade the URL token for a cookie, and drop it from the address bar.
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refuse(self, request: Request) -> Response | None:
        a = self.access
        host = _host_name(request.headers.get("host", ""))
        if a.open_reads and not is_loopback(host):
            return PlainTextResponse(
                "refused: this console listens on loopback only; open it as "
                "http://127.0.0.1:PORT/ (or start it with --bind and a token)",
                status_code=403,
            )
        if request.method in ("GET", "HEAD"):
            if a.open_reads:
                return None
            if a.check(request.cookies.get(COOKIE)) or a.check(request.query_params.get("token")):
                return None
            return PlainTextResponse(
                "refused: this console needs its access token; open the URL printed when it "
                "started (it ends in ?token=...)",
                status_code=401,
            )
        if not a.check(request.headers.get(HEADER)):
            return JSONResponse(
                {"error": "refused: a change needs the console's token (reload the page)"},
                status_code=403,
            )
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse(
                {"error": f"refused: request from another site ({origin})"}, status_code=403
            )
        return None
