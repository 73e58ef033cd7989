"""Starting the server, with every known start-up failure turned into one clear line.

An operator whose server does not start needs the reason, not a 65-line traceback through
asyncio and redis-py (and an orchestrator's log view often shows only the last line).
``start_app`` builds and starts the app and turns what can go wrong at start (Redis
unreachable or refusing, a bad Redis URL, a port in use, an unreadable TLS, tokens or
experiments file) into ``StartupError`` with a one-line message; ``report`` writes it as
``error: ...`` or, with JSON logs, one JSON record; the process exits with status 2.

``--wait-for-redis SECONDS`` makes the first connection patient: an orchestrated start
(Redis and the router started together) retries with exponential backoff instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from typing import TYPE_CHECKING, TextIO

from redis.exceptions import (
    AuthenticationError,
    MovedError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from bandit_router.errors import BanditRouterError
from bandit_router.serving.config import ConfigError, ServerConfig
from bandit_router.store.permissions import StoreMisconfigured
from bandit_router.store.redis_store import Store
from bandit_router.telemetry.logs import JsonLinesFormatter, clip, redact_text

# Nothing here may import prometheus_client at module level: it reads
# PROMETHEUS_MULTIPROC_DIR once, at import, and ``cmd_serve`` sets that variable (for
# ``--workers N``) after importing this module.

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from bandit_router.serving.server import App

log = logging.getLogger(__name__)

EXIT_STARTUP = 2
FIRST_RETRY = 0.1
MAX_RETRY = 2.0


class StartupError(Exception):
    """The server cannot start; the message is the whole story, on one line."""


def _one_line(text: str) -> str:
    return clip(" ".join(text.split()), 500)


def describe(error: BaseException, config: ServerConfig) -> str | None:
    """One line for a known start-up failure; None for anything else (a bug: traceback)."""
    store = config.redacted_redis_url()
    if isinstance(error, StoreMisconfigured):
        return f"Redis at {store}: {error}"
    if isinstance(error, AuthenticationError):
        return f"Redis at {store} refused the credentials: {error}"
    if isinstance(error, MovedError):
        return (
            f"Redis at {store} answered MOVED: it is a Redis Cluster node; use --redis-url "
            "redis+cluster://host:port[,host:port...]"
        )
    if isinstance(error, ResponseError):
        return f"Redis at {store} refused a start-up command: {error}"
    if isinstance(error, RedisClusterException):
        if "not enabled" in str(error):
            return (
                f"Redis at {store} is not a Redis Cluster node (cluster mode is disabled); "
                "use --redis-url redis://host:port or redis+sentinel://..."
            )
        return f"cannot reach the Redis Cluster at {store}: {error}"
    if isinstance(error, RedisError | ConnectionError | TimeoutError) and config.redis_url:
        hint = (
            f"gave up after --wait-for-redis {config.wait_for_redis:g} s"
            if config.wait_for_redis
            else "--wait-for-redis SECONDS waits for it to come up"
        )
        return f"cannot reach Redis at {store}: {error or type(error).__name__} ({hint})"
    if isinstance(error, ValueError) and "Redis URL" in str(error):
        return f"--redis-url: {error}"
    if isinstance(error, RuntimeError) and "Failed to bind" in str(error):
        return f"cannot listen on {config.listen}: the address is in use or not available here"
    if isinstance(error, BanditRouterError | ConfigError | OSError):
        return str(error)
    return None


def check_listen_address(listen: str) -> None:
    """OSError if ``listen`` (host:port) cannot be bound, the way gRPC binds it.

    gRPC's own failure is a RuntimeError without the reason plus a C-core log line on
    stderr that no Python setting silences; binding first (with SO_REUSEPORT, as gRPC does,
    so replicas sharing the port still pass) gives the operating system's reason instead.
    Addresses other than host:port (``unix:``...) are left to gRPC.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or listen.startswith("unix"):
        return
    bind_host = host.strip("[]") or None
    try:
        infos = socket.getaddrinfo(
            bind_host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise OSError(f"cannot listen on {listen}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if hasattr(socket, "SO_REUSEPORT"):
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise OSError(f"cannot listen on {listen}: {error.strerror}") from None


async def wait_for_redis(store: Store, config: ServerConfig) -> None:
    """Return once Redis answers a PING; retry with backoff for ``config.wait_for_redis``
    seconds, then raise the last error (one attempt when that is 0)."""
    deadline = time.monotonic() + config.wait_for_redis
    delay = FIRST_RETRY
    attempts = 0
    while True:
        attempts += 1
        try:
            await store.ping()
            if attempts > 1:
                log.info("Redis answers after %d attempts", attempts)
            return
        except (RedisError, RedisClusterException, OSError) as error:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if attempts == 1:
                log.warning(
                    "Redis at %s does not answer (%s); retrying for up to %.0f s",
                    config.redacted_redis_url(),
                    error,
                    config.wait_for_redis,
                )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, MAX_RETRY)


async def start_app(config: ServerConfig, registry: CollectorRegistry) -> App:
    """Build and start the app (and the metrics endpoint); StartupError on known failures."""
    from bandit_router.serving.server import build_app
    from bandit_router.telemetry.metrics import exposition_registry, start_metrics_http_server

    store: Store | None = None
    try:
        if config.metrics_address and config.workers == 1:
            host, _, port = config.metrics_address.rpartition(":")
            if not port.isdigit():
                raise ConfigError(
                    f"--metrics-address: expected host:port, got {config.metrics_address!r}"
                )
            start_metrics_http_server(host or "127.0.0.1", int(port), exposition_registry(registry))
        check_listen_address(config.listen)
        store = Store.from_url(config.redis_url, timeout=config.redis_timeout)
        if config.redis_url:
            await wait_for_redis(store, config)
        app = await build_app(config, store, registry=registry)
        await app.start()
        return app
    except Exception as error:
        message = describe(error, config)
        if message is None:
            raise
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()
        raise StartupError(_one_line(message)) from None


def report(message: str, json_lines: bool, stream: TextIO | None = None) -> None:
    """Write a start-up failure as ``error: ...`` or one JSON log record; never a secret."""
    stream = stream or sys.stderr
    text = redact_text(message)
    if json_lines:
        record = logging.LogRecord("bandit_router", logging.ERROR, __file__, 0, text, None, None)
        print(JsonLinesFormatter().format(record), file=stream, flush=True)
    else:
        print(f"error: {text}", file=stream, flush=True)


def preflight(config: ServerConfig) -> None:
    """What ``--workers N`` checks once, before forking, so a failure is one line rather
    than one per worker: the listen address, Redis (waiting as configured), the files."""
    from bandit_router.operations.auth import load_tokens
    from bandit_router.operations.experiment_files import load_experiments

    async def reach_redis() -> None:
        store = Store.from_url(config.redis_url, timeout=config.redis_timeout)
        try:
            await wait_for_redis(store, config)
            await store.check_topology(config.wait_replicas)
        finally:
            with contextlib.suppress(Exception):
                await store.close()

    try:
        check_listen_address(config.listen)
        if config.tokens_file:
            load_tokens(config.tokens_file, None)
        if config.experiments_file:
            load_experiments(config.experiments_file)
        if config.redis_url:
            asyncio.run(reach_redis())
    except Exception as error:
        message = describe(error, config)
        if message is None:
            raise
        raise StartupError(_one_line(message)) from None
