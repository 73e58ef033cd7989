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
