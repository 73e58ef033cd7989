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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.bench.fixtures import free_cluster_port
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

    def __init__(
        self,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        choose_port: Callable[[], int] | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: the integration tests need a real one "
                "(Debian: apt-get install redis-server; .ci/run installs it)"
            )
        self.binary = binary
        # A port this object chose may be taken (by another test worker, or as an outgoing
        # connection's ephemeral port) before redis-server binds it: the first start then
        # picks another. A port the caller gave is kept (tests restart on the same port).
        self._choose_port = None if port else (choose_port or free_port)
        self.port = port or (choose_port or free_port)()
        self._started = False
        self.dir = tempfile.mkdtemp(prefix="br-redis-")
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        for _ in range(5):
            if self._spawn():
                self._started = True
                return self
            if self._choose_port is None or self._started:
                break
            self.port = self._choose_port()  # its port was taken: try another
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _spawn(self) -> bool:
        """Start redis-server; True once it answers on its port and is still running a
        moment later (one that failed to bind exits at once, while its port may answer
        for another process)."""
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
        while time.monotonic() < deadline and self.proc.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                time.sleep(0.05)
                return self.proc.poll() is None
            time.sleep(0.02)
        if self.proc.poll() is None:  # running but never answering: not a port clash
            self.proc.kill()
            self.proc.wait(10)
        return False

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
    count: int,
    *args: str,
    env: dict[str, str] | None = None,
    each: Sequence[Sequence[str]] = (),
) -> Iterator[list[ServerProcess]]:
    """``count`` server processes with ``args``, the i-th also with ``each[i]`` if given (its
    own metrics port, say), started together and each waited for until it serves."""
    servers = [
        ServerProcess(*args, *(each[i] if i < len(each) else ()), env=env) for i in range(count)
    ]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            assert server.proc is not None
            try:
                wait_serving(server.target, proc=server.proc)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{error}; its output: {server.output()[-2000:]}") from None
        yield servers
    finally:
        for server in servers:
            server.stop()


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    """``redis-cli -p port args...``; its stdout (a failure raises, with the output)."""
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed (Debian: apt-get install redis-tools)")
    done = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


#: A master waits ``repl-diskless-sync-delay`` (5 s by default) for more replicas before it
#: starts a full sync; a failover test restarts the killed node as a replica and would
#: otherwise measure that wait rather than the failover (docs/operating.md says so).
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


class RedisCluster:
    """A real Redis Cluster on loopback: 3 masters and 3 replicas, AOF with fsync always.

    ``cluster-node-timeout`` is short (1000 ms) so a failover completes within a test. Every
    node is a ``RedisServer``; ``kill_master_of(key)`` SIGKILLs the master holding a key.
    """

    def __init__(self, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [
            RedisServer(
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--cluster-config-file",
                    "nodes.conf",
                    # The other shards keep taking writes while one fails over (Redis's
                    # default stops the whole cluster); docs/operating.md recommends it.
                    "--cluster-require-full-coverage",
                    "no",
                    *NO_SYNC_DELAY,
                ],
                choose_port=free_cluster_port,
            )
            for _ in range(2 * masters)
        ]

    @property
    def url(self) -> str:
        """The seeds: every node, as an operator would list them."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        try:
            return self._start()
        except BaseException:
            self.stop()  # no half-started cluster outlives a failed start
            raise

    def _start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        _cli(
            self.nodes[0].port,
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "1",
            "--cluster-yes",
            timeout=30,
        )
        self.wait_healthy()
        return self

    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every live node says cluster_state:ok and each master has its replica
        connected (so ``--wait-replicas 1`` can be met from the first call)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            states = [_cli(n.port, "cluster", "info") for n in self.live_nodes()]
            last = "; ".join(s.split("\n", 1)[0] for s in states)
            roles = [_cli(n.port, "info", "replication") for n in self.live_nodes()]
            masters = [r for r in roles if "role:master" in r]
            if (
                all("cluster_state:ok" in s for s in states)
                and len(masters) == len(self.nodes) // 2
                and all("state=online" in r for r in masters)
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster not healthy after {timeout}s: {last}")

    def master_port_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot now; 0 while none does."""
        slot = int(_cli(self.live_nodes()[0].port, "cluster", "keyslot", key).strip())
        for line in _cli(self.live_nodes()[0].port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return port
        return 0  # no live master holds it (a failover in progress)

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (no shutdown, no final fsync)."""
        for node in self.nodes:
            if node.port == port and node.proc is not None:
                node.proc.kill()
                node.proc.wait(10)
                return
        raise KeyError(port)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(10)
            shutil.rmtree(node.dir, ignore_errors=True)


class SentinelGroup:
    """A primary, one replica and three Sentinels watching them as service ``mymaster``.

    Sentinels declare the primary down after ``down_after_ms`` and fail over at once; the
    replica is promoted with everything it acknowledged (``WAIT``)."""

    SERVICE = "mymaster"

    def __init__(self, down_after_ms: int = 1000) -> None:
        self.down_after_ms = down_after_ms
        self.primary = RedisServer(extra_args=NO_SYNC_DELAY)
        self.replica = RedisServer(extra_args=NO_SYNC_DELAY)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinel_dirs = [tempfile.mkdtemp(prefix="br-sentinel-") for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}"

    def start(self) -> SentinelGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()  # no half-started group outlives a failed start
            raise

    def _start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.extra_args += ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica.start()
        for index in range(len(self.sentinel_ports)):
            self._launch_sentinel(index)
        self.wait_replicated()
        return self

    def _launch_sentinel(self, index: int) -> None:
        """Start Sentinel ``index`` and wait until it answers as a Sentinel. A port picked
        free can be taken before the Sentinel binds it (other tests share the machine);
        then the Sentinel exits, or another server answers there: retry on a new port."""
        folder = self.sentinel_dirs[index]
        for _ in range(5):
            port = self.sentinel_ports[index]
            config = Path(folder) / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            proc = subprocess.Popen(
                [self.primary.binary, str(config), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    if _cli(port, "sentinel", "myid", timeout=2).strip().isalnum():
                        self.sentinels.append(proc)
                        return
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            self.sentinel_ports[index] = free_port()
        raise RuntimeError(f"Sentinel {index} did not start on any of 5 ports")

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until the primary has its replica online and every Sentinel knows both (a
        Sentinel learns replicas from the primary's INFO, which it asks every 10 s)."""
        deadline = time.monotonic() + timeout
        role, known = "", [""]
        while time.monotonic() < deadline:
            pairs = zip(self.sentinel_ports, self.sentinels, strict=True)
            dead = [f"Sentinel {port}" for port, proc in pairs if proc.poll() is not None]
            for node in (self.primary, self.replica):
                if node.proc is not None and node.proc.poll() is not None:
                    dead.append(f"Redis {node.port}")
            if dead:
                raise RuntimeError(f"exited while starting: {dead}")
            role = _cli(self.primary.port, "info", "replication")
            known = [_cli(p, "sentinel", "replicas", self.SERVICE) for p in self.sentinel_ports]
            if "state=online" in role and all(str(self.replica.port) in k for k in known):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"replica or Sentinels not ready after {timeout}s: primary {role!r}, "
            f"replica {self.replica.port}, Sentinels know {[' '.join(k.split()) for k in known]}"
        )

    def master_port(self) -> int:
        reply = _cli(self.sentinel_ports[0], "sentinel", "get-master-addr-by-name", self.SERVICE)
        return int(reply.split()[1])

    def kill_primary(self) -> int:
        """SIGKILL the current primary; returns its port."""
        port = self.master_port()
        for node in (self.primary, self.replica):
            if node.port == port and node.proc is not None:
                node.proc.kill()
                node.proc.wait(10)
                return port
        raise KeyError(port)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for node in (self.primary, self.replica):
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(10)
            shutil.rmtree(node.dir, ignore_errors=True)
        for folder in self.sentinel_dirs:
            shutil.rmtree(folder, ignore_errors=True)
