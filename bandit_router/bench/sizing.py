"""``bandit-router bench --sizing``: what one Route and one Reward cost Redis and the server,
measured from outside, and the deployment that a given decision rate therefore needs.

Why CPU time and memory, not throughput: on a shared 2-core machine a throughput is whatever
the neighbours left, but the CPU seconds a process spends per call, and the bytes Redis holds
per decision, barely depend on them. Redis's CPU is read from ``INFO cpu`` (``used_cpu_user``
+ ``used_cpu_sys``) summed over every node before and after a run of N calls, the server's
from ``/proc`` (its process tree), and each run's idle share (the servers' cache refresh,
measured over a quiet second) is subtracted, so a per-call cost is the call's alone. Route
makes no Redis round trip; its Redis cost is its share of the background decision flush.
Memory is ``INFO memory`` ``used_memory`` summed over the nodes, before and after.

The sizing arithmetic (``plan``) is a pure function of those costs and the stated
assumptions, so it is unit-tested apart from the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import grpc
import grpc.aio
import redis

from bandit_router.bench.fixtures import (
    ARMS,
    Fixture,
    bench_reward,
    free_port,
    process,
    redis_cluster,
    redis_server,
    single_fixture,
)
from bandit_router.bench.runner import _run, closed_loop, tree_cpu_seconds
from bandit_router.client import channel_options
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2, router_pb2, router_pb2_grpc

#: The experiment the calls route on; its key tag puts all its state on one shard.
EXPERIMENT = "sizing"
#: The decision log keeps this many stream entries (flushes) per experiment (the store's cap).
LOG_CAP_FLUSHES = 200_000
#: Decision rates of the sizing table.
RATES = (1_000, 10_000, 100_000)


@dataclass(frozen=True)
class Costs:
    """Measured costs; CPU in microseconds of one core, memory in bytes."""

    redis_route_us: float
    redis_reward_us: float
    server_route_us: float
    server_reward_us: float
    #: Redis CPU one idle bandit-router process costs (its cache refresh), in µs per second.
    redis_idle_us_per_s: float
    #: Bytes per decision awaiting its reward (pending record), and in the decision log.
    pending_bytes: float
    log_bytes: float
    #: Bytes per rewarded decision of the reward window (its dedupe marker).
    marker_bytes: float
    experiment_bytes: float
    #: The closed-loop Reward run: rewards/s it achieved and the share of a core Redis and the
    #: server spent meanwhile.
    saturation_rewards_per_s: float = 0.0
    saturation_redis_busy: float = 0.0
    saturation_server_busy: float = 0.0


@dataclass(frozen=True)
class Assumptions:
    """What the sizing table takes as given; printed with it."""

    #: Every decision gets one Reward (the Redis cost of a default reward is not counted).
    rewards_per_decision: float = 1.0
    #: Run Redis shards and bandit-router processes at most this busy (headroom for bursts,
    #: failover and the other shard's share after one fails).
    utilisation: float = 0.5
    reward_window_seconds: float = 600.0
    log_retention_seconds: float = 3600.0
    experiments: int = 100


@dataclass(frozen=True)
class Plan:
    """The deployment one decision rate needs."""

    decisions_per_second: float
    redis_cores: float
    redis_shards: int
    server_processes: int
    window_bytes: float
    log_bytes: float
    experiment_bytes: float

    @property
    def memory_bytes(self) -> float:
        return self.window_bytes + self.log_bytes + self.experiment_bytes


def shard_rewards_per_second(costs: Costs) -> float:
    """What one shard sustains when it does nothing else: one core over the Redis CPU of a
    Route-and-Reward pair (an experiment's decisions and rewards live on one shard)."""
    per_pair = costs.redis_route_us + costs.redis_reward_us
    return 1e6 / per_pair if per_pair > 0 else math.inf


def plan(costs: Costs, rate: float, assumptions: Assumptions) -> Plan:
    """The Redis cores and shards, bandit-router processes and Redis memory ``rate``
    decisions per second need under ``assumptions``."""
    rewards = rate * assumptions.rewards_per_decision
    server_cores = (rate * costs.server_route_us + rewards * costs.server_reward_us) / 1e6
    processes = max(1, math.ceil(server_cores / assumptions.utilisation))
    redis_cores = (
        rate * costs.redis_route_us
        + rewards * costs.redis_reward_us
        + processes * costs.redis_idle_us_per_s
    ) / 1e6
    shards = max(1, math.ceil(redis_cores / assumptions.utilisation))
    # Each decision of the last window is either pending or rewarded (marker): the larger.
    per_window_decision = max(costs.pending_bytes, costs.marker_bytes)
    return Plan(
        decisions_per_second=rate,
        redis_cores=redis_cores,
        redis_shards=shards,
        server_processes=processes,
        window_bytes=rate * assumptions.reward_window_seconds * per_window_decision,
        log_bytes=rate * assumptions.log_retention_seconds * costs.log_bytes,
        experiment_bytes=assumptions.experiments * costs.experiment_bytes,
    )


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render(costs: Costs, assumptions: Assumptions, topology: str, calls: int) -> str:
    """The measured costs, the sizing table and the assumptions behind it."""
    lines = [
        f"measured on {topology}, {calls} calls per run (CPU time per call: a ratio, so it "
        "holds on a noisy shared machine where throughput does not)",
        f"{'cost':<44} {'value':>12}",
        f"{'Redis CPU per Route (its decision flush share)':<44} {costs.redis_route_us:>9.1f} us",
        f"{'Redis CPU per Reward':<44} {costs.redis_reward_us:>9.1f} us",
        f"{'server CPU per Route':<44} {costs.server_route_us:>9.1f} us",
        f"{'server CPU per Reward':<44} {costs.server_reward_us:>9.1f} us",
        f"{'Redis CPU per idle server process (refresh)':<44} "
        f"{costs.redis_idle_us_per_s / 1e4:>10.2f} %",
        f"{'Redis memory per pending decision':<44} {costs.pending_bytes:>10.0f} B",
        f"{'Redis memory per decision in the log':<44} {costs.log_bytes:>10.0f} B",
        f"{'Redis memory per rewarded decision (marker)':<44} {costs.marker_bytes:>10.0f} B",
        f"{'Redis memory per experiment':<44} {costs.experiment_bytes:>10.0f} B",
        f"{'rewards/s one shard sustains (1 core / pair)':<44} "
        f"{shard_rewards_per_second(costs):>12.0f}",
        f"saturation run (closed loop, 64 in flight): {costs.saturation_rewards_per_s:.0f} "
        f"rewards/s with Redis {costs.saturation_redis_busy:.0%} and the server "
        f"{costs.saturation_server_busy:.0%} of a core busy; the bound here is the server "
        "and the driver sharing this machine's cores, not Redis",
        "",
        f"{'decisions/s':>11} {'Redis cores':>11} {'shards':>6} {'processes':>9} "
        f"{'window mem':>11} {'log mem':>11} {'total mem':>11}",
    ]
    for rate in RATES:
        row = plan(costs, rate, assumptions)
        lines.append(
            f"{rate:>11,} {row.redis_cores:>11.2f} {row.redis_shards:>6} "
            f"{row.server_processes:>9} {_size(row.window_bytes):>11} "
            f"{_size(row.log_bytes):>11} {_size(row.memory_bytes):>11}"
        )
    lines += [
        "assumptions:",
        f"- every decision gets {assumptions.rewards_per_decision:g} Reward (default "
        "rewards not counted); shards and processes run at most "
        f"{assumptions.utilisation:.0%} busy; one process is one core (--workers 1)",
        f"- reward window {assumptions.reward_window_seconds:g} s: each decision in it holds "
        "a pending record or a dedupe marker (the larger is counted)",
        f"- decision log kept {assumptions.log_retention_seconds:g} s (the store keeps at most "
        f"{LOG_CAP_FLUSHES:,} flushes of at most 256 decisions per experiment; export older)",
        f"- {assumptions.experiments} experiments; memory is used_memory of the primaries: "
        "each replica holds as much again, and Redis wants headroom for fork (AOF rewrite)",
        "- one experiment's state lives on one shard: its own traffic cannot exceed one "
        "shard's Route+Reward pairs/s above, whatever the number of shards",
    ]
    return "\n".join(lines)


# -- measurement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    host: str
    port: int
    username: str | None
    password: str | None


def redis_nodes(url: str) -> list[_Node]:
    """Every node behind a ``redis://`` or ``redis+cluster://`` URL (a cluster's from
    ``CLUSTER NODES``, replicas included, since their CPU and memory are the deployment's)."""
    parts = urlsplit(url)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == "redis":
        return [_Node(parts.hostname or "127.0.0.1", parts.port or 6379, username, password)]
    if parts.scheme != "redis+cluster":
        raise RuntimeError(f"--sizing measures redis:// or redis+cluster:// URLs, not {url!r}")
    seed = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
    host, _, port = seed.rpartition(":")
    with redis.Redis(
        host=host, port=int(port or 6379), username=username, password=password
    ) as client:
        nodes = client.execute_command("CLUSTER NODES")  # redis-py: address -> fields
    found = []
    for address, fields in nodes.items():
        if "fail" in fields.get("flags", "") or "noaddr" in fields.get("flags", ""):
            continue
        node_host, _, node_port = address.split("@")[0].rpartition(":")
        found.append(_Node(node_host, int(node_port), username, password))
    return found


class RedisMeter:
    """CPU seconds and used_memory summed over every node, and the memory of one
    experiment's keys of one type (the key tag names the experiment)."""

    def __init__(self, url: str) -> None:
        self.clients = [
            redis.Redis(host=n.host, port=n.port, username=n.username, password=n.password)
            for n in redis_nodes(url)
        ]

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def cpu_seconds(self) -> float:
        total = 0.0
        for client in self.clients:
            info = client.info("cpu")
            total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return total

    def used_memory(self) -> int:
        return sum(int(client.info("memory")["used_memory"]) for client in self.clients)

    def type_memory(self, experiment: str, key_type: str) -> int:
        """Bytes of the experiment's keys of ``key_type`` (e.g. its streams: the decision log
        and the audit log), whichever node holds them."""
        total = 0
        for client in self.clients:
            for key in client.scan_iter(match=f"*{{{experiment}}}*", _type=key_type):
                total += int(client.memory_usage(key, samples=0) or 0)
        return total


def sizing_experiment(name: str) -> admin_pb2.CreateExperimentRequest:
    """Thompson sampling over the bench's arms, with a default reward, so every decision is
    recorded pending until its Reward."""
    experiment = experiment_pb2.Experiment(
        name=name,
        arms=[experiment_pb2.Arm(name=arm) for arm in ARMS],
        policy=experiment_pb2.PolicySpec(name="thompson"),
        default_reward=0.0,
    )
    experiment.reward_window.FromSeconds(600)
    return admin_pb2.CreateExperimentRequest(experiment=experiment)


#: How long after a run the background decision flush (25 ms linger) surely has written.
SETTLE_SECONDS = 0.25


async def measure(
    target: str,
    pid: int,
    meter: RedisMeter,
    calls: int,
    experiments: int,
    concurrency: int,
    fixture: Fixture | None = None,
) -> Costs:
    """The runs, in order: idle, N Routes, N Rewards of them (also the saturation run), then
    M experiments created. With a ``fixture`` (``bench --fixture``), its experiment, Routes
    and Rewards; without, ``sizing_experiment`` (the plain fixture's experiment)."""
    new_experiment = sizing_experiment if fixture is None else fixture.experiment
    async with grpc.aio.insecure_channel(target, channel_options(1, 1)) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        router = router_pb2_grpc.RouterStub(channel)
        await admin.CreateExperiment(new_experiment(EXPERIMENT), timeout=10)
        await asyncio.sleep(SETTLE_SECONDS)  # the server's cache sees it
        requests = (
            [router_pb2.RouteRequest(experiment=EXPERIMENT)]
            if fixture is None
            else fixture.route_requests(EXPERIMENT, 1)
        )
        decisions: list[str] = []

        async def route(index: int) -> None:
            request = requests[index % len(requests)]
            decisions.append((await router.Route(request, timeout=10)).decision_id)

        async def reward(index: int) -> None:
            if fixture is None:
                request = router_pb2.RewardRequest(
                    decision_id=decisions[index], value=bench_reward(index)
                )
            else:
                request = fixture.reward_request(decisions[index], index)
            await router.Reward(request, timeout=10)

        # Warm up (connections, caches, Lua scripts loaded), then forget those decisions.
        await closed_loop(route, min(500, calls), concurrency)
        await closed_loop(reward, len(decisions), concurrency)
        decisions.clear()
        await asyncio.sleep(SETTLE_SECONDS)

        # Idle: what the servers' background refresh costs, subtracted from every run.
        redis0, server0, began = meter.cpu_seconds(), tree_cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(1.0)
        idle_seconds = time.monotonic() - began
        redis_idle = (meter.cpu_seconds() - redis0) / idle_seconds
        server_idle = (tree_cpu_seconds(pid) - server0) / idle_seconds

        async def run(
            call: Any, count: int
        ) -> tuple[float, float, float, float]:  # redis s, server s, wall s, loop s
            redis_before, server_before = meter.cpu_seconds(), tree_cpu_seconds(pid)
            began = time.monotonic()
            _, loop_seconds, errors = await closed_loop(call, count, concurrency)
            if errors:
                raise RuntimeError(f"{errors} of {count} calls failed during the sizing run")
            await asyncio.sleep(SETTLE_SECONDS)
            wall = time.monotonic() - began
            return (
                meter.cpu_seconds() - redis_before - redis_idle * wall,
                tree_cpu_seconds(pid) - server_before - server_idle * wall,
                wall,
                loop_seconds,
            )

        memory0, streams0 = meter.used_memory(), meter.type_memory(EXPERIMENT, "stream")
        redis_route, server_route, _, _ = await run(route, calls)
        memory1, streams1 = meter.used_memory(), meter.type_memory(EXPERIMENT, "stream")
        routed = len(decisions)
        redis_reward, server_reward, _, loop_seconds = await run(reward, routed)
        memory2 = meter.used_memory()
        log_bytes = (streams1 - streams0) / routed

        memory3 = meter.used_memory()
        for index in range(experiments):
            await admin.CreateExperiment(new_experiment(f"{EXPERIMENT}-{index}"), timeout=10)
        await asyncio.sleep(SETTLE_SECONDS)
        memory4 = meter.used_memory()

    return Costs(
        redis_route_us=max(0.0, redis_route) * 1e6 / routed,
        redis_reward_us=max(0.0, redis_reward) * 1e6 / routed,
        server_route_us=max(0.0, server_route) * 1e6 / routed,
        server_reward_us=max(0.0, server_reward) * 1e6 / routed,
        redis_idle_us_per_s=redis_idle * 1e6,
        pending_bytes=(memory1 - memory0) / routed - log_bytes,
        log_bytes=log_bytes,
        marker_bytes=(memory2 - memory0) / routed - log_bytes,
        experiment_bytes=(memory4 - memory3) / max(1, experiments),
        saturation_rewards_per_s=routed / loop_seconds,
        saturation_redis_busy=(max(0.0, redis_reward) + redis_idle * loop_seconds) / loop_seconds,
        saturation_server_busy=(max(0.0, server_reward) + server_idle * loop_seconds)
        / loop_seconds,
    )


@contextlib.contextmanager
def _store(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The Redis to measure and how to describe it: the user's, or one started here."""
    if args.redis_url:
        yield args.redis_url, "the Redis at --redis-url"
    elif args.redis_cluster:
        with redis_cluster(args.redis_cluster) as url:
            yield url, f"a {args.redis_cluster}-master loopback Redis Cluster (no replicas)"
    else:
        with redis_server() as url:
            yield url, "one loopback redis-server"


def run_sizing(args: argparse.Namespace) -> tuple[Costs, str]:
    import sys

    fixture = single_fixture(args, "--sizing")
    with _store(args) as (url, topology):
        meter = RedisMeter(url)
        try:
            port = free_port()
            target = f"127.0.0.1:{port}"
            command = [sys.executable, "-m", "bandit_router", "serve", "--listen", target]
            command += ["--redis-url", url, "--workers", "1", "--log-level", "WARNING"]
            command += args.server_arg
            with process(command, port) as server:
                costs = _run(
                    measure(
                        target,
                        server.pid,
                        meter,
                        args.calls,
                        args.sizing_experiments,
                        args.concurrency,
                        fixture,
                    )
                )
        finally:
            meter.close()
    if fixture.name != "plain":
        topology += f", the {fixture.name} fixture's experiment, Routes and Rewards"
    return costs, topology


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.calls, args.sizing_experiments = 1000, 10
    assumptions = Assumptions(
        reward_window_seconds=args.sizing_window,
        log_retention_seconds=args.sizing_log_retention,
        experiments=args.sizing_experiment_count,
    )
    costs, topology = run_sizing(args)
    print(render(costs, assumptions, topology, args.calls))
    if args.json_out:
        rows: Sequence[Plan] = [plan(costs, rate, assumptions) for rate in RATES]
        with open(args.json_out, "w") as handle:
            json.dump(
                {
                    "costs": asdict(costs),
                    "assumptions": asdict(assumptions),
                    "plans": [asdict(row) | {"memory_bytes": row.memory_bytes} for row in rows],
                },
                handle,
                indent=2,
            )
    return 0
