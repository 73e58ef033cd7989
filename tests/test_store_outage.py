"""A hung Redis: Route keeps answering from the cache, Reward fails fast and loses nothing."""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from bandit_router.client import BanditClient

from .servers import RedisServer, ServerThread

pytestmark = pytest.mark.integration


def test_route_serves_and_reward_fails_fast_while_redis_hangs() -> None:
    redis = RedisServer().start()
    server = ServerThread(redis_url=redis.url, refresh_interval=0.05, redis_timeout=0.5).start()
    try:
        with BanditClient(server.target, timeout=2.0, max_attempts=1) as client:
            client.create_experiment("outage", ["a", "b"], reward_window=60)
            time.sleep(0.2)
            pending = client.route("outage")
            assert redis.proc is not None
            redis.proc.send_signal(signal.SIGSTOP)  # hung, not dead: the worst case
            try:
                started = time.monotonic()
                for _ in range(20):
                    assert client.route("outage").arm in {"a", "b"}
                assert (time.monotonic() - started) / 20 < 0.5  # no call waited on Redis
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as error:
                    client.reward(pending.decision_id, 1.0, timeout=1.0)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
                assert time.monotonic() - started < 1.5
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            # The refused Reward is counted as a store error (exported at the next metrics
            # flush, a fraction of a second later: the hot path buffers its counts).
            errors = None
            deadline = time.monotonic() + 5
            while errors != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
                errors = server.app.metrics.registry.get_sample_value(
                    "bandit_router_store_errors_total", {"operation": "reward"}
                )
            assert errors == 1
            # The client's retry after the outage is safe: credited exactly once.
            deadline = time.monotonic() + 10
            outcome = None
            while time.monotonic() < deadline and outcome is None:
                try:
                    outcome = client.reward(pending.decision_id, 1.0)
                except grpc.RpcError:
                    time.sleep(0.2)
            assert outcome in {"APPLIED", "DUPLICATE"}
            assert client.reward(pending.decision_id, 1.0) == "DUPLICATE"
            stats = {s.arm: s.n for s in client.get_experiment("outage").statistics}
            assert stats[pending.arm] == 1.0
    finally:
        server.stop()
        redis.stop()
