"""What the benchmarks start and drive: real processes on free loopback ports, a real
redis-server, and the experiments (fixtures) with their request and reward laws.

Shared by the throughput runner, the instruction counter, the profiler and the sizing, so
none imports another. ``FIXTURES`` names what ``bench --fixture`` can measure: ``plain``
(Thompson sampling, what every figure before fixtures measured), ``gaussian`` (the guarded
fixture's policy without its metrics, guardrails and cap, its yardstick), ``guarded``
(Issue 15's metrics, objective, guardrails and traffic cap) and ``contextual`` (Issue 14's
lin_ts at d = 16).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2, router_pb2

EXPERIMENT = "bench"


ARMS = ("a", "b", "c", "d", "e")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(
    command: list[str],
    port: int,
    env: dict[str, str] | None = None,
    *,
    start_seconds: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + start_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{' '.join(command)} did not listen on {port}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found; install Debian's redis-server or pass --redis-url"
        )
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        process(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            port,
        ),
    ):
        yield f"redis://127.0.0.1:{port}/0"


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too and below 65536."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@contextlib.contextmanager
def redis_cluster(masters: int, *, start_seconds: float = 20.0) -> Iterator[str]:
    """A loopback Redis Cluster of ``masters`` masters and no replicas, as a
    ``redis+cluster://`` URL listing every node.

    No replicas: the sizing measures what serving costs a shard, and a replica's copy is a
    stated multiple of that, not a measurement. The slots are assigned with ``CLUSTER
    ADDSLOTSRANGE`` and the nodes joined with ``CLUSTER MEET`` rather than ``redis-cli
    --cluster create``, which refuses fewer than 3 masters: a 1-master cluster is the cheapest
    way to measure the cluster client's own cost against a single Redis.
    """
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found; install Debian's redis-server")
    if masters < 1:
        raise RuntimeError("--redis-cluster needs at least 1 master")
    ports = [free_cluster_port() for _ in range(masters)]
    with contextlib.ExitStack() as stack:
        for port in ports:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            command += ["--appendonly", "no", "--dir", tmp, "--cluster-enabled", "yes"]
            command += ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
            stack.enter_context(process(command, port))
        clients = [stack.enter_context(redis.Redis(host="127.0.0.1", port=port)) for port in ports]
        bounds = [16384 * i // masters for i in range(masters + 1)]
        for index, client in enumerate(clients):
            client.execute_command("CLUSTER ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1)
            if index:
                client.execute_command("CLUSTER MEET", "127.0.0.1", ports[0])
        deadline = time.monotonic() + start_seconds
        while not all(_cluster_ready(client, masters) for client in clients):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {masters}-master cluster did not form")
            time.sleep(0.05)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


def _cluster_ready(client: Any, masters: int) -> bool:
    """This node says cluster_state:ok and knows all the masters."""
    fields = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return bool(
        fields.get("cluster_state") == "ok" and int(fields.get("cluster_known_nodes", 0)) >= masters
    )


def bench_reward(index: int) -> float:
    """One stationary reward law (a third are 1) for every mode and round: a rate that
    changed between modes was real drift, and the drift detector rightly said so."""
    return float(index % 3 == 0)


def bench_experiment(name: str = EXPERIMENT) -> admin_pb2.CreateExperimentRequest:
    """The plain fixture's experiment: Thompson sampling over ``ARMS``, with a default
    reward (every decision is recorded pending until its Reward)."""
    experiment = experiment_pb2.Experiment(
        name=name,
        arms=[experiment_pb2.Arm(name=arm) for arm in ARMS],
        policy=experiment_pb2.PolicySpec(name="thompson"),
        default_reward=0.0,
    )
    experiment.reward_window.FromSeconds(600)
    return admin_pb2.CreateExperimentRequest(experiment=experiment)


# -- fixtures ----------------------------------------------------------------------------------

#: Numeric context features of the contextual fixture: 15 of them, so with the intercept the
#: feature vector has d = 16 columns (Issue 14's size).
CONTEXT_FEATURES = tuple(f"f{i:02d}" for i in range(15))

#: Distinct context vectors per run of the contextual fixture. The service keeps the laws of
#: the 1,024 most recent vectors of a state (``route.cache.CONTEXTUAL_LAW_CACHE_SIZE``);
#: cycling through more than that in order misses that cache on every Route, as continuous
#: features of real requests would.
CONTEXT_POOL = 4096


def guarded_metrics(index: int) -> dict[str, float]:
    """The guarded fixture's four metrics for the ``index``-th Reward: a fixed law that no
    guardrail can flag (1% errors against a 5% limit; latencies 50-540 ms against a p99 limit
    of 5,000 ms), so no arm is quarantined during a run and every Route stays on its hot path."""
    return {
        "quality": float(index % 3 == 0),
        "error": float(index % 100 == 0),
        "latency_ms": 50.0 + 10.0 * (index % 50),
        "cost_usd": 0.001 * (index % 10),
    }


def guarded_value(index: int) -> float:
    """The objective (quality - cost_usd) of ``guarded_metrics(index)``: the gaussian
    fixture's reward, so both fixtures learn the same rewards."""
    metrics = guarded_metrics(index)
    return metrics["quality"] - metrics["cost_usd"]


def _experiment(
    name: str, policy: str, *, reward_bounds: tuple[float, float] | None = None
) -> experiment_pb2.Experiment:
    experiment = experiment_pb2.Experiment(
        name=name,
        arms=[experiment_pb2.Arm(name=arm) for arm in ARMS],
        policy=experiment_pb2.PolicySpec(name=policy),
        default_reward=0.0,
    )
    if reward_bounds is not None:
        experiment.reward_min, experiment.reward_max = reward_bounds
    experiment.reward_window.FromSeconds(600)
    return experiment


#: The objective quality - cost_usd ranges over [-1, 1]: Beta Thompson sampling learns only
#: [0, 1] and the service refuses it, so the guarded fixture (and its yardstick) use
#: ``gaussian_thompson`` with these reward bounds.
GUARDED_BOUNDS = (-1.0, 1.0)


def gaussian_experiment(name: str) -> admin_pb2.CreateExperimentRequest:
    """The guarded fixture's policy and bounds, without metrics, guardrails or caps."""
    experiment = _experiment(name, "gaussian_thompson", reward_bounds=GUARDED_BOUNDS)
    return admin_pb2.CreateExperimentRequest(experiment=experiment)


def guarded_experiment(name: str) -> admin_pb2.CreateExperimentRequest:
    """Issue 15's configuration: four metrics, the objective quality - cost_usd, two
    guardrails (error rate at most 0.05, latency_ms p99 at most 5,000) and arm a capped at
    30% of the traffic."""
    experiment = _experiment(name, "gaussian_thompson", reward_bounds=GUARDED_BOUNDS)
    binary, continuous = experiment_pb2.METRIC_KIND_BINARY, experiment_pb2.METRIC_KIND_CONTINUOUS
    experiment.metrics.extend(
        [
            experiment_pb2.MetricSpec(name="quality", kind=binary),
            experiment_pb2.MetricSpec(name="error", kind=binary),
            experiment_pb2.MetricSpec(name="latency_ms", kind=continuous, min=0.0, max=60000.0),
            experiment_pb2.MetricSpec(name="cost_usd", kind=continuous, min=0.0, max=1.0),
        ]
    )
    experiment.objective.weights.update({"quality": 1.0, "cost_usd": -1.0})
    experiment.guardrails.extend(
        [
            experiment_pb2.GuardrailRule(
                metric="error", statistic=experiment_pb2.GUARDRAIL_STATISTIC_RATE, max=0.05
            ),
            experiment_pb2.GuardrailRule(
                metric="latency_ms",
                statistic=experiment_pb2.GUARDRAIL_STATISTIC_QUANTILE,
                quantile=0.99,
                max=5000.0,
            ),
        ]
    )
    experiment.exploration.max_share["a"] = 0.3
    return admin_pb2.CreateExperimentRequest(experiment=experiment)


def contextual_experiment(name: str) -> admin_pb2.CreateExperimentRequest:
    """lin_ts over ``ARMS`` with the 15 numeric ``CONTEXT_FEATURES`` (d = 16)."""
    experiment = _experiment(name, "lin_ts")
    experiment.context_features.extend(
        experiment_pb2.ContextFeature(name=feature) for feature in CONTEXT_FEATURES
    )
    return admin_pb2.CreateExperimentRequest(experiment=experiment)


@dataclass(frozen=True)
class Fixture:
    """One experiment the benchmarks can measure, with what its Routes and Rewards carry.

    Echo gets the same requests as bandit-router, so the ratio to echo leaves out what the
    larger messages cost gRPC and measures only what the service does with them."""

    name: str
    experiment: Callable[[str], admin_pb2.CreateExperimentRequest]
    #: ``route_requests(experiment, seed)``: the Route requests a run cycles through.
    route_requests: Callable[[str, int], list[router_pb2.RouteRequest]]
    #: ``reward_request(decision_id, index)``: the ``index``-th Reward of a run.
    reward_request: Callable[[str, int], router_pb2.RewardRequest]

    def experiment_name(self) -> str:
        """``bench`` for the plain fixture (as before fixtures), ``bench-NAME`` otherwise:
        fixtures share one Redis and one server."""
        return EXPERIMENT if self.name == "plain" else f"{EXPERIMENT}-{self.name}"


def _one_request(experiment: str, seed: int) -> list[router_pb2.RouteRequest]:
    return [router_pb2.RouteRequest(experiment=experiment)]


def _context_requests(experiment: str, seed: int) -> list[router_pb2.RouteRequest]:
    """``CONTEXT_POOL`` Routes with seeded N(0, 1) values of every context feature."""
    values = np.random.default_rng(seed).standard_normal((CONTEXT_POOL, len(CONTEXT_FEATURES)))
    return [
        router_pb2.RouteRequest(
            experiment=experiment, context=dict(zip(CONTEXT_FEATURES, row.tolist(), strict=True))
        )
        for row in values
    ]


def _value_reward(decision_id: str, index: int) -> router_pb2.RewardRequest:
    return router_pb2.RewardRequest(decision_id=decision_id, value=bench_reward(index))


def _gaussian_reward(decision_id: str, index: int) -> router_pb2.RewardRequest:
    return router_pb2.RewardRequest(decision_id=decision_id, value=guarded_value(index))


def _metrics_reward(decision_id: str, index: int) -> router_pb2.RewardRequest:
    return router_pb2.RewardRequest(decision_id=decision_id, metrics=guarded_metrics(index))


FIXTURES: dict[str, Fixture] = {
    fixture.name: fixture
    for fixture in (
        Fixture("plain", bench_experiment, _one_request, _value_reward),
        Fixture("gaussian", gaussian_experiment, _one_request, _gaussian_reward),
        Fixture("guarded", guarded_experiment, _one_request, _metrics_reward),
        Fixture("contextual", contextual_experiment, _context_requests, _value_reward),
    )
}


def selected_fixtures(args: argparse.Namespace) -> list[Fixture]:
    """``--fixture`` in the order given, each once; plain if none."""
    return [FIXTURES[name] for name in dict.fromkeys(args.fixture or ["plain"])]


def single_fixture(args: argparse.Namespace, option: str) -> Fixture:
    """The one fixture ``--profile``, ``--instructions`` and ``--sizing`` measure; they
    refuse several rather than measure only one of them."""
    fixtures = selected_fixtures(args)
    if len(fixtures) > 1:
        raise RuntimeError(
            f"{option} measures one fixture; run it once per fixture "
            f"({', '.join(f.name for f in fixtures)})"
        )
    return fixtures[0]


async def create_experiments(
    target: str, fixtures: Sequence[Fixture], *, timeout: float = 10.0, settle: float = 0.5
) -> None:
    """Create each fixture's experiment on the server at ``target`` (one already there, from
    a rerun on the same ``--redis-url``, is kept), then wait ``settle`` seconds for every
    worker's cache to see them. ``timeout`` per call: a server under valgrind needs more."""
    async with grpc.aio.insecure_channel(target) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        for fixture in fixtures:
            try:
                await admin.CreateExperiment(
                    fixture.experiment(fixture.experiment_name()), timeout=timeout
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise RuntimeError(
                        f"the {fixture.name} fixture's experiment was refused: "
                        f"{error.code().name}: {error.details()}"
                    ) from None
    await asyncio.sleep(settle)
