"""Shared helpers of the operator-control tests (no tests here).

The controls are checked against real servers on a real redis-server; these helpers build
experiments with warm-start priors (to make the policy's preference known in advance), start
a server with a seeded RNG (so the statistical tests are reproducible), and state the
binomial acceptance band the share tests use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import random
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2, experiment_pb2

from .servers import ServerProcess, ServerThread

#: Two-sided z of the binomial bands: P(|Z| > 4) ~ 6.3e-5 per check under the null, so a
#: correct router fails a band about once in 16 000 checks (and the seeds are fixed anyway).
Z = 4.0

ArmSpec = str | tuple[str, float, float]


def binomial_band(trials: int, p: float, z: float = Z) -> tuple[float, float]:
    """Acceptance band for a Binomial(trials, p) count: n p +- z sqrt(n p (1 - p)).

    The normal approximation is good here (n p (1 - p) >= 25 in every use); a
    continuity margin of 1 covers p at 0 or 1 and rounding.
    """
    mean = trials * p
    half = z * math.sqrt(trials * p * (1.0 - p)) + 1.0
    return mean - half, mean + half


def assert_binomial(count: int, trials: int, p: float, what: str) -> None:
    low, high = binomial_band(trials, p)
    assert low <= count <= high, (
        f"{what}: {count} of {trials} is outside [{low:.1f}, {high:.1f}] "
        f"(p={p:.4f}, z={Z}: n p +- z sqrt(n p (1-p)))"
    )


def experiment_pb(
    name: str, arms: Sequence[ArmSpec], *, reward_window: float = 600.0, **fields: Any
) -> experiment_pb2.Experiment:
    """An Experiment message; an arm is a name or (name, prior_n, prior_sum) for a warm start."""
    pb_arms = []
    for arm in arms:
        if isinstance(arm, str):
            pb_arms.append(experiment_pb2.Arm(name=arm))
        else:
            pb_arms.append(experiment_pb2.Arm(name=arm[0], prior_n=arm[1], prior_sum=arm[2]))
    experiment = experiment_pb2.Experiment(name=name, arms=pb_arms, **fields)
    experiment.reward_window.FromNanoseconds(int(reward_window * 1e9))
    return experiment


def create(client: BanditClient, name: str, arms: Sequence[ArmSpec], **fields: Any) -> None:
    client.call_admin(
        "CreateExperiment",
        admin_pb2.CreateExperimentRequest(
            experiment=experiment_pb(name, arms, **fields), reason="test setup"
        ),
    )


#: Arm a is far better than b and c by its prior: Thompson sampling gives b and c a
#: probability of about 1e-100, so any traffic they get comes from the control under test.
SKEWED: tuple[ArmSpec, ...] = (("a", 1000.0, 900.0), ("b", 1000.0, 100.0), ("c", 1000.0, 100.0))


def statistics(client: BanditClient, name: str) -> dict[str, tuple[float, float, int]]:
    """arm -> (n, sum, decisions) as the store holds them."""
    return {s.arm: (s.n, s.sum, s.decisions) for s in client.get_experiment(name).statistics}


class SeededServer(ServerThread):
    """ServerThread whose router draws from ``random.Random(seed)``: reproducible shares."""

    def __init__(self, seed: int, **config: Any) -> None:
        super().__init__(**config)
        self.seed = seed

    def start(self) -> SeededServer:
        from bandit_router.serving.server import build_app

        from .servers import wait_serving

        self._thread.start()
        self.app = asyncio.run_coroutine_threadsafe(
            build_app(self.config, rng=random.Random(self.seed)), self.loop
        ).result(30)
        asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(30)
        wait_serving(self.target)
        return self


def stop_thread(server: ServerThread) -> None:
    """Stop a ServerThread, re-cancelling the cache tasks if a cancellation got lost.

    Works around a bug outside these tests' scope: a cancellation delivered while
    ``ExperimentCache.refresh()`` awaits Redis is sometimes swallowed, so ``_refresh_loop``
    keeps running and ``App.stop`` never returns (``ServerThread.stop`` then waits 30 s).
    """
    if server.app is not None:
        future = asyncio.run_coroutine_threadsafe(server.app.stop(0.5), server.loop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                future.result(0.5)
                break
            except concurrent.futures.TimeoutError:
                for task in list(server.app.cache._tasks):
                    server.loop.call_soon_threadsafe(task.cancel)
    server.stop()  # App.stop is idempotent: this only stops the loop and joins the thread


def stop_process(server: ServerProcess) -> None:
    """SIGTERM, then SIGKILL after 5 s (same bug as stop_thread: drain can hang)."""
    if server.proc is None or server.proc.poll() is not None:
        return
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        print(f"\n[warning] {server.target} did not stop on SIGTERM in 5 s; killed")
        server.proc.kill()
        server.proc.wait(5)
