"""``--wait-replicas`` at the store: a reward is acknowledged only once a replica has it.

A real primary and replica. The WAIT runs in the rewards' pipeline, on their connection;
with the replica gone a reward is applied on the primary but UNAVAILABLE (so the caller
retries), and its retry, a DUPLICATE, is acknowledged only once the replica is back and
has the first attempt too. A refusal (an invalid value) is answered whatever the WAIT."""

from __future__ import annotations

import math
import time

import pytest
import redis

from bandit_router.errors import Unavailable
from bandit_router.route.tokens import new_nonce
from bandit_router.store.redis_store import Store

from .servers import NO_SYNC_DELAY, RedisServer, _cli
from .test_store_semantics import command, make_experiment, run

pytestmark = pytest.mark.integration


def replica_n(replica: RedisServer) -> float:
    client = redis.Redis(port=replica.port, decode_responses=True)
    try:
        return float(client.hget("br:{exp}:stats", "a:n") or 0)
    finally:
        client.close()


def wait_online(primary: RedisServer) -> None:
    for _ in range(200):
        if "state=online" in _cli(primary.port, "info", "replication"):
            return
        time.sleep(0.05)
    raise AssertionError("the replica never came online")


def test_a_reward_is_acknowledged_only_once_a_replica_has_it() -> None:
    primary = RedisServer(extra_args=NO_SYNC_DELAY).start()
    replica = RedisServer(
        extra_args=[*NO_SYNC_DELAY, "--replicaof", "127.0.0.1", str(primary.port)]
    )
    replica.start()
    try:
        wait_online(primary)

        async def scenario() -> None:
            store = Store.from_url(primary.url)
            try:
                assert await store.replica_count() == 1
                await store.check_topology(1)
                exp = await store.create_experiment(make_experiment())
                first = command(exp, new_nonce(), "a", 1.0)
                assert await store.apply_rewards(
                    [first], wait_replicas=1, wait_timeout_ms=2000
                ) == ["applied"]
                assert replica_n(replica) == 1.0  # acknowledged: on the replica already

                assert replica.proc is not None
                replica.proc.kill()
                replica.proc.wait(10)
                second = command(exp, new_nonce(), "a", 1.0)
                (lost,) = await store.apply_rewards([second], wait_replicas=1, wait_timeout_ms=50)
                assert isinstance(lost, Unavailable) and "only 0 of 1" in str(lost)
                invalid = command(exp, new_nonce(), "a", math.nan)
                assert await store.apply_rewards([invalid], wait_replicas=1) == ["invalid"]
                (again,) = await store.apply_rewards([second], wait_replicas=1, wait_timeout_ms=50)
                assert isinstance(again, Unavailable)  # a DUPLICATE waits for the replica too

                replica.start()
                wait_online(primary)
                outcome = await store.apply_rewards([second], wait_replicas=1, wait_timeout_ms=2000)
                assert outcome == ["duplicate"]
                assert replica_n(replica) == 2.0  # the first attempt, counted once
            finally:
                await store.close()

        run(scenario())
    finally:
        for server in (replica, primary):  # SIGKILL: a replica's SIGTERM can take 10 s here
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
            server.stop()
