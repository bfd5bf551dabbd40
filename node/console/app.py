"""The console's web application: sessions, pages, and the one way every page answers.

Every page is an `async def` handler registered with `@console.page(...)`. The wrapper
checks the session (else the sign-in page), checks CSRF and origin on every request that
changes something, runs the handler, and turns a refusal into the page shown with the
node's one sentence and the matching HTTP status. Handlers reach the node only through
the officer SDK (`self.client`, `self.cases`, `self.matching`), whose blocking calls run
on worker threads (`self.call`).
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import grpc
import jinja2
import structlog
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from exchange.errors import MlaxError, OversizedError
from exchange.policy import Role
from node.cli.common import format_time as cli_time
from node.cli.safe_text import shown
from node.client import NodeCallError, OfficerClient, WhoAmI
from node.client.cases import CaseClient
from node.client.matching import MatchClient
from node.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    BodyLimits,
    SecurityHeaders,
    Session,
    Sessions,
    csrf_ok,
    same_origin,
)

log = structlog.get_logger("mlax.console")
HERE = Path(__file__).parent
P = ParamSpec("P")
T = TypeVar("T")
Handler = Callable[["Console", Request, Session], Awaitable[Response]]

MIB = 1024 * 1024
_EVIDENCE_ROUTE = re.compile(r"/cases/[^/]+/evidence")
# A case reference as nodes make them (AGENCY-YYYY-NNNNN): only such a value is a link.
_CASE_REF = re.compile(r"[A-Z0-9][A-Z0-9-]{0,62}-\d{4}-\d{1,9}")
# HTTP statuses of the node's refusals, as a browser and its user understand them.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: int = 8780
    idle_seconds: float = 15 * 60
    tls: bool = False
    # Request bodies: forms, an evidence upload, a ledger export to verify, a CSV batch.
    max_form_bytes: int = 2 * MIB
    max_upload_bytes: int = 4096 * MIB
    max_export_bytes: int = 1024 * MIB
    max_csv_bytes: int = 5 * MIB
    # A session ends after this long whatever its use; a login link after this long.
    max_session_seconds: float = 12 * 3600
    login_link_seconds: float = 24 * 3600
    # Host names the console answers to besides the one it listens on.
    extra_hosts: tuple[str, ...] = ()
    work_dir: Path | None = None


@dataclass(frozen=True)
class Nav:
    href: str
    label: str
    roles: frozenset[str]


NAV = (
    Nav("/cases", "Cases", frozenset({Role.OFFICER, Role.SUPERVISOR})),
    Nav("/cases/new", "New request", frozenset({Role.OFFICER, Role.SUPERVISOR})),
    Nav("/approvals", "Approvals", frozenset({Role.SUPERVISOR})),
    Nav("/messages", "Messages", frozenset({Role.OFFICER, Role.SUPERVISOR})),
    Nav("/match", "Victim identification", frozenset({Role.OFFICER, Role.SUPERVISOR})),
    Nav("/audit", "Audit", frozenset({Role.AUDITOR})),
    Nav("/stats", "Statistics", frozenset({Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR})),
    Nav("/me", "Who am I", frozenset(Role)),
)


def format_time(ms: int) -> str:
    """A unix-millisecond instant as the CLI shows it (`2026-01-01 00:00 UTC`); `-` for none."""
    return cli_time(ms) if ms else "-"


def _finalize(value: Any) -> Any:
    """Applied to every `{{ value }}` before HTML escaping: text that did not come from a
    template shows control, bidi and other format characters as visible escapes, exactly
    as the CLI's `shown` does, so a peer's text cannot reorder or hide what a page says."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return "" if value is None else value
    return shown(value, multiline=True, markup=False)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_time
    env.filters["hex"] = lambda b: bytes(b).hex() if b else "-"
    env.filters["short"] = lambda b: (bytes(b).hex()[:16] + "…") if b else "-"
    env.filters["slug"] = lambda s: str(s).replace("_", "-")
    env.filters["size"] = _size
    env.filters["ticks"] = _ticks
    env.tests["case_ref"] = lambda v: bool(_CASE_REF.fullmatch(str(v)))
    return env


def _ticks(text: str) -> Markup:
    """Help text of the form tables, whose `names` are in backticks, with those as code:
    the text is escaped first, so only the code spans are markup."""
    parts = str(escape(shown(text, markup=False))).split("`")
    spans = (f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    return Markup("".join(spans))  # noqa: S704 - every part was escaped above


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def http_status(e: NodeCallError) -> int:
    """The HTTP status a page answers with when the node refused a call."""
    return _HTTP_STATUS.get(e.code, 502)


class Refused(Exception):  # noqa: N818 - a page's answer, named as users read it
    """A page refuses the request with one sentence (and an HTTP status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Console:
    """One officer's console: their SDK client, their sessions and the pages."""

    client: OfficerClient
    settings: ConsoleSettings = field(default_factory=ConsoleSettings)
    # Called with each new login URL (the CLI prints it).
    announce: Callable[[str], None] = print
    routes: list[BaseRoute] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cases = CaseClient(self.client)
        self.matching = MatchClient(self.client)
        self.sessions = Sessions(
            self.settings.idle_seconds,
            max_age_seconds=self.settings.max_session_seconds,
            token_seconds=self.settings.login_link_seconds,
        )
        self.env = _environment()
        self.me: WhoAmI = self.client.whoami()
        self.officer = self.client.credential.officer
        self.role = self.me.role
        self._own_dir = self.settings.work_dir is None
        self.work_dir = self.settings.work_dir or Path(tempfile.mkdtemp(prefix="mlax-console-"))
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.work_dir.chmod(0o700)
        self.lock = threading.Lock()
        # Per-page state a module keeps (match results, transfers), by name.
        self.state: dict[str, Any] = {}
        from node.console import pages

        pages.register(self)

    # -- addresses ------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls else "http"

    @property
    def cookie_name(self) -> str:
        # Browsers share cookies between the ports of a host: one name per console.
        base = f"mlax_console_{self.settings.port}"
        return f"__Host-{base}" if self.settings.tls else base

    @property
    def hosts(self) -> list[str]:
        """The Host names answered: the listening address (loopback names for loopback)
        and the operator's `--allow-host` names. Listening on every interface with no
        name given answers any Host (the warning at start-up says so)."""
        host = self.settings.host
        extra = set(self.settings.extra_hosts)
        if host in ("0.0.0.0", "::"):  # noqa: S104 - the operator chose every interface
            return sorted({"127.0.0.1", "localhost", *extra}) if extra else ["*"]
        names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
        return sorted(names | extra)

    def origins(self, request: Request) -> frozenset[str]:
        """The origins this console's own pages have: its host names (an `--allow-host`
        name also as a TLS proxy in front of it shows it), and the Host the request names
        (already checked against them; any, when listening everywhere)."""
        port = self.settings.port
        named = {f"{self.scheme}://{h}:{port}" for h in self.hosts if h != "*"}
        for h in self.settings.extra_hosts:
            named |= {f"https://{h}", f"http://{h}"}
        host = request.headers.get("host")
        return frozenset(named | ({f"{self.scheme}://{host}"} if host else set()))

    def login_url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::"):  # noqa: S104
            host = "127.0.0.1"
        token = self.sessions.new_login_token()
        return f"{self.scheme}://{host}:{self.settings.port}/login?token={token}"

    def announce_login(self) -> None:
        self.announce(self.login_url())

    # -- calls to the node ----------------------------------------------------------------

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A blocking SDK call on a worker thread."""
        return await run_in_threadpool(fn, *args, **kwargs)

    # -- rendering ------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        session: Session | None,
        template: str,
        context: Mapping[str, Any] | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        flashes = list(session.flashes) if session else []
        if session:
            session.flashes.clear()
        ctx = {
            "request": request,
            "me": self.me,
            "officer": self.officer,
            "role": self.role,
            "csrf": session.csrf if session else "",
            "csrf_field": CSRF_FIELD,
            "nav": [n for n in NAV if self.role in n.roles] if session else [],
            "path": request.url.path,
            "flashes": flashes,
            **(context or {}),
        }
        html = self.env.get_template(template).render(ctx)
        return HTMLResponse(html, status_code=status)

    def refusal(
        self, request: Request, session: Session | None, message: str, status: int
    ) -> Response:
        """A refusal as the page's script or the officer reads it: one sentence as plain
        text to a request that asked for JSON, else the error page."""
        if "application/json" in request.headers.get("accept", ""):
            return _plain(shown(message, markup=False), status)
        return self.render(request, session, "error.html", {"message": message}, status)

    # -- pages ----------------------------------------------------------------------------

    def page(
        self, path: str, methods: tuple[str, ...] = ("GET",), name: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Register a handler for `path`: signed-in officers only, CSRF-checked, refusals
        shown as one sentence."""

        def register(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def endpoint(request: Request) -> Response:
                session = self.sessions.get(request.cookies.get(self.cookie_name))
                if session is None:
                    if request.method in SAFE_METHODS and "json" not in request.headers.get(
                        "accept", ""
                    ):
                        return self.render(request, None, "signin.html", status=401)
                    return _plain("Your console session has ended; sign in again.", 401)
                if request.method not in SAFE_METHODS:
                    # The origin first: nothing another site sends is even parsed.
                    if not same_origin(request.headers, self.origins(request)):
                        log.warning("console_cross_site_refused", route=path)
                        return _plain("This request came from another site; it was refused.", 403)
                    presented = request.headers.get(CSRF_HEADER)
                    if presented is None and "form" in request.headers.get("content-type", ""):
                        try:
                            # Parsed once, with the route's limits: handlers get this form.
                            form = await request.form(**self.form_limits(request.url.path))
                        except MultiPartException as e:
                            return _plain(f"The form was refused: {e.message}.", 400)
                        value = form.get(CSRF_FIELD)
                        presented = value if isinstance(value, str) else None
                    if not csrf_ok(session, presented):
                        log.warning("console_csrf_refused", route=path)
                        return _plain(
                            "This form has expired or did not come from this console; "
                            "reload the page and try again.",
                            403,
                        )
                try:
                    return await handler(self, request, session)
                except MultiPartException as e:
                    return _plain(f"The form was refused: {e.message}.", 400)
                except Refused as e:
                    return self.refusal(request, session, e.message, e.status)
                except NodeCallError as e:
                    log.info("console_call_refused", route=path, status=e.code.name)
                    return self.refusal(request, session, str(e), _HTTP_STATUS.get(e.code, 502))
                except OversizedError as e:
                    return self.refusal(request, session, str(e), 413)
                except MlaxError as e:
                    return self.refusal(request, session, str(e), 400)

            self.routes.append(Route(path, endpoint, methods=list(methods), name=name))
            return handler

        return register

    def build(self) -> ASGIApp:
        """The ASGI application (what uvicorn serves and tests drive). The security
        headers wrap everything, Starlette's own 500 page included."""
        routes: list[BaseRoute] = [
            Route("/login", self._login, methods=["GET"]),
            Route("/logout", self._logout, methods=["POST"]),
            Route("/", self._home, methods=["GET"]),
            *self.routes,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        app = Starlette(
            routes=routes,
            middleware=[
                Middleware(BodyLimits, limit_of=self.body_limit),
                Middleware(TrustedHostMiddleware, allowed_hosts=self.hosts),
            ],
            exception_handlers={404: self._not_found, 405: self._not_allowed},
        )
        return SecurityHeaders(app)

    def body_limit(self, path: str) -> int:
        """The largest body a route takes: only the routes that receive files take more
        than a form's worth, matched by their whole path."""
        s = self.settings
        if _EVIDENCE_ROUTE.fullmatch(path):
            return s.max_upload_bytes
        if path == "/audit/verify":
            return s.max_export_bytes
        if path == "/match/batch":
            return s.max_csv_bytes
        return s.max_form_bytes

    def form_limits(self, path: str) -> dict[str, int]:
        """How a route's form may be parsed: files only where a route takes them (at most
        two), few fields beside a file, every non-file part within a form's size."""
        takes_files = path == "/audit/verify" or path == "/match/batch"
        if _EVIDENCE_ROUTE.fullmatch(path) or takes_files:
            return {"max_files": 2, "max_fields": 20, "max_part_size": self.settings.max_form_bytes}
        return {"max_files": 0, "max_fields": 5000, "max_part_size": self.settings.max_form_bytes}

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- sign-in --------------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        sid = self.sessions.login(request.query_params.get("token", ""))
        if sid is None:
            log.warning("console_login_refused")
            return self.render(request, None, "signin.html", {"spent": True}, status=401)
        log.info("console_login", officer=self.officer)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            self.cookie_name,
            sid,
            httponly=True,
            samesite="strict",
            secure=self.settings.tls,
            path="/",
        )
        return response

    async def _logout(self, request: Request) -> Response:
        sid = request.cookies.get(self.cookie_name)
        session = self.sessions.get(sid)
        if session is None:
            return self.render(request, None, "signin.html", status=401)
        if not same_origin(request.headers, self.origins(request)):
            return _plain("This request came from another site; it was refused.", 403)
        try:
            form = await request.form(**self.form_limits(request.url.path))
        except MultiPartException as e:
            return _plain(f"The form was refused: {e.message}.", 400)
        token = form.get(CSRF_FIELD)
        if not csrf_ok(session, token if isinstance(token, str) else None):
            return _plain("This form did not come from this console; it was refused.", 403)
        self.sessions.logout(sid)
        log.info("console_logout", officer=self.officer)
        self.announce_login()
        response = self.render(request, None, "signin.html", {"signed_out": True})
        response.delete_cookie(
            self.cookie_name,
            path="/",
            secure=self.settings.tls,
            httponly=True,
            samesite="strict",
        )
        return response

    async def _home(self, request: Request) -> Response:
        session = self.sessions.get(request.cookies.get(self.cookie_name))
        if session is None:
            return self.render(request, None, "signin.html", status=401)
        first = next((n for n in NAV if self.role in n.roles), NAV[-1])
        return RedirectResponse(first.href, status_code=303)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        session = self.sessions.get(request.cookies.get(self.cookie_name))
        return self.refusal(request, session, "There is no such page in this console.", 404)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return _plain("This page does not take that kind of request.", 405)


def _plain(message: str, status: int) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain")


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def flash(session: Session, message: str, kind: str = "ok") -> None:
    session.flashes.append((kind, message))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


__all__ = [
    "Console",
    "ConsoleSettings",
    "Refused",
    "flash",
    "format_time",
    "http_status",
    "json_response",
    "redirect",
]
