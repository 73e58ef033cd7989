"""Live mode: drive a running bandit-router with simulated traffic and book the same regret.

Each run is its own experiment on the server (fresh statistics), so R runs give R
independent learning curves, as in a simulated study. Per step, every run calls Route, the
environment draws the reward of the arm the server chose, and the reward is sent after the
environment's delay (in steps of that run); a ``drop_rate`` share is never sent, so the
server's sweeper applies the experiment's default reward once its reward window closes.
The regret bookkeeping is the simulator's own ``Ledger``, so the numbers are comparable
with ``simulate`` on the same study and seed, which is the point: does the deployed service
learn as the simulation says it will?

The service decides on statistics cached per replica, so a decision may not yet see the
latest rewards. Each Route answers the statistics version it decided on (one per applied
reward), so live mode measures that staleness exactly: how many of the run's own applied
rewards the decision did not see. It is what separates the service from the simulation
(which sees every reward at once), and a regret gap is judged against it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bandit_router.client import AsyncBanditClient, Outcome
from bandit_router.v1 import admin_pb2, experiment_pb2
from simulations.environments import Environment
from simulations.runner import PROGRESS_EVERY, Ledger, ProgressCallback, RunResult, Streams

#: Reward outcomes that changed the run's statistics (and so its version).
APPLIED_OUTCOMES = frozenset({Outcome.APPLIED, Outcome.LATE_APPLIED})


@dataclass(frozen=True)
class LiveConfig:
    """Where and how to reach the service. ``reward_window`` is the experiments' window in
    seconds: after it the server applies the default reward to decisions never rewarded."""

    target: str
    token: str | None = None
    reward_window: float = 2.0
    prefix: str = "sim"
    keep_experiments: bool = False
    timeout: float = 5.0


@dataclass(frozen=True)
class LiveResult:
    result: RunResult
    experiments: tuple[str, ...]
    outcomes: dict[str, int] = field(default_factory=dict)  # Reward outcome -> count
    dropped: int = 0
    #: (runs, horizon): the run's applied rewards each decision did not see (0 = up to date).
    staleness: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.int64)
    )

    @property
    def max_staleness(self) -> npt.NDArray[np.int64]:
        """Per run: the most rewards any of its decisions did not see."""
        if self.staleness.size == 0:
            return np.zeros(self.staleness.shape[0], dtype=np.int64)
        return np.asarray(self.staleness.max(axis=1), dtype=np.int64)


def _experiment(
    name: str, environment: Environment, policy: str, params: dict[str, float], config: LiveConfig
) -> experiment_pb2.Experiment:
    experiment = experiment_pb2.Experiment(
        name=name,
        arms=[experiment_pb2.Arm(name=arm) for arm in environment.arm_names],
        policy=experiment_pb2.PolicySpec(name=policy, params=dict(params)),
        description="simulated traffic from bandit-router live mode",
    )
    experiment.reward_window.FromNanoseconds(int(config.reward_window * 1e9))
    if environment.feedback.default_reward is not None:
        experiment.default_reward = environment.feedback.default_reward
    return experiment


async def drive(
    client: AsyncBanditClient,
    environment: Environment,
    *,
    policy: str,
    params: dict[str, float],
    horizon: int,
    runs: int,
    seed: int,
    config: LiveConfig,
    label: str | None = None,
    checkpoints: int = 200,
    progress: ProgressCallback | None = None,
) -> LiveResult:
    """Run ``runs`` experiments for ``horizon`` steps each against the service."""
    if horizon < 1 or runs < 1:
        raise ValueError("horizon and runs must be >= 1")
    tag = secrets.token_hex(4)
    names = tuple(f"{config.prefix}-{tag}-{i}" for i in range(runs))
    for name in names:
        request = admin_pb2.CreateExperimentRequest(
            experiment=_experiment(name, environment, policy, params, config),
            reason="simulations live mode",
        )
        await client.call_admin("CreateExperiment", request)
    try:
        return await _drive(
            client, environment, names, policy, params, horizon, seed, label, checkpoints, progress
        )
    finally:
        if not config.keep_experiments:
            for name in names:
                await client.call_admin(
                    "DeleteExperiment",
                    admin_pb2.DeleteExperimentRequest(name=name, reason="live run done"),
                )


async def _drive(
    client: AsyncBanditClient,
    environment: Environment,
    names: Sequence[str],
    policy: str,
    params: dict[str, float],
    horizon: int,
    seed: int,
    label: str | None,
    checkpoints: int,
    progress: ProgressCallback | None,
) -> LiveResult:
    runs = len(names)
    streams = Streams.from_seed(seed)
    ledger = Ledger(environment, horizon, runs, checkpoints, 0.1)
    index = {arm: i for i, arm in enumerate(environment.arm_names)}
    feedback = environment.feedback
    pending: defaultdict[int, list[tuple[int, str, float]]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    dropped = 0
    applied = np.zeros(runs, dtype=np.int64)  # rewards the service applied, per run
    staleness = np.zeros((runs, horizon), dtype=np.int64)

    async def send(step: int) -> None:
        due = pending.pop(step, [])
        results = await asyncio.gather(*(client.reward(d, r) for _, d, r in due))
        outcomes.update(results)
        for (run, _, _), outcome in zip(due, results, strict=True):
            if outcome in APPLIED_OUTCOMES:
                applied[run] += 1

    means = environment.means.start(runs, streams.env)
    for step in range(horizon):
        if step > 0:
            means = environment.means.advance(step, means, streams.env)
        routed = await asyncio.gather(
            *(client.route(name, unit_id=f"{name}-{step}") for name in names)
        )
        arms = np.asarray([index[r.arm] for r in routed], dtype=np.int64)
        # Default rewards the sweeper applied also move the version: never below 0.
        seen = np.asarray([r.state_version for r in routed], dtype=np.int64)
        staleness[:, step] = np.maximum(applied - seen, 0)
        chosen = ledger.record(step, means, arms)
        rewards = environment.rewards.sample(chosen, arms, streams.env)
        delays = environment.delay.sample(runs, streams.feedback)
        sent = np.ones(runs, dtype=bool)
        if feedback.drop_rate > 0:
            sent = streams.feedback.random(runs) >= feedback.drop_rate
        dropped += int((~sent).sum())
        for run in np.flatnonzero(sent):
            due = step + (0 if delays is None else int(delays[run]))
            pending[due].append((int(run), routed[run].decision_id, float(rewards[run])))
        await send(step)
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    for step in sorted(pending):
        await send(step)
    if progress is not None and horizon % PROGRESS_EVERY:
        progress(horizon % PROGRESS_EVERY)
    result = ledger.result(label or f"{policy} (live)", policy, dict(params))
    return LiveResult(result, tuple(names), dict(outcomes), dropped, staleness)


async def run_live(
    environment: Environment,
    *,
    policy: str,
    params: dict[str, float],
    horizon: int,
    runs: int,
    seed: int,
    config: LiveConfig,
    label: str | None = None,
    checkpoints: int = 200,
    progress: ProgressCallback | None = None,
) -> LiveResult:
    """``drive`` with a client opened (and closed) for the call."""
    async with AsyncBanditClient(
        config.target, token=config.token, timeout=config.timeout
    ) as client:
        return await drive(
            client,
            environment,
            policy=policy,
            params=params,
            horizon=horizon,
            runs=runs,
            seed=seed,
            config=config,
            label=label,
            checkpoints=checkpoints,
            progress=progress,
        )
