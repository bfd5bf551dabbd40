"""What stands between the console's pages and anyone who is not the officer at the screen.

- **Login.** The console prints a one-time login URL holding a random token (as Jupyter
  does). Opening it exchanges the token for a session cookie and the token is spent; a
  new one is printed after logout. The cookie is HttpOnly, SameSite=Strict, Secure (and
  `__Host-` prefixed) under TLS, and named after the port, because browsers share cookies
  between the ports of one host: several officers' consoles on one host do not overwrite
  each other's cookie. (Browsers still send it to every port of the host: on a shared
  host each console gets its own loopback address, docs/console.md.)
- **Sessions** live in this process only and end after `idle_seconds` without a request,
  `max_age_seconds` after sign-in, at logout, or when the console stops. Only a hash of
  the session id is kept. One login link is valid at a time, for `token_seconds`.
- **CSRF.** Every state-changing request (any method but GET and HEAD) must carry the
  session's token, in the `csrf` form field or the `X-CSRF-Token` header, and must not
  come from another site (`Origin`, `Sec-Fetch-Site`).
- **Headers.** A strict Content-Security-Policy (scripts and styles from this origin
  only: no inline script, no eval), framing denied, no referrer, nothing cached.
- **Hosts.** Only the Host names the console was started for are answered, so a web page
  elsewhere cannot reach it through DNS rebinding.
- **Size.** Every request body is bounded (`BodyLimits`): a request over its limit gets
  413 and one sentence, and nothing it carried is used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
DEFAULT_IDLE_SECONDS = 15 * 60
DEFAULT_MAX_AGE_SECONDS = 12 * 3600
DEFAULT_TOKEN_SECONDS = 24 * 3600
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    # Pages show data about victims and suspects: nothing goes to the browser's disk cache.
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Session:
    csrf: str
    last_seen: float
    created: float
    # One-line notices shown once on the next page (never personal data: ids and verdicts).
    flashes: list[tuple[str, str]] = field(default_factory=list)


class Sessions:
    """The console's login tokens and sessions, in memory only."""

    def __init__(
        self,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        token_seconds: float = DEFAULT_TOKEN_SECONDS,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.token_seconds = token_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # The one login token not yet spent (its digest) and when it was printed.
        self._token: tuple[str, float] | None = None
        self._sessions: dict[str, Session] = {}

    def new_login_token(self) -> str:
        """A token for one login URL: spent by the login it opens, void once a newer one
        is printed or after `token_seconds`."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._token = (_digest(token), self._clock())
        return token

    def login(self, token: str) -> str | None:
        """Spend a login token for a new session id, or None if the token is not one."""
        key = _digest(token)
        now = self._clock()
        with self._lock:
            held = self._token
            if held is None or not hmac.compare_digest(held[0], key):
                return None
            self._token = None
            if now - held[1] > self.token_seconds:
                return None
            sid = secrets.token_urlsafe(32)
            self._sessions[_digest(sid)] = Session(secrets.token_urlsafe(32), now, now)
            return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session of `sid` (its idle clock restarts), or None."""
        if not sid:
            return None
        key = _digest(sid)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if (
                now - session.last_seen > self.idle_seconds
                or now - session.created > self.max_age_seconds
            ):
                del self._sessions[key]
                return None
            session.last_seen = now
            return session

    def logout(self, sid: str | None) -> bool:
        if not sid:
            return False
        with self._lock:
            return self._sessions.pop(_digest(sid), None) is not None

    def active(self) -> int:
        now = self._clock()
        with self._lock:
            for key in [
                k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds
            ]:
                del self._sessions[key]
            return len(self._sessions)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")


def same_origin(headers: Headers, allowed_origins: frozenset[str]) -> bool:
    """False for a request a browser says comes from another site.

    `Sec-Fetch-Site` is set by the browser and cannot be forged by a page. A form posted
    under a strict referrer policy may carry `Origin: null`; it counts as ours only when
    the browser also says the request is same-origin (a sandboxed frame elsewhere sends
    `null` too, but as cross-site)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin == "null":
        return site == "same-origin"
    return origin is None or origin in allowed_origins


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLargeError(Exception):
    pass


class BodyLimits:
    """Bounds every request body: `limit_of(path)` bytes, by Content-Length up front and
    by counting what arrives (a chunked body states no length)."""

    def __init__(self, app: ASGIApp, limit_of: Callable[[str], int]) -> None:
        self.app = app
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        seen = 0
        started = overflow = False

        async def counted() -> Message:
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = True
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if overflow and not started:
                return  # whatever the app answers to a cut-off body, the answer is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    body = f"The request is larger than this console accepts ({limit:,} bytes).\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "BodyLimits",
    "SecurityHeaders",
    "Session",
    "Sessions",
    "csrf_ok",
    "same_origin",
]
