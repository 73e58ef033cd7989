"""Several server processes on one real redis-server: nothing lost, nothing counted twice.

Clients Route then Reward concurrently through two replicas; a share of rewards is sent twice
(through the other replica, as a retry after a failover would be) and a share never sent. At
the end the statistics in Redis must equal the ground truth the clients kept, exactly, with
every unrewarded decision credited its default reward once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter, defaultdict
from typing import cast

import pytest
import redis

from bandit_router.client import AsyncBanditClient, BanditClient
from bandit_router.v1 import admin_pb2

from .servers import ServerProcess, server_processes

pytestmark = pytest.mark.integration

DECISIONS = 1500
WINDOW_SECONDS = 2.0


def read_stats(url: str, experiment: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return cast(dict[str, str], client.hgetall(f"br:{{{experiment}}}:stats"))
    finally:
        client.close()


def test_two_replicas_match_ground_truth_exactly(redis_url: str) -> None:
    args = ("--redis-url", redis_url, "--refresh-interval", "0.05", "--sweep-interval", "0.2")
    with server_processes(2, *args) as servers:
        with BanditClient(servers[0].target, timeout=5) as admin:
            admin.create_experiment(
                "truth", ["a", "b", "c"], reward_window=WINDOW_SECONDS, default_reward=0.0
            )
        time.sleep(0.3)
        rng = random.Random(7)
        plan = [(rng.random(), rng.random(), rng.random()) for _ in range(DECISIONS)]
        decisions_per_arm: Counter[str] = Counter()
        reward_sum: defaultdict[str, float] = defaultdict(float)
        outcomes: Counter[str] = Counter()
        unusual: list[str] = []

        async def drive() -> None:
            clients = [AsyncBanditClient(s.target, timeout=5, connections=2) for s in servers]
            semaphore = asyncio.Semaphore(64)

            async def one(index: int) -> None:
                send, value_draw, twice = plan[index]
                async with semaphore:
                    first = clients[index % 2]
                    decision = await first.route("truth")
                    decisions_per_arm[decision.arm] += 1
                    if send < 0.4:
                        return  # never rewarded: the default reward must apply, once
                    value = 1.0 if value_draw < 0.3 + 0.2 * "abc".index(decision.arm) else 0.0
                    outcome = await first.reward(decision.decision_id, value)
                    outcomes[outcome] += 1
                    # On a stalled machine: DUPLICATE when the client's retry of a Reward
                    # whose store write timed out finds it credited (it counts), LATE_IGNORED
                    # when the pair outlasted the 2 s window (the default counts instead).
                    if outcome in ("APPLIED", "DUPLICATE"):
                        reward_sum[decision.arm] += value
                    if outcome != "APPLIED":
                        unusual.append(outcome)
                    if twice < 0.3:
                        other = clients[(index + 1) % 2]
                        again = await other.reward(decision.decision_id, value)
                        assert again == (
                            "LATE_IGNORED" if outcome == "LATE_IGNORED" else "DUPLICATE"
                        )

            await asyncio.gather(*(one(i) for i in range(DECISIONS)))
            for c in clients:
                await c.close()

        asyncio.run(drive())
        assert sum(decisions_per_arm.values()) == DECISIONS
        assert set(unusual) <= {"DUPLICATE", "LATE_IGNORED"}, outcomes
        assert len(unusual) <= DECISIONS // 100, outcomes
        assert outcomes.total() == sum(1 for s, _, _ in plan if s >= 0.4)
        # After every deadline has passed and a sweep has run, statistics are final.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = read_stats(redis_url, "truth")
            if sum(float(stats.get(f"{arm}:n", 0)) for arm in "abc") >= DECISIONS:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a second sweep by either replica must not add anything
        stats = read_stats(redis_url, "truth")
        for arm in "abc":
            assert float(stats[f"{arm}:n"]) == decisions_per_arm[arm], arm
            assert float(stats[f"{arm}:sum"]) == reward_sum[arm], arm
            assert float(stats[f"{arm}:decisions"]) == decisions_per_arm[arm], arm


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
def test_restart_keeps_statistics_and_open_decisions(redis_url: str, stop_signal: int) -> None:
    args = ("--redis-url", redis_url, "--refresh-interval", "0.05")
    server = ServerProcess(*args).start()
    try:
        with BanditClient(server.target, timeout=5) as client:
            client.create_experiment("durable", ["a", "b"], reward_window=600)
            decisions = [client.route("durable") for _ in range(40)]
            for decision in decisions[:20]:
                assert client.reward(decision.decision_id, 1.0) == "APPLIED"
            before = {s.arm: (s.n, s.sum) for s in client.get_experiment("durable").statistics}
        code = server.signal(stop_signal)
        assert code == (-signal.SIGKILL if stop_signal == signal.SIGKILL else 0), server.output()
        if stop_signal == signal.SIGTERM:
            assert "Traceback" not in server.output()
        server = ServerProcess(*args, port=server.port).start()
        with BanditClient(server.target, timeout=5) as client:
            after = {s.arm: (s.n, s.sum) for s in client.get_experiment("durable").statistics}
            assert after == before
            for decision in decisions[:20]:
                assert client.reward(decision.decision_id, 1.0) == "DUPLICATE"
            for decision in decisions[20:]:
                assert client.reward(decision.decision_id, 0.0) == "APPLIED"
            final = client.get_experiment("durable").statistics
            assert sum(s.n for s in final) == 40
            assert sum(s.sum for s in final) == 20
    finally:
        server.stop()


def test_sigterm_drains_in_flight_calls(redis_url: str) -> None:
    """Calls in flight when SIGTERM arrives complete; the process then exits 0."""
    server = ServerProcess("--redis-url", redis_url, "--grace", "5").start()
    with BanditClient(server.target, timeout=5) as client:
        client.create_experiment("drain", ["a", "b"])

    async def load() -> list[str | BaseException]:
        # 60 Rewards in flight at the SIGTERM: below --max-pending-rpcs (64), so every call is
        # the server's to finish. (A burst far above that limit is refused in part by gRPC
        # itself; tests/test_admission.py covers that.)
        async with AsyncBanditClient(server.target, timeout=5) as c:
            decisions = []
            for _ in range(4):
                decisions += await asyncio.gather(*(c.route("drain") for _ in range(50)))
            # Started (not merely created) before the signal, so they are on the wire.
            rewards = [asyncio.ensure_future(c.reward(d.decision_id, 1.0)) for d in decisions[:60]]
            await asyncio.sleep(0.002)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*rewards, return_exceptions=True))

    results = asyncio.run(load())
    assert server.proc is not None
    assert server.proc.wait(20) == 0
    # Every Reward on the wire at the signal completes: shutdown settles (takes the calls
    # still queued inside gRPC, which server.stop would cancel: grpc/grpc#41785) before it
    # stops listening, and the statistics hold each of them exactly once.
    refused = [r for r in results if r != "APPLIED"]
    assert not refused, refused[:3]
    applied = len(results)
    check = ServerProcess("--redis-url", redis_url).start()
    try:
        with BanditClient(check.target, timeout=5) as client:
            assert sum(s.n for s in client.get_experiment("drain").statistics) == applied
    finally:
        check.stop()


def test_admin_reads_version_and_audit(redis_url: str) -> None:
    server = ServerProcess("--redis-url", redis_url).start()
    try:
        with BanditClient(server.target, timeout=5) as client:
            client.create_experiment("audited", ["a", "b"], reason="launch")
            entries = client.call_admin(
                "ListAudit", admin_pb2.ListAuditRequest(experiment="audited")
            ).entries
            assert [e.action for e in entries] == ["create"]
            assert entries[0].reason == "launch"
    finally:
        server.stop()
