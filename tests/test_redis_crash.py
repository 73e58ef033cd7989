"""Redis killed (SIGKILL) three times under Reward traffic, with ``appendfsync always``: no
acknowledged reward is lost and none is counted twice.

Callers retry every reward until it is acknowledged (APPLIED, or DUPLICATE when an earlier
attempt committed but its answer was lost with the connection); afterwards the statistics
must count each acknowledged decision exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from bandit_router.client import BanditClient

from .servers import RedisServer, ServerThread

pytestmark = pytest.mark.integration

DECISIONS = 300
KILLS = 3


def test_sigkilled_redis_loses_no_acknowledged_reward_and_counts_none_twice() -> None:
    redis = RedisServer(appendonly=True).start()  # appendfsync always (tests/servers.py)
    server = ServerThread(redis_url=redis.url, refresh_interval=0.05, redis_timeout=0.5).start()
    acknowledged: set[str] = set()
    attempts = {"failed": 0}
    lock = threading.Lock()
    try:
        with BanditClient(server.target, timeout=2.0, max_attempts=1) as client:
            client.create_experiment("crash", ["a", "b"], reward_window=600)
            decisions = [client.route("crash").decision_id for _ in range(DECISIONS)]

            def reward_until_acknowledged(decision_id: str) -> None:
                while True:
                    try:
                        outcome = client.reward(decision_id, 1.0)
                    except grpc.RpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                        with lock:
                            attempts["failed"] += 1
                        time.sleep(0.05)
                        continue
                    assert outcome in {"APPLIED", "DUPLICATE"}
                    with lock:
                        acknowledged.add(decision_id)
                    return

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(reward_until_acknowledged, d) for d in decisions]
                for kill in range(KILLS):
                    while len(acknowledged) < DECISIONS * (kill + 1) // (KILLS + 1):
                        time.sleep(0.005)
                    assert redis.proc is not None
                    redis.proc.send_signal(signal.SIGKILL)
                    redis.proc.wait(10)
                    time.sleep(0.2)
                    redis.start()  # same port, same directory: recovers from its AOF
                for future in futures:
                    future.result(timeout=120)
            deadline = time.monotonic() + 10
            while True:  # the cache may still hold a pre-crash copy for a moment
                stats = client.get_experiment("crash").statistics
                total = sum(s.sum for s in stats)
                if total == len(acknowledged) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        server.stop()
        redis.stop()
    assert len(acknowledged) == DECISIONS
    assert attempts["failed"] > 0  # the kills did hit rewards in flight
    lost = len(acknowledged) - total
    assert lost == 0, f"{lost} acknowledged rewards lost (negative: counted twice)"
    assert sum(s.n for s in stats) == DECISIONS
