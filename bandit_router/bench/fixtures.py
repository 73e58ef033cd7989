"""What both benchmarks start and drive: real processes on free loopback ports, a real
redis-server, and the one experiment and reward law every mode uses.

Shared by the throughput runner and the instruction counter, so neither imports the other.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from bandit_router.v1 import admin_pb2, experiment_pb2

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


def bench_experiment() -> admin_pb2.CreateExperimentRequest:
    """The experiment both benchmark modes route on: Thompson sampling over ``ARMS``."""
    experiment = experiment_pb2.Experiment(
        name=EXPERIMENT,
        arms=[experiment_pb2.Arm(name=arm) for arm in ARMS],
        policy=experiment_pb2.PolicySpec(name="thompson"),
        default_reward=0.0,
    )
    experiment.reward_window.FromSeconds(600)
    return admin_pb2.CreateExperimentRequest(experiment=experiment)
