"""A decision flush whose reply never came is retried, and each decision is still written
once: its counter, its pending record and its decision-log row.

Redis frozen by SIGSTOP takes the flush's script call into its socket buffer and runs it when
it wakes, long after the server's call timed out and the flush was sent again (on a new
connection, since redis-py drops a connection that timed out). That is the ambiguous failure
every at-least-once writer meets; without a dedupe of the flush itself each retry doubled its
decisions' counts and log rows (CI once stored 46 decisions more than were answered).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis as redis_py

from bandit_router.client import BanditClient

from .servers import RedisServer, ServerProcess

pytestmark = pytest.mark.integration

FROZEN_SECONDS = 3.5  # the store timeout is 1 s: the frozen flush is retried several times


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def _stored(client: BanditClient, experiment: str) -> tuple[dict[str, int], list[str]]:
    """Decisions counted per arm, and the decision ids in the exported log."""
    counts = {s.arm: s.decisions for s in client.get_experiment(experiment).statistics}
    return counts, [record.decision_id for record in client.export_decisions(experiment)]


def test_a_flush_run_after_its_timeout_is_not_written_twice(redis: RedisServer) -> None:
    server = ServerProcess("--redis-url", redis.url).start()
    answered: list[str] = []
    arms: Counter[str] = Counter()
    try:
        with BanditClient(server.target, timeout=5) as client:
            client.create_experiment(
                "frozen", ["a", "b", "c"], reward_window=600, default_reward=0.0
            )
            for _ in range(50):
                decision = client.route("frozen")
                answered.append(decision.decision_id)
                arms[decision.arm] += 1
            time.sleep(0.2)  # flushed while Redis is up
            assert redis.proc is not None
            redis.proc.send_signal(signal.SIGSTOP)
            try:
                ends = time.monotonic() + FROZEN_SECONDS
                while time.monotonic() < ends:  # Route answers from the cache meanwhile
                    decision = client.route("frozen")
                    answered.append(decision.decision_id)
                    arms[decision.arm] += 1
                    time.sleep(0.01)
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                counts, logged = _stored(client, "frozen")
                if sum(counts.values()) >= len(answered) and len(logged) >= len(answered):
                    break
                time.sleep(0.2)
            time.sleep(1.5)  # any late duplicate would land by now
            counts, logged = _stored(client, "frozen")
            pending = redis_py.Redis(port=redis.port).zcard("br:{frozen}:pending")
    finally:
        server.stop()
    assert len(answered) > 150
    assert counts == {arm: arms.get(arm, 0) for arm in "abc"}
    assert sorted(logged) == sorted(answered)
    assert pending == len(answered)
