"""bandit-router on a real Redis Cluster (3 masters, 3 replicas) and behind real Sentinels.

- Route/Reward through two router processes on experiments spread over all three masters:
  the statistics equal the clients' ground truth (exactly once, whichever master).
- An operator's pin reaches the other router within 1 s through the sharded change notice
  (the routers' periodic refresh is slowed to 30 s so only the notice can deliver it).
- The documented least-privilege ACL rule, applied on every node, is all the service needs.
- A wrong store address is one ``error:`` line and exit status 2 at start, never a
  traceback: a cluster URL at a plain Redis and the reverse, no Sentinel answering, a
  service the Sentinels do not know, ``--wait-replicas`` above the replicas present.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
import redis

from bandit_router.client import BanditClient
from bandit_router.store.permissions import acl_rule
from bandit_router.v1 import admin_pb2

from .servers import (
    ROOT,
    RedisCluster,
    RedisServer,
    SentinelGroup,
    ServerProcess,
    free_port,
    server_processes,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    try:
        started = RedisCluster().start()
    except RuntimeError as error:  # a missing redis-server or redis-cli fails, never skips
        pytest.fail(str(error))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelGroup]:
    try:
        started = SentinelGroup().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield started
    started.stop()


def spread_names(cluster: RedisCluster, per_master: int, prefix: str = "spread") -> dict[str, int]:
    """Experiment names, ``per_master`` on each master: name -> the master's port."""
    names: dict[str, int] = {}
    counts: dict[int, int] = {}
    for index in range(1000):
        name = f"{prefix}{index}"
        port = cluster.master_port_of(f"br:{{{name}}}:stats")
        if counts.get(port, 0) < per_master:
            counts[port] = counts.get(port, 0) + 1
            names[name] = port
        if len(counts) == 3 and all(c == per_master for c in counts.values()):
            return names
    raise AssertionError(f"could not spread experiments over 3 masters: {counts}")


def acknowledge(client: BanditClient, decision_id: str, value: float) -> str:
    """Reward until acknowledged, as a caller does: UNAVAILABLE (a WAIT that ran out of time
    on this busy machine) is safe to retry; DUPLICATE then means an earlier try counted."""
    for _ in range(50):
        try:
            return client.reward(decision_id, value)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            time.sleep(0.05)
    raise AssertionError(f"reward of {decision_id} never acknowledged")


@pytest.fixture(scope="module")
def routers(cluster: RedisCluster) -> Iterator[list[ServerProcess]]:
    """Two router processes on the cluster. Their periodic refresh is slowed to 30 s, so
    within a second only the change notice can tell one about the other's Admin calls."""
    args = ["--redis-url", cluster.url, "--refresh-interval", "30", "--wait-replicas", "1"]
    args += ["--wait-timeout-ms", "1000"]
    with server_processes(2, *args) as started:
        yield started


def test_route_and_reward_over_every_master_count_exactly_once(
    cluster: RedisCluster, routers: list[ServerProcess]
) -> None:
    names = spread_names(cluster, per_master=2)
    assert len(set(names.values())) == 3
    rng = random.Random(7)
    truth: dict[str, dict[str, list[float]]] = {}
    clients = [BanditClient(r.target, timeout=5, max_attempts=1) for r in routers]
    try:
        for name in names:
            clients[0].create_experiment(name, ["a", "b", "c"], reward_window=600)
        for step in range(120):
            name = rng.choice(list(names))
            via = clients[step % 2]
            decision = via.route(name)
            value = rng.choice([0.0, 1.0])
            # The reward goes through the other router: the decision id is all it needs.
            first = acknowledge(clients[(step + 1) % 2], decision.decision_id, value)
            assert first in {"APPLIED", "DUPLICATE"}
            assert acknowledge(via, decision.decision_id, value) == "DUPLICATE"
            truth.setdefault(name, {}).setdefault(decision.arm, []).append(value)
        for name, arms in truth.items():
            stats = {s.arm: s for s in clients[1].get_experiment(name).statistics}
            for arm, values in arms.items():
                assert stats[arm].n == len(values), (name, arm)
                assert stats[arm].sum == pytest.approx(sum(values)), (name, arm)
    finally:
        for client in clients:
            client.close()


def test_a_pin_reaches_the_other_router_within_a_second(routers: list[ServerProcess]) -> None:
    with (
        BanditClient(routers[0].target, timeout=5) as operator,
        BanditClient(routers[1].target, timeout=5) as other,
    ):
        operator.create_experiment("pinned", ["a", "b"])
        time.sleep(0.5)  # the create notice, too, reaches the other router
        for arm in ("b", "a"):
            operator.call_admin("PinArm", admin_pb2.PinArmRequest(experiment="pinned", arm=arm))
            pinned_at = time.monotonic()
            while True:
                decision = other.route("pinned")
                if decision.arm == arm and decision.reason == "PINNED":
                    break
                assert time.monotonic() - pinned_at < 1.0, "pin not obeyed within 1 s"
                time.sleep(0.01)


def test_the_documented_acl_rule_is_enough_on_every_cluster_node(cluster: RedisCluster) -> None:
    rule = acl_rule("clusteruser", "pw")
    for node in cluster.nodes:
        admin = redis.Redis(port=node.port)
        admin.execute_command("ACL", "SETUSER", *rule.split())  # type: ignore[no-untyped-call]
        admin.acl_log_reset()
        admin.close()
    url = cluster.url.replace("redis+cluster://", "redis+cluster://clusteruser:pw@")
    server = ServerProcess("--redis-url", url, "--wait-replicas", "1", "--wait-timeout-ms", "1000")
    server.start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as client:
            for name in spread_names(cluster, per_master=1, prefix="acl"):
                client.create_experiment(name, ["a", "b"], reward_window=600)
                decision = client.route(name)
                assert acknowledge(client, decision.decision_id, 1.0) == "APPLIED"
                client.call_admin("PinArm", admin_pb2.PinArmRequest(experiment=name, arm="a"))
                client.delete_experiment(name)
    finally:
        server.stop()
    for node in cluster.nodes:
        admin = redis.Redis(port=node.port, decode_responses=True)
        refusals = admin.acl_log()
        admin.close()
        assert refusals == [], (node.port, refusals)  # no node refused a command, key or channel


# -- a wrong store address: one line at start --------------------------------------------


def start_and_fail(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDIT_ROUTER_")}
    command = [sys.executable, "-m", "bandit_router", "serve"]
    command += ["--listen", f"127.0.0.1:{free_port()}", "--redis-timeout", "0.5", *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def test_a_wrong_store_address_is_one_error_line(
    cluster: RedisCluster, sentinel: SentinelGroup
) -> None:
    plain = RedisServer(appendonly=False).start()
    node = cluster.nodes[0].port
    sentinels = ",".join(f"127.0.0.1:{p}" for p in sentinel.sentinel_ports)
    cases = {
        "cluster URL at a plain Redis": (
            ("--redis-url", f"redis+cluster://127.0.0.1:{plain.port}"),
            "is not a Redis Cluster node",
        ),
        "plain URL at a cluster node": (
            ("--redis-url", f"redis://127.0.0.1:{node}/0"),
            "is a Redis Cluster node; use --redis-url redis+cluster://",
        ),
        "plain URL at a Sentinel": (
            ("--redis-url", f"redis://127.0.0.1:{sentinel.sentinel_ports[0]}/0"),
            "this is a Sentinel, not a Redis data node; use --redis-url redis+sentinel://",
        ),
        "no Sentinel answers": (
            ("--redis-url", f"redis+sentinel://127.0.0.1:{free_port()}/mymaster"),
            "no Sentinel answers at 127.0.0.1:",
        ),
        "a service the Sentinels do not know": (
            ("--redis-url", f"redis+sentinel://{sentinels}/nosuch"),
            "monitor no service named 'nosuch' (they monitor: mymaster)",
        ),
        "a Sentinel URL without a service": (
            ("--redis-url", f"redis+sentinel://{sentinels}"),
            "--redis-url: Redis URL redis+sentinel://",
        ),
        "more replicas than a plain Redis has": (
            ("--redis-url", plain.url, "--wait-replicas", "1"),
            "--wait-replicas 1 waits for more replicas than the primary has (0)",
        ),
        "more replicas than the cluster's masters have": (
            ("--redis-url", cluster.url, "--wait-replicas", "2"),
            "--wait-replicas 2 waits for more replicas than each master has at least (1)",
        ),
        "more replicas than the Sentinels' primary has": (
            ("--redis-url", sentinel.url, "--wait-replicas", "2"),
            "--wait-replicas 2 waits for more replicas than the primary has (1)",
        ),
    }
    try:
        running = {case: start_and_fail(*args) for case, (args, _) in cases.items()}
        for case, proc in running.items():
            _, stderr = proc.communicate(timeout=60)
            lines = stderr.strip().splitlines()
            assert proc.returncode == 2, (case, proc.returncode, stderr[-2000:])
            assert len(lines) == 1 and lines[0].startswith("error: "), (case, stderr[-2000:])
            assert "Traceback" not in stderr
            assert cases[case][1] in lines[0], (case, lines[0])
    finally:
        plain.stop()


def test_the_sentinel_url_serves_through_the_current_primary(sentinel: SentinelGroup) -> None:
    args = ("--redis-url", sentinel.url, "--wait-replicas", "1", "--wait-timeout-ms", "1000")
    server = ServerProcess(*args).start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as client:
            client.create_experiment("via-sentinel", ["a", "b"], reward_window=600)
            decisions = [client.route("via-sentinel") for _ in range(20)]
            assert all(client.reward(d.decision_id, 1.0) == "APPLIED" for d in decisions)
            assert sum(s.n for s in client.get_experiment("via-sentinel").statistics) == 20
    finally:
        server.stop()
    replica = redis.Redis(port=sentinel.replica.port, decode_responses=True)
    try:  # the acknowledged rewards are on the replica already (WAIT 1)
        counts: dict[str, str] = replica.hgetall("br:{via-sentinel}:stats")  # type: ignore[assignment]
        assert sum(float(v) for k, v in counts.items() if k.endswith(":n")) == 20
    finally:
        replica.close()
