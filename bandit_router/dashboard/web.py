"""The dashboard's HTTP server: the page, its script and style, and the JSON, GET only.

A ``ThreadingHTTPServer`` of the standard library in a daemon thread, like prometheus-client's
/metrics server: static files never touch the event loop, and the JSON is computed on the loop
by ``DashboardData`` (at most once a second) and awaited from the request's thread, bounded by
``JSON_TIMEOUT``. Under ``--workers N`` each worker binds the port with SO_REUSEPORT.

Read-only unless a request carries an operator token: GET and HEAD read, and the only thing
that changes state is a POST of JSON to ``ACTIONS_PATH`` with ``authorization: Bearer
<token>`` (``actions.DashboardActions``: the Admin service's checks, operations and audit).
Every other method or path is 405/404. The page carries a Content-Security-Policy that
allows only its own origin: no CDN, no inline script, works on an isolated network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from bandit_router.errors import BanditRouterError

log = logging.getLogger(__name__)

JSON_PATH = "/api/v1/dashboard"
ACTIONS_PATH = "/api/v1/actions"
JSON_TIMEOUT = 10.0
#: Largest action body read (an action is a few short strings).
MAX_ACTION_BYTES = 4096
#: gRPC status code name of a refusal -> the HTTP status the page gets.
HTTP_STATUS_OF = {
    "INVALID_ARGUMENT": HTTPStatus.BAD_REQUEST,
    "UNAUTHENTICATED": HTTPStatus.UNAUTHORIZED,
    "PERMISSION_DENIED": HTTPStatus.FORBIDDEN,
    "NOT_FOUND": HTTPStatus.NOT_FOUND,
    "FAILED_PRECONDITION": HTTPStatus.CONFLICT,
    "ABORTED": HTTPStatus.CONFLICT,
    "UNAVAILABLE": HTTPStatus.SERVICE_UNAVAILABLE,
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}

DocumentSource = Callable[[], Coroutine[Any, Any, dict[str, Any]]]
ActionSink = Callable[[str | None, dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]


def static_files() -> dict[str, tuple[bytes, str]]:
    """Path -> (body, content type), read once from the package."""
    folder = resources.files("bandit_router.dashboard") / "static"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = True  # --workers N: every worker serves the same port

    def __init__(
        self,
        address: tuple[str, int],
        loop: asyncio.AbstractEventLoop,
        source: DocumentSource,
        act: ActionSink | None = None,
    ) -> None:
        self.loop = loop
        self.source = source
        self.act = act
        self.files = static_files()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "bandit-router-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard %s " + format, self.address_string(), *args)

    def _send(self, status: HTTPStatus, body: bytes, kind: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            allowed = "POST" if self.path.split("?", 1)[0] == ACTIONS_PATH else "GET, HEAD"
            self.send_header("Allow", allowed)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, head: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, "application/json", head)

    def _get(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path in self.server.files:
            body, kind = self.server.files[path]
            self._send(HTTPStatus.OK, body, kind, head)
            return
        if path != JSON_PATH:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path[:200]}", head)
            return
        future = asyncio.run_coroutine_threadsafe(self.server.source(), self.server.loop)
        try:
            document = future.result(JSON_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the report took too long; retry", head)
            return
        except Exception as error:  # the store is down, ...: the page says so and retries
            log.warning("dashboard document failed: %s", error)
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"cannot read the state: {error}", head)
            return
        body = json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
        self._send(HTTPStatus.OK, body, "application/json", head)

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_POST(self) -> None:
        """An operator action (``ACTIONS_PATH``): JSON body, bearer token, Admin's rules."""
        if self.path.split("?", 1)[0] != ACTIONS_PATH or self.server.act is None:
            self._refuse()
            return
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the action as application/json")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return
        if not 0 <= length <= MAX_ACTION_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_ACTION_BYTES} bytes")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            self._error(HTTPStatus.BAD_REQUEST, "the body is not JSON")
            return
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            return
        future = asyncio.run_coroutine_threadsafe(
            self.server.act(self.headers.get("Authorization"), body), self.server.loop
        )
        try:
            result = future.result(JSON_TIMEOUT)
        except FutureTimeout:
            future.cancel()
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the action took too long; check, retry")
            return
        except BanditRouterError as error:
            status = HTTP_STATUS_OF.get(error.code, HTTPStatus.BAD_REQUEST)
            body = {"error": str(error), "code": error.code, "field": error.field}
            self._send(status, json.dumps(body).encode(), "application/json")
            return
        except Exception as error:  # the store is down, ...: say so, never a traceback
            log.warning("dashboard action failed: %s", error)
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"cannot act now: {error}")
            return
        self._send(HTTPStatus.OK, json.dumps(result).encode(), "application/json")

    def _refuse(self) -> None:
        self._error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"the dashboard is read-only (GET) except POST {ACTIONS_PATH} with an operator token",
        )

    do_PUT = do_DELETE = do_PATCH = _refuse


def start_dashboard_server(
    host: str,
    port: int,
    loop: asyncio.AbstractEventLoop,
    source: DocumentSource,
    act: ActionSink | None = None,
) -> DashboardServer:
    """Serve in a daemon thread; ``port=0`` picks a free port (``server.server_port``)."""
    server = DashboardServer((host, port), loop, source, act)
    threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True).start()
    return server
