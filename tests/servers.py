"""Real parts for tests: a redis-server on a free loopback port, and bandit-router servers.

``ServerThread`` runs the real server (``build_app``) on its own event loop in a thread, for
fast tests that talk to it over a real gRPC channel; ``ServerProcess`` runs ``bandit-router
serve`` as a separate process, for tests that need several replicas, signals or restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.serving.config import ServerConfig

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(
    target: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until the server's standard health check says SERVING."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as error:
                last = error
            time.sleep(0.05)
    raise TimeoutError(f"{target} not SERVING after {timeout}s ({last})")


class RedisServer:
    """A throwaway redis-server; a missing binary is a failure, never a skip."""

    def __init__(self, appendonly: bool = True, extra_args: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: the integration tests need a real one "
                "(Debian: apt-get install redis-server; .ci/run installs it)"
            )
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="br-redis-")
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
                "--protected-mode",
                "yes",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerThread:
    """The real server in-process on its own loop (embedded store unless redis_url is given)."""

    def __init__(self, **config: Any) -> None:
        self.config = ServerConfig(listen=f"127.0.0.1:{free_port()}", **config)
        self.target = self.config.listen
        self.loop = asyncio.new_event_loop()
        self.app: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        from bandit_router.serving.server import build_app

        self._thread.start()
        self.app = asyncio.run_coroutine_threadsafe(build_app(self.config), self.loop).result(30)
        asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(30)
        wait_serving(self.target)
        return self

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (e.g. to read the store directly)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.call(self.app.stop(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class ServerProcess:
    """``python -m bandit_router serve`` as a child process (a separate replica)."""

    def __init__(
        self, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        handle, name = tempfile.mkstemp(prefix="br-server-", suffix=".log")
        self.log = os.fdopen(handle, "wb")
        self.log_path = name

    def start(self, wait: bool = True) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bandit_router", "serve", "--listen", self.target, *self.args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        if wait:
            wait_serving(self.target, proc=self.proc)
        return self

    def output(self) -> str:
        return Path(self.log_path).read_text()

    def signal(self, signum: int) -> int | None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def server_processes(
    count: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[list[ServerProcess]]:
    servers = [ServerProcess(*args, env=env) for _ in range(count)]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            assert server.proc is not None
            wait_serving(server.target, proc=server.proc)
        yield servers
    finally:
        for server in servers:
            server.stop()
