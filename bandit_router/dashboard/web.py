"""The dashboard's HTTP server: the page, its script and style, and the JSON, GET only.

A ``ThreadingHTTPServer`` of the standard library in a daemon thread, like prometheus-client's
/metrics server: static files never touch the event loop, and the JSON is computed on the loop
by ``DashboardData`` (at most once a second) and awaited from the request's thread, bounded by
``JSON_TIMEOUT``. Under ``--workers N`` each worker binds the port with SO_REUSEPORT.

Read-only by construction: GET and HEAD are the only methods (anything else is 405), and no
path changes anything, so no token is asked for. The page carries a Content-Security-Policy
that allows only its own origin: no CDN, no inline script, works on an isolated network.
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

log = logging.getLogger(__name__)

JSON_PATH = "/api/v1/dashboard"
JSON_TIMEOUT = 10.0
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


def static_files() -> dict[str, tuple[bytes, str]]:
    """Path -> (body, content type), read once from the package."""
    folder = resources.files("bandit_router.dashboard") / "static"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = True  # --workers N: every worker serves the same port

    def __init__(
        self, address: tuple[str, int], loop: asyncio.AbstractEventLoop, source: DocumentSource
    ) -> None:
        self.loop = loop
        self.source = source
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
            self.send_header("Allow", "GET, HEAD")
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

    def _refuse(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard is read-only (GET only)")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse


def start_dashboard_server(
    host: str, port: int, loop: asyncio.AbstractEventLoop, source: DocumentSource
) -> DashboardServer:
    """Serve in a daemon thread; ``port=0`` picks a free port (``server.server_port``)."""
    server = DashboardServer((host, port), loop, source)
    threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True).start()
    return server
