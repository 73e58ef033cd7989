"""A store that refuses writes (full, read-only, frozen): every caller hears UNAVAILABLE, the
store errors are logged once per interval, health says NOT_SERVING, and nothing is lost.

Real redis-server processes, broken the way production breaks them.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2

from .servers import RedisServer, ServerThread, free_port

pytestmark = pytest.mark.integration

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def stack() -> Iterator[tuple[RedisServer, ServerThread, BanditClient]]:
    store = RedisServer().start()
    server = ServerThread(redis_url=store.url, refresh_interval=0.05).start()
    client = BanditClient(server.target, timeout=2.0, max_attempts=1)
    try:
        yield store, server, client
    finally:
        client.close()
        server.stop()
        store.stop()


def health(target: str, service: str = "bandit_router.v1.Router") -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=1.0
        )
        return int(reply.status)


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - started


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def refused(call: Callable[[], object], code: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert error.code() == UNAVAILABLE, (error.code(), error.details())
    details = error.details() or ""
    assert code in details and "safe to retry" in details, details
    assert "maxmemory" not in details and "br:" not in details  # no Redis text leaks


@pytest.mark.parametrize("fault", ["OOM", "READONLY"])
def test_store_refusing_writes_is_unavailable_and_unhealthy(
    stack: tuple[RedisServer, ServerThread, BanditClient],
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, server, client = stack
    client.create_experiment("full", ["a", "b"], reward_window=60)
    decision = client.route("full")
    admin = redis.Redis(port=store.port)
    if fault == "OOM":
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
    else:  # what a primary demoted by a failover answers
        admin.replicaof("127.0.0.1", free_port())
    try:
        with caplog.at_level(logging.WARNING, logger="bandit_router.store.errors"):
            for _ in range(20):
                refused(lambda: client.reward(decision.decision_id, 1.0), fault)
            pin = admin_pb2.PinArmRequest(experiment="full", arm="a", reason="test")
            refused(lambda: client.call_admin("PinArm", pin), fault)
        # 21 refusals, one log line: the rest are counted into the next one.
        assert len([r for r in caplog.records if fault in r.getMessage()]) == 1
        wait_for(lambda: health(server.target) == NOT_SERVING, timeout=3.0)
        # Routes keep being answered from the cache meanwhile, so liveness stays SERVING:
        # a liveness probe must not restart a replica that still routes.
        assert client.route("full").arm in {"a", "b"}
        assert health(server.target, "liveness") == SERVING
    finally:
        if fault == "OOM":
            admin.config_set("maxmemory", 0)
        else:
            admin.replicaof("NO", "ONE")
    wait_for(lambda: health(server.target) == SERVING, timeout=3.0)
    # Nothing was written by the refused calls: the retry applies, exactly once.
    assert client.reward(decision.decision_id, 1.0) == "APPLIED"
    assert client.reward(decision.decision_id, 1.0) == "DUPLICATE"
    stats = {s.arm: s.n for s in client.get_experiment("full").statistics}
    assert stats[decision.arm] == 1.0
    # The two Routes' decisions, whose flushes the store refused meanwhile, were sent again
    # until it took them: each is counted once.
    wait_for(lambda: decisions(client, "full") == 2, timeout=3.0)
    time.sleep(0.3)
    assert decisions(client, "full") == 2


def decisions(client: BanditClient, experiment: str) -> int:
    return sum(s.decisions for s in client.get_experiment(experiment).statistics)


def test_frozen_store_unavailable_before_the_deadline_and_unhealthy_in_a_second(
    stack: tuple[RedisServer, ServerThread, BanditClient],
) -> None:
    """SIGSTOP with the default store timeout: the Reward hears UNAVAILABLE before its own
    1 s deadline (not DEADLINE_EXCEEDED), and health leaves SERVING within two 0.5 s probe
    intervals (docs/operating.md: "Health")."""
    store, server, client = stack
    client.create_experiment("frozen", ["a", "b"], reward_window=60)
    decision = client.route("frozen")
    assert store.proc is not None
    store.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        refused(lambda: client.reward(decision.decision_id, 1.0, timeout=1.0), "time")
        assert time.monotonic() - started < 1.0
        took = wait_for(lambda: health(server.target) == NOT_SERVING, timeout=3.0)
        assert took < 1.5, took
    finally:
        store.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: health(server.target) == SERVING, timeout=3.0)
    assert client.reward(decision.decision_id, 1.0, timeout=3.0) in {"APPLIED", "DUPLICATE"}
