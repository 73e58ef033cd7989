"""A 10-second Redis outage three ways (frozen by SIGSTOP, killed by SIGKILL and restarted,
cut off by a TCP proxy that blackholes): Route stays available from the cache, every
Reward either succeeds or answers UNAVAILABLE before its deadline, and after the outage
each reward, retried, is credited exactly once."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from bandit_router.client import BanditClient

from .servers import RedisServer, ServerThread, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_SECONDS = 10.0
REWARD_DEADLINE = 1.0


class BlackholeProxy:
    """A TCP proxy to Redis on loopback; ``blackhole`` keeps every connection open but
    forwards nothing (a network partition, the hardest case: no reset, no error)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blackholed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                data = source.recv(65536)
                if not data:
                    break
                while self.blackholed.is_set() and not self._stop.is_set():
                    time.sleep(0.01)  # hold the bytes: never delivered while partitioned
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.mark.parametrize("fault", ["sigstop", "sigkill", "blackhole"])
def test_ten_second_outage(redis: RedisServer, fault: str) -> None:
    proxy = BlackholeProxy(redis.port) if fault == "blackhole" else None
    url = proxy.url if proxy is not None else redis.url
    server = ServerThread(redis_url=url, refresh_interval=0.05).start()
    routes: Counter[str] = Counter()
    rewards: Counter[str] = Counter()
    late: list[float] = []
    try:
        with BanditClient(server.target, timeout=REWARD_DEADLINE, max_attempts=1) as client:
            client.create_experiment("outage", ["a", "b"], reward_window=600)
            time.sleep(0.2)
            pending: list[str] = []
            assert redis.proc is not None
            if fault == "sigstop":
                redis.proc.send_signal(signal.SIGSTOP)
            elif fault == "sigkill":
                redis.proc.send_signal(signal.SIGKILL)
                redis.proc.wait(10)
            else:
                assert proxy is not None
                proxy.blackholed.set()
            ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < ends:
                try:
                    decision = client.route("outage")
                    routes["OK"] += 1
                    pending.append(decision.decision_id)
                except grpc.RpcError as error:
                    routes[error.code().name] += 1
                if len(pending) % 20 == 0 and pending:  # a Reward every 20 Routes
                    started = time.monotonic()
                    try:
                        rewards[client.reward(pending[-1], 1.0)] += 1
                    except grpc.RpcError as error:
                        rewards[error.code().name] += 1
                        if time.monotonic() - started >= REWARD_DEADLINE:
                            late.append(time.monotonic() - started)
                time.sleep(0.01)
            if fault == "sigstop":
                redis.proc.send_signal(signal.SIGCONT)
            elif fault == "sigkill":
                redis.start()  # same port and directory: recovers from its AOF
            else:
                assert proxy is not None
                proxy.blackholed.clear()
            # After the outage every decision's reward, retried until acknowledged, counts
            # exactly once (the ones acknowledged during the outage included).
            credited = Counter[str]()
            deadline = time.monotonic() + 30
            for decision_id in pending:
                while True:
                    try:
                        credited[client.reward(decision_id, 1.0, timeout=3.0)] += 1
                        break
                    except grpc.RpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                        assert time.monotonic() < deadline, "store did not come back"
                        time.sleep(0.1)
            time.sleep(0.3)
            total = sum(s.n for s in client.get_experiment("outage").statistics)
    finally:
        server.stop()
        if proxy is not None:
            proxy.close()
    print(f"{fault}: routes {dict(routes)}, rewards {dict(rewards)}")
    assert set(routes) == {"OK"}, routes  # Route never waits on Redis
    assert routes["OK"] > 100
    assert set(rewards) <= {"UNAVAILABLE", "APPLIED"}, rewards
    assert rewards["UNAVAILABLE"] > 0  # the outage was real
    assert late == [], late  # every refusal came before the caller's deadline
    assert total == len(pending)  # each decision credited once, none twice
    assert set(credited) <= {"APPLIED", "DUPLICATE"}
